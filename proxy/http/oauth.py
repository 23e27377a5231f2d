"""The issuer's endpoints: RFC 8628 device authorization, RFC 7591 client registration, the
token endpoint, revocation, discovery (`/.well-known/openid-configuration`, RFC 8414's
`/.well-known/oauth-authorization-server`, the JWKS, and the seeds' own
`/api/v1/auth/discovery`). The authorization page is `authorize.py`.

Requests are form-encoded as RFC 6749 says (JSON is accepted too); refusals are RFC
6749's `{"error", "error_description"}` (see `web.py`), never cached.
"""

from __future__ import annotations

from typing import Any

import orjson
from quart import Blueprint, Response, request

from ..core.errors import NotFound, OAuthError
from ..services import Services
from .openai_wire import JSON

NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}
MAX_FIELD = 4096


def oauth_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("oauth", __name__)
    identity, flow = services.identity, services.device_flow

    @bp.post("/oauth/device/code")
    async def device_code() -> Response:
        form = await _form()
        grant = await flow.authorize_device(form.get("client_id"), form.get("scope"))
        return _json(grant, NO_STORE)

    @bp.post("/oauth/token")
    async def token() -> Response:
        return _json(await flow.token(await _form()), NO_STORE)

    @bp.post("/oauth/revoke")
    async def revoke() -> Response:
        form = await _form()
        await flow.revoke(form.get("token", ""))
        return _json({}, NO_STORE)  # RFC 7009: 200 whether the token was known or not

    @bp.get("/oauth/jwks.json")
    async def jwks() -> Response:
        return _json(await identity.jwks(), {"cache-control": "public, max-age=300"})

    @bp.get("/.well-known/openid-configuration")
    async def openid_configuration() -> Response:
        return _json(identity.openid_configuration(), {"cache-control": "public, max-age=300"})

    @bp.get("/.well-known/oauth-authorization-server")
    async def authorization_server() -> Response:
        """RFC 8414: the same document, where OAuth clients (MCP's) look first."""
        if not identity.codes.enabled:
            raise NotFound("this gateway's tokens come from an external issuer")
        return _json(identity.openid_configuration(), {"cache-control": "public, max-age=300"})

    @bp.post("/oauth/register")
    async def register() -> Response:
        """RFC 7591 dynamic registration of a public client (JSON in, 201 and JSON out)."""
        try:
            metadata = orjson.loads(await request.get_data())
        except orjson.JSONDecodeError as exc:
            raise OAuthError("invalid_client_metadata", "the body is not valid JSON") from exc
        if not isinstance(metadata, dict):
            raise OAuthError("invalid_client_metadata", "the body must be a JSON object")
        client = await identity.codes.register(metadata, request.remote_addr or "unknown")
        return Response(orjson.dumps(client), status=201, content_type=JSON, headers=NO_STORE)

    @bp.get("/api/v1/auth/discovery")
    async def discovery() -> Response:
        return _json(identity.discovery(), {"cache-control": "public, max-age=300"})

    return bp


async def _form() -> dict[str, str]:
    """The request's fields as strings; one bad field is a 400 in RFC 6749's shape."""
    if request.mimetype == "application/json":
        try:
            data = orjson.loads(await request.get_data())
        except orjson.JSONDecodeError as exc:
            raise OAuthError("invalid_request", "the body is not valid JSON") from exc
        if not isinstance(data, dict):
            raise OAuthError("invalid_request", "the body must be a JSON object")
        fields: dict[str, Any] = data
    else:
        form = await request.form
        fields = {}
        for name in form:
            values = form.getlist(name)
            if len(values) > 1:  # RFC 6749 3.2: parameters must not be repeated
                raise OAuthError("invalid_request", f"{name} is given more than once")
            fields[name] = values[0]
    result = {}
    for name, value in fields.items():
        if not isinstance(value, str) or len(value) > MAX_FIELD:
            raise OAuthError("invalid_request", f"{name} must be a string of reasonable length")
        result[name] = value
    return result


def _json(body: object, headers: dict[str, str]) -> Response:
    return Response(orjson.dumps(body), content_type=JSON, headers=headers)
