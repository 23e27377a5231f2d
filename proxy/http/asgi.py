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

from ..core.errors import BadRequest, GatewayError, InternalError, PayloadTooLarge
from .openai_wire import render_error

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
E = TypeVar("E")

BODY_DEADLINE = 60.0  # seconds to receive a request body
KEEPALIVE = b": keep-alive\n\n"
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


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands over a body already read, then the client's next messages."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> dict[str, Any]:
        return pending.pop() if pending else await receive()

    return replayed


class Responder:
    def __init__(self, send: Send, request_id: str) -> None:
        self.started = False
        self._send = send
        self._request_id = request_id

    async def body(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        pairs = self._head(headers)
        pairs.append((b"content-length", str(len(body)).encode()))
        await self._start(status, pairs)
        await self._send({"type": "http.response.body", "body": body, "more_body": False})

    async def error(self, error: GatewayError, context: Mapping[str, str] | None = None) -> None:
        await self.body(*render_error(error, context, self._request_id))

    async def stream(
        self,
        receive: Receive,
        headers: Mapping[str, str],
        events: AsyncIterable[E],
        render: Callable[[E], bytes],
        keepalive: float,
    ) -> None:
        """Send each event as it comes; stop as soon as the client goes away."""
        await self._start(200, self._head(headers))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope)
            quiet = _Quiet(self._send)
            if keepalive > 0:
                nursery.start_soon(quiet.keep_alive, keepalive)
            async for event in events:
                await quiet.send(render(event))
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})
            nursery.cancel_scope.cancel()

    def _head(self, headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
        pairs = [(k.encode(), v.encode()) for k, v in headers.items()]
        pairs.append((b"x-request-id", self._request_id.encode()))
        return pairs

    async def _start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.started = True
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

    async def keep_alive(self, interval: float) -> None:
        while True:
            await trio.sleep_until(self._last + interval)
            if trio.current_time() - self._last >= interval:
                await self.send(KEEPALIVE)


async def _cancel_on_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return
