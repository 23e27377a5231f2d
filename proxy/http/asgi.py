"""Plain ASGI plumbing for the routes the edge serves itself: bodies in, responses out.

`Responder` remembers whether the response has started, so that a failure after
the first byte never tries to send a second response. A stream's sender watches
for the client going away (which cancels the relay, and so closes the upstream at
once) and fills long upstream silences with SSE comments.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import trio

from ..core.errors import (
    BadRequest,
    GatewayError,
    InternalError,
    PayloadTooLarge,
    ServiceUnavailable,
)
from .openai_wire import render_error

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
E = TypeVar("E")

BODY_DEADLINE = 60.0  # seconds to receive a request body
SMALL_BODY = 64 * 1024  # bytes: read without asking the budget; drained rather than cut
BUDGET_PATIENCE = 2.0  # seconds a large body waits for room in the budget before a 503
KEEPALIVE = b": keep-alive\n\n"
AFTER_ANSWER = 1.0  # seconds the watcher of a complete answer waits for `http.disconnect`
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")


def request_id_from(given: bytes | None) -> str:
    """The client's `x-request-id` when it is sane, else a new one."""
    if given and _REQUEST_ID.match(given):
        return given.decode()
    return "req_" + secrets.token_hex(12)


def internal_error(request_id: str) -> InternalError:
    """What a client sees of a failure of ours: nothing but the id to quote."""
    return InternalError(f"internal error; quote request id {request_id}")


def declares_body(headers: Mapping[bytes, bytes]) -> bool:
    length = headers.get(b"content-length")
    return (length is not None and length.strip() != b"0") or b"transfer-encoding" in headers


def declared_length(headers: Mapping[bytes, bytes]) -> int | None:
    """The body's declared size; None when it is chunked (or says nothing sensible)."""
    length = headers.get(b"content-length")
    return int(length) if length is not None and length.isdigit() else None


class Bodies:
    """Reads request bodies within the size limit, and within a budget of bytes buffered at once.

    Small bodies (most API calls) are read at once. A large one first reserves its
    size (the limit, for a chunked one) in the budget, and waits at most
    `BUDGET_PATIENCE` for room before a 503, so clients sending huge or slow bodies
    cannot make the gateway hold more than the budget in memory.
    """

    def __init__(self, limit: int, budget: int) -> None:
        self.limit = limit
        self._free = budget
        self._room = trio.Event()

    async def read(self, headers: Mapping[bytes, bytes], receive: Receive) -> bytes | None:
        declared = declared_length(headers)
        if declared is not None and declared > self.limit:
            raise PayloadTooLarge(f"the request body is over {self.limit} bytes")
        need = self.limit if declared is None else declared
        if need <= SMALL_BODY:
            return await read_body(headers, receive, self.limit)
        await self._reserve(need)
        try:
            return await read_body(headers, receive, self.limit)
        finally:
            self._free += need
            self._room.set()  # wakes every waiter; each checks again on the next event
            self._room = trio.Event()

    async def dispose(self, headers: Mapping[bytes, bytes], receive: Receive) -> bool:
        """A body we will not use: drain it if small (the connection stays usable); True
        when it is not read and the connection must close after the answer."""
        declared = declared_length(headers)
        if not declares_body(headers):
            return False
        if declared is None or declared > SMALL_BODY:
            return True
        try:
            return await read_body(headers, receive, SMALL_BODY) is None
        except GatewayError:
            return True

    async def _reserve(self, need: int) -> None:
        with trio.move_on_after(BUDGET_PATIENCE):
            while self._free < need:
                await self._room.wait()
            self._free -= need
            return
        raise ServiceUnavailable(
            "the gateway is receiving too many large request bodies; retry shortly",
            headers={"retry-after": "1"},
        )


async def read_body(headers: Mapping[bytes, bytes], receive: Receive, limit: int) -> bytes | None:
    """The whole request body, at most `limit` bytes (413 past it); None if the client left."""
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the request body is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    with trio.move_on_after(BODY_DEADLINE) as deadline:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the request body is over {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
    if deadline.cancelled_caught:
        raise BadRequest(f"the request body did not arrive within {BODY_DEADLINE:g} s")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def shield_last_send(send: Send) -> Send:
    """Send a response's last message shielded from the handler's own cancellation.

    Hypercorn restarts the connection's keep-alive timer from inside that call, and
    trio leaves a task started from a cancelled scope in that scope. A handler whose
    scope is cancelled as its response ends (Quart's, on the `http.disconnect` that
    Hypercorn posts then) would kill the timer: the idle connection would never time
    out, and would hold a graceful shutdown open until its deadline. The chat route
    needs no wrapper: nothing cancels a complete answer while it is sent, and a
    stream shields its last message itself (`_Quiet.finish`).
    """

    async def send_shielded(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            with trio.CancelScope(shield=True):
                await send(message)
        else:
            await send(message)

    return send_shielded


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands over a body already read, then the client's next messages."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> dict[str, Any]:
        return pending.pop() if pending else await receive()

    return replayed


ErrorRenderer = Callable[
    [GatewayError, Mapping[str, str] | None, str | None], tuple[int, dict[str, str], bytes]
]


class Responder:
    def __init__(
        self, send: Send, request_id: str, render_error: ErrorRenderer = render_error
    ) -> None:
        self.started = False
        self.status: int | None = None  # the status answered, once the response started
        self.outcome: Any = None  # the request's `Outcome` once it has one, for the metrics
        self._send = send
        self._request_id = request_id
        self._render_error = render_error  # the route's wire format (OpenAI's, Anthropic's)

    async def body(
        self, status: int, headers: Mapping[str, str], body: bytes, close: bool = False
    ) -> None:
        pairs = self._head(headers)
        pairs.append((b"content-length", str(len(body)).encode()))
        if close:  # the request's body was left unread: the connection cannot carry another
            pairs.append((b"connection", b"close"))
        await self._start(status, pairs)
        await self._send({"type": "http.response.body", "body": body, "more_body": False})

    async def error(
        self, error: GatewayError, context: Mapping[str, str] | None = None, close: bool = False
    ) -> None:
        await self.body(*self._render_error(error, context, self._request_id), close=close)

    async def stream(
        self,
        receive: Receive,
        headers: Mapping[str, str],
        events: AsyncIterable[E],
        render: Callable[[E], bytes],
        keepalive: float,
        keepalive_event: bytes = KEEPALIVE,
    ) -> None:
        """Send each event as it comes; stop as soon as the client goes away."""
        await self._start(200, self._head(headers))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope)
            quiet = _Quiet(self._send)
            if keepalive > 0:
                nursery.start_soon(quiet.keep_alive, keepalive, keepalive_event)
            async for event in events:
                await quiet.send(render(event))
            await quiet.finish()
            nursery.cancel_scope.cancel()

    def _head(self, headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
        pairs = [(k.encode(), v.encode()) for k, v in headers.items()]
        pairs.append((b"x-request-id", self._request_id.encode()))
        return pairs

    async def _start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.started, self.status = True, status
        await self._send({"type": "http.response.start", "status": status, "headers": headers})


class _Quiet:
    """Sends a stream's chunks; during long upstream silence, SSE comments in between.

    Proxies and load balancers drop connections that carry nothing for a minute
    or so, while a reasoning model may think for longer before its first token.
    """

    def __init__(self, send: Send) -> None:
        self._send = send
        self._lock = trio.Lock()
        self._last = trio.current_time()

    async def send(self, chunk: bytes) -> None:
        async with self._lock:
            await self._send({"type": "http.response.body", "body": chunk, "more_body": True})
            self._last = trio.current_time()

    async def finish(self) -> None:
        """The last message, shielded: the server restarts the connection's keep-alive
        timer within it, and the disconnect it then posts cancels this stream's scope
        (see `shield_last_send`)."""
        async with self._lock:
            with trio.CancelScope(shield=True):
                await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    async def keep_alive(self, interval: float, event: bytes) -> None:
        while True:
            await trio.sleep_until(self._last + interval)
            if trio.current_time() - self._last >= interval:
                await self.send(event)


async def answer_unless_gone(
    receive: Receive, respond: Responder, answer: Callable[[], Awaitable[None]]
) -> None:
    """`answer()`, which prepares and sends a whole response, cancelled if the client goes
    away before the response starts.

    The normal path cancels nothing (a cancellation costs an exception in each task it
    reaches): the server tells the app `http.disconnect` once the response is complete
    (Hypercorn does so within the final send), which ends the watcher by itself. The
    deadline set after the answer only bounds a server that would not.
    """
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_until_answered, receive, respond, nursery.cancel_scope)
        await answer()
        nursery.cancel_scope.deadline = trio.current_time() + AFTER_ANSWER


async def _watch_until_answered(
    receive: Receive, respond: Responder, scope: trio.CancelScope
) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if not respond.started:
                scope.cancel()
            return


async def _cancel_on_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return
