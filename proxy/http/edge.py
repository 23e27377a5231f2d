"""The ASGI edge: every HTTP request passes here first, and only here are these decided.

- The request id: the client's sane `x-request-id`, else a new one; every response
  carries it, and routes behind the edge read it from the request's headers.
- The request body: read whole, within `max_body_bytes` (413) and a deadline, for
  every route; routes behind the edge get it replayed.
- The hot route, `POST /v1/chat/completions`, served as plain ASGI: Quart's
  per-request machinery costs about as much CPU as relaying a request upstream.
  Every other route goes on to the Quart app (`proxy.http.web`), which answers its
  own 404 and 405 with the same renderer.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from ..core.errors import GatewayError, MethodNotAllowed
from ..services import Services
from .asgi import (
    Receive,
    Responder,
    Scope,
    Send,
    declares_body,
    internal_error,
    read_body,
    replay,
    request_id_from,
)
from .chat import ChatHTTPRequest, serve_chat

log = logging.getLogger("tokenroute")
CHAT_PATH = "/v1/chat/completions"
REQUEST_ID = b"x-request-id"


class Edge:
    def __init__(self, app: Any, services: Services) -> None:
        self.app = app
        self.services = services
        self.max_body = services.settings.max_body_bytes
        self.keepalive = services.settings.keepalive_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        request_id = request_id_from(headers.get(REQUEST_ID))
        if scope["path"] == CHAT_PATH:
            await self._chat(scope, headers, receive, Responder(send, request_id), request_id)
        else:
            await self._framework(scope, headers, receive, send, request_id)

    async def _chat(
        self,
        scope: Scope,
        headers: dict[bytes, bytes],
        receive: Receive,
        respond: Responder,
        request_id: str,
    ) -> None:
        started = trio.current_time()
        try:
            if scope["method"] != "POST":
                raise MethodNotAllowed(scope["method"], CHAT_PATH, ("POST",))
            body = await read_body(headers, receive, self.max_body)
            if body is None:
                return  # the client went away before sending its request
            authorization = headers.get(b"authorization")
            session = headers.get(b"x-session-id")
            request = ChatHTTPRequest(
                id=request_id,
                body=body,
                authorization=authorization.decode("latin-1") if authorization else None,
                session=session.decode("latin-1") if session else None,
                started=started,
            )
            await serve_chat(self.services, request, respond, receive, self.keepalive)
        except GatewayError as error:
            await respond.error(error)
        except Exception:
            log.exception("unhandled error in %s (%s)", CHAT_PATH, request_id)
            if not respond.started:
                await respond.error(internal_error(request_id))

    async def _framework(
        self,
        scope: Scope,
        headers: dict[bytes, bytes],
        receive: Receive,
        send: Send,
        request_id: str,
    ) -> None:
        """Any other route: to Quart, with the request id in its headers and its body read."""
        stamp = request_id.encode()
        if declares_body(headers):
            try:
                body = await read_body(headers, receive, self.max_body)
            except GatewayError as error:
                await Responder(send, request_id).error(error)
                return
            if body is None:
                return
            receive = replay(body, receive)

        async def stamped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                kept = [h for h in message.get("headers", ()) if h[0].lower() != REQUEST_ID]
                message = {**message, "headers": [*kept, (REQUEST_ID, stamp)]}
            await send(message)

        given = [h for h in scope["headers"] if h[0] != REQUEST_ID]
        await self.app({**scope, "headers": [*given, (REQUEST_ID, stamp)]}, receive, stamped)
