"""The door of `/mcp`: who calls is settled here, before the MCP server reads a byte.

The edge hands every `/mcp` request to `McpFront`. A login token or an `sk-tr` key
(`Authorization: Bearer`) is resolved by `services.callers`, as `/api/v1` does; the
caller then rides in the ASGI scope (`CALLER`) to the tools (`proxy.http.mcp`). Anyone
else gets 401 with a `WWW-Authenticate` challenge naming the protected-resource
metadata (RFC 9728, the MCP authorization spec), which points at our issuer, so a client
that speaks OAuth can log in by itself. The body is read within the edge's limits only
once the caller is known.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import trio
from quart import Blueprint, Response

from ..core.errors import GatewayError
from ..services import Caller, Services
from .asgi import Bodies, Receive, Responder, Scope, Send, declares_body, replay
from .openai_wire import JSON, error_body
from .request_log import log_request

MCP_PATH = "/mcp"
METADATA_PATH = "/.well-known/oauth-protected-resource"
CALLER = "tokenroute.caller"  # the scope key under which the tools find their `Caller`
REQUEST_ID = b"x-request-id"
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class McpFront:
    """Authenticates a `/mcp` request, then passes it to the MCP server's ASGI app."""

    def __init__(self, server: ASGIApp, services: Services, bodies: Bodies) -> None:
        self._server = server
        self._callers = services.callers
        self._identity = services.identity
        self._bodies = bodies

    async def __call__(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        started, seen = trio.current_time(), _Seen(send)
        try:
            await self._serve(scope, receive, seen, request_id)
        finally:
            caller = seen.caller
            log_request(method=scope["method"], route=MCP_PATH, request_id=request_id,
                        status=seen.status, started=started,
                        key=caller.key if caller else None,
                        user_id=caller.user.id if caller else None)  # fmt: skip

    async def _serve(self, scope: Scope, receive: Receive, seen: _Seen, request_id: str) -> None:
        send: Send = seen
        headers = dict(scope["headers"])
        authorization = headers.get(b"authorization")
        respond = Responder(send, request_id)
        try:
            caller = await self._callers.resolve(
                authorization.decode("latin-1") if authorization is not None else None
            )
        except GatewayError as error:
            challenge = {"www-authenticate": self.challenge(authorization is not None)}
            close = await self._bodies.dispose(headers, receive)
            await _refuse(respond, error, challenge if error.status == 401 else {}, close)
            return
        if declares_body(headers):
            try:
                body = await self._bodies.read(headers, receive)
            except GatewayError as error:
                await _refuse(respond, error, {}, close=False)
                return
            if body is None:
                return  # the client went away before sending its request
            receive = replay(body, receive)
        seen.caller = caller
        await self._server({**scope, CALLER: caller}, receive, _stamped(send, request_id))

    def challenge(self, token_sent: bool) -> str:
        """RFC 6750's challenge, with RFC 9728's pointer to the resource's metadata."""
        metadata = f"{self._identity.base_url}{METADATA_PATH}"
        value = f'Bearer resource_metadata="{metadata}"'
        return value + ', error="invalid_token"' if token_sent else value


def mcp_blueprint(services: Services) -> Blueprint:
    """The protected-resource metadata of `/mcp`, at the root and path-suffixed (RFC 9728)."""
    bp = Blueprint("mcp", __name__)

    @bp.get(METADATA_PATH)
    @bp.get(METADATA_PATH + MCP_PATH)
    async def protected_resource() -> Response:
        document = services.identity.protected_resource(MCP_PATH)
        return Response(
            orjson.dumps(document),
            content_type=JSON,
            headers={"cache-control": "public, max-age=300"},
        )

    return bp


async def _refuse(
    respond: Responder, error: GatewayError, headers: dict[str, str], close: bool
) -> None:
    """OpenAI's error envelope that is a JSON-RPC error too (`error.code`, the HTTP status,
    is an integer), so an MCP client shows the message rather than a bare status."""
    body = orjson.dumps({"jsonrpc": "2.0", "id": None, **error_body(error)})
    headers = {**error.headers, **headers, "content-type": JSON}
    await respond.body(error.status, headers, body, close)


class _Seen:
    """A `send` that remembers the answer's status (and who asked), for the request's log line."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status: int | None = None
        self.caller: Caller | None = None

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self._send(message)


def _stamped(send: Send, request_id: str) -> Send:
    """`send`, with the request id on the response (the MCP server knows nothing of it)."""
    stamp = request_id.encode()

    async def stamped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            kept = [h for h in message.get("headers", ()) if h[0].lower() != REQUEST_ID]
            message = {**message, "headers": [*kept, (REQUEST_ID, stamp)]}
        await send(message)

    return stamped
