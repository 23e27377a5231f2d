"""The HTTP edge for the hot route: `POST /v1/chat/completions` as plain ASGI.

Quart's per-request machinery (contexts, hooks, routing, response objects) costs
about as much CPU as relaying a request upstream, so the chat route speaks ASGI
to Hypercorn directly; every other route goes on to the Quart app. This module
only moves bytes and headers: the work is `api.chat_completions`.
"""

from __future__ import annotations

import logging
import re
import secrets
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import trio

from .api import Reply, chat_completions
from .errors import BadRequest, GatewayError, InternalError, PayloadTooLarge, envelope

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .app import Gateway

    Scope = dict[str, Any]
    Receive = Callable[[], Awaitable[dict[str, Any]]]
    Send = Callable[[dict[str, Any]], Awaitable[None]]

log = logging.getLogger("tokenroute")
CHAT_PATH = "/v1/chat/completions"
BODY_DEADLINE = 60.0  # seconds to receive a request body
KEEPALIVE = b": keep-alive\n\n"
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")


def request_id_from(given: bytes | None) -> str:
    """The client's `x-request-id` when it is sane, else a new one."""
    if given and _REQUEST_ID.match(given):
        return given.decode()
    return "req_" + secrets.token_hex(12)


class Edge:
    def __init__(self, app: Any, gw: Gateway) -> None:
        self.app = app
        self.gw = gw
        self.max_body = gw.settings.max_body_bytes
        self.keepalive = gw.settings.keepalive_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != CHAT_PATH:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        request_id = request_id_from(headers.get(b"x-request-id"))
        try:
            if scope["method"] != "POST":
                error = GatewayError(f"use POST for {CHAT_PATH}")
                error.status, error.type = 405, "invalid_request_error"
                error.headers["allow"] = "POST"
                raise error
            body = await self._body(headers, receive)
            if body is None:
                return  # the client went away before sending its request
            authorization = headers.get(b"authorization")
            session = headers.get(b"x-session-id")
            reply = await chat_completions(
                self.gw,
                authorization.decode("latin-1") if authorization else None,
                body,
                request_id,
                session.decode("latin-1") if session else None,
            )
        except GatewayError as error:
            await _send_error(send, error, request_id)
            return
        except Exception:
            log.exception("unhandled error in %s (%s)", CHAT_PATH, request_id)
            await _send_error(
                send, InternalError(f"internal error; quote {request_id}"), request_id
            )
            return
        await _send_reply(send, receive, reply, request_id, self.keepalive)

    async def _body(self, headers: dict[bytes, bytes], receive: Receive) -> bytes | None:
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise PayloadTooLarge(f"the request body is over {self.max_body} bytes")
        chunks: list[bytes] = []
        size = 0
        with trio.move_on_after(BODY_DEADLINE) as deadline:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body:
                    raise PayloadTooLarge(f"the request body is over {self.max_body} bytes")
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
        if deadline.cancelled_caught:
            raise BadRequest(f"the request body did not arrive within {BODY_DEADLINE:g} s")
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _header_list(headers: dict[str, str], request_id: str) -> list[tuple[bytes, bytes]]:
    pairs = [(k.encode(), v.encode()) for k, v in headers.items()]
    pairs.append((b"x-request-id", request_id.encode()))
    return pairs


async def _send_error(send: Send, error: GatewayError, request_id: str) -> None:
    headers = {"content-type": "application/json", **error.headers}
    await _send_reply(send, None, Reply(error.status, headers, envelope(error)), request_id)


async def _send_reply(
    send: Send, receive: Receive | None, reply: Reply, request_id: str, keepalive: float = 0
) -> None:
    headers = _header_list(reply.headers, request_id)
    if reply.stream is None:
        headers.append((b"content-length", str(len(reply.body)).encode()))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body, "more_body": False})
        return
    assert receive is not None
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    async with trio.open_nursery() as nursery:
        # A client that goes away cancels the relay, which closes the upstream at once.
        nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope)
        quiet = _Quiet(send)
        if keepalive > 0:
            nursery.start_soon(quiet.keep_alive, keepalive)
        async with aclosing(reply.stream) as stream:
            async for chunk in stream:
                await quiet.send(chunk)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        nursery.cancel_scope.cancel()


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
