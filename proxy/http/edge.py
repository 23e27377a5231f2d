"""The ASGI edge: every HTTP request passes here first, and only here are these decided.

- The request id: the client's sane `x-request-id`, else a new one; every response
  carries it, and routes behind the edge read it from the request's headers.
- The request body: read whole, within `max_body_bytes` (413), a deadline and a budget
  of bytes buffered at once, and only once the request may go on (its route exists,
  its key is known); routes behind the edge get it replayed.
- The hot routes, `POST /v1/chat/completions` and Anthropic's `POST /v1/messages`
  (and its `count_tokens`), served as plain ASGI: Quart's per-request machinery costs
  about as much CPU as relaying a request upstream. Every other route goes on to the
  Quart app (`proxy.http.web`), which answers its own 404 and 405 with the same renderer.
- The key: `Authorization: Bearer`, or Anthropic's `x-api-key`, which wins.
- `/mcp`, handed to `McpFront` (`mcp_edge`): the caller is known before the MCP
  server (the SDK's own ASGI app) sees the request.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from ..core.errors import GatewayError, MethodNotAllowed
from ..services import KeyRecord, Services
from . import anthropic_wire, openai_wire
from .asgi import (
    Bodies,
    ErrorRenderer,
    Receive,
    Responder,
    Scope,
    Send,
    declares_body,
    internal_error,
    replay,
    request_id_from,
    shield_last_send,
)
from .chat import OPENAI, ChatHTTPRequest, Headers, serve_chat
from .mcp_edge import MCP_PATH, ASGIApp, McpFront
from .messages import ANTHROPIC, serve_count_tokens
from .request_log import log_request

log = logging.getLogger("tokenroute")
REQUEST_ID = b"x-request-id"
FORWARDED = (b"anthropic-version", b"anthropic-beta")  # what a Messages upstream may read
SESSION_HEADERS = (b"x-session-id", b"x-claude-code-session-id")
Serve = Callable[
    [Services, KeyRecord, ChatHTTPRequest, Headers, Responder, Receive, float], Awaitable[None]
]


@dataclass(frozen=True, slots=True)
class HotRoute:
    serve: Serve
    render_error: ErrorRenderer  # the route's wire format
    name: str  # its metrics label


HOT_ROUTES = {
    "/v1/chat/completions": HotRoute(partial(serve_chat, OPENAI), openai_wire.render_error, "chat"),
    "/v1/messages": HotRoute(
        partial(serve_chat, ANTHROPIC), anthropic_wire.render_error, "messages"
    ),
    "/v1/messages/count_tokens": HotRoute(
        serve_count_tokens, anthropic_wire.render_error, "count_tokens"
    ),
}
EMBEDDINGS = "/v1/embeddings"  # a model route served by Quart: counted there, or here if refused


class Edge:
    def __init__(self, app: Any, services: Services, mcp: ASGIApp | None = None) -> None:
        self.app = app
        self.services = services
        self.metrics = services.metrics
        settings = services.settings
        self.bodies = Bodies(settings.max_body_bytes, settings.max_body_buffer_bytes)
        self.mcp = McpFront(mcp, services, self.bodies) if mcp is not None else None
        self.keepalive = settings.keepalive_seconds
        self._routes = app.url_map.bind("gateway")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        request_id = request_id_from(headers.get(REQUEST_ID))
        route = HOT_ROUTES.get(scope["path"])
        if route is not None:
            respond = Responder(send, request_id, route.render_error)
            await self._hot(route, scope, headers, receive, respond, request_id)
        elif scope["path"] == MCP_PATH and self.mcp is not None:
            await self.mcp(scope, receive, shield_last_send(send), request_id)
        else:
            await self._framework(scope, headers, receive, shield_last_send(send), request_id)

    async def _hot(
        self,
        route: HotRoute,
        scope: Scope,
        headers: dict[bytes, bytes],
        receive: Receive,
        respond: Responder,
        request_id: str,
    ) -> None:
        started = trio.current_time()
        path = scope["path"]
        known: KeyRecord | None = None
        try:
            try:  # refused from the headers alone: the body is never read
                if scope["method"] != "POST":
                    raise MethodNotAllowed(scope["method"], path, ("POST",))
                key = await self.services.accounts.authenticate(credential(headers))
            except GatewayError as error:
                await respond.error(error, close=await self.bodies.dispose(headers, receive))
                return
            known = key
            body = await self.bodies.read(headers, receive)
            if body is None:
                return  # the client went away before sending its request
            session = next((_text(headers, h) for h in SESSION_HEADERS if h in headers), None)
            request = ChatHTTPRequest(id=request_id, body=body, session=session, started=started)
            forwarded = [
                (h.decode(), headers[h].decode("latin-1")) for h in FORWARDED if h in headers
            ]
            await route.serve(
                self.services, key, request, forwarded, respond, receive, self.keepalive
            )
        except GatewayError as error:
            await respond.error(error)
        except Exception:
            log.exception("unhandled error in %s (%s)", path, request_id)
            if not respond.started:
                await respond.error(internal_error(request_id))
        finally:  # counted and logged once, whether answered, refused or left by its client
            self.metrics.answered(route.name, respond.status, respond.outcome)
            usage = respond.outcome.record if respond.outcome is not None else None
            log_request(method=scope["method"], route=path, request_id=request_id,
                        status=respond.status, started=started, key=known, usage=usage)  # fmt: skip

    async def _framework(
        self,
        scope: Scope,
        headers: dict[bytes, bytes],
        receive: Receive,
        send: Send,
        request_id: str,
    ) -> None:
        """Any other route: to Quart, with the request id in its headers and its body read.

        A body is read only for a route that exists, and for `/v1` only once the key is
        known; otherwise Quart answers (404, 405, 401) without it and the connection
        closes after the answer, unless the body was small enough to drain.
        """
        stamp = request_id.encode()
        close = False
        if declares_body(headers):
            try:
                if self._routed(scope) and await self._may_send_body(scope, headers):
                    body = await self.bodies.read(headers, receive)
                    if body is None:
                        return
                    receive = replay(body, receive)
                else:
                    close = await self.bodies.dispose(headers, receive)
            except GatewayError as error:
                await Responder(send, request_id).error(error)
                if scope["path"] == EMBEDDINGS:
                    self.metrics.answered("embeddings", error.status, None)
                return

        async def stamped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                kept = [h for h in message.get("headers", ()) if h[0].lower() != REQUEST_ID]
                extra = [(b"connection", b"close")] if close else []
                message = {**message, "headers": [*kept, (REQUEST_ID, stamp), *extra]}
            await send(message)

        given = [h for h in scope["headers"] if h[0] != REQUEST_ID]
        await self.app({**scope, "headers": [*given, (REQUEST_ID, stamp)]}, receive, stamped)

    def _routed(self, scope: Scope) -> bool:
        """Whether the Quart app has a route for this method and path."""
        try:
            self._routes.match(scope["path"], method=scope["method"])
        except RequestRedirect:
            return True
        except HTTPException:
            return False
        return True

    async def _may_send_body(self, scope: Scope, headers: dict[bytes, bytes]) -> bool:
        """`/v1` takes bodies from a known key only (the handler then finds it in the cache),
        the admin API from the holder of the internal secret only."""
        path = scope["path"]
        if path.startswith("/api/v1/admin/"):
            try:
                self.services.admin.check(_text(headers, b"x-internal-secret"))
            except GatewayError:
                return False
            return True
        if not path.startswith("/v1/"):
            return True
        try:
            await self.services.accounts.authenticate(credential(headers))
        except GatewayError:
            return False
        return True


def credential(headers: dict[bytes, bytes]) -> str | None:
    """The request's key as an Authorization value: Anthropic's `x-api-key` header (what
    its SDKs and Claude Code send), else the `Authorization` header."""
    api_key = headers.get(b"x-api-key")
    if api_key is not None:
        return "Bearer " + api_key.decode("latin-1")
    return _text(headers, b"authorization")


def _text(headers: dict[bytes, bytes], name: bytes) -> str | None:
    value = headers.get(name)
    return value.decode("latin-1") if value is not None else None
