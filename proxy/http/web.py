"""The Quart app for every route but the hot one: blueprints and the error renderer.

Errors raised by handlers render in OpenAI's envelope (`openai_wire`), with the
rate-limit headers a handler put in `g.limit_headers`; Quart's own 404 and 405
render the same way. Request ids and bodies were settled by the edge.
"""

from __future__ import annotations

import logging
from importlib.metadata import version

import orjson
import trio
from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import MethodNotAllowed as WerkzeugNotAllowed

from ..core.errors import GatewayError, HTTPProblem, MethodNotAllowed, NotFound, OAuthError
from ..services import Services
from .admin_api import admin_api_blueprint
from .api import api_blueprint
from .asgi import internal_error
from .authorize import authorize_blueprint
from .auto import auto_blueprint
from .device import device_blueprint
from .health import health_blueprint
from .llms import llms_blueprint
from .mcp_edge import mcp_blueprint
from .metrics import metrics_blueprint
from .oauth import NO_STORE, oauth_blueprint
from .openai_wire import JSON, render_error
from .openapi import install_openapi
from .payment_pages import payment_pages_blueprint
from .request_log import log_request
from .v1 import v1_blueprint

log = logging.getLogger("tokenroute")


def quart_app(services: Services) -> QuartTrio:
    app = QuartTrio("tokenroute", static_folder=None)  # no files served from disk
    app.config.update(
        MAX_CONTENT_LENGTH=None,  # the edge enforces the body limit for every route
        RESPONSE_TIMEOUT=None,  # long streams are bounded by our own upstream timeouts
        BACKGROUND_TASK_SHUTDOWN_TIMEOUT=60,
        PROVIDE_AUTOMATIC_OPTIONS=False,
        SESSION_COOKIE_NAME="tokenroute_session",
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SECURE=(services.settings.public_url or "").startswith("https://"),
        PERMANENT_SESSION_LIFETIME=3600,
    )

    @app.before_request
    async def clock_in() -> None:
        g.started = trio.current_time()

    @app.after_request
    async def log_line(response: Response) -> Response:
        call = g.get("call")  # a metered request's (embeddings)
        route = request.url_rule.rule if request.url_rule is not None else request.path
        log_request(method=request.method, route=route, status=response.status_code,
                    request_id=request.headers.get("x-request-id", ""),
                    started=g.get("started", trio.current_time()),
                    usage=call.outcome.record if call is not None else None)  # fmt: skip
        return response

    @app.errorhandler(GatewayError)
    async def gateway_error(error: GatewayError) -> Response:
        if error.detail:  # the operator's side of it (a provider's words), never the client's
            request_id = request.headers.get("x-request-id", "")
            log.warning("%s %s (%s): %s", request.method, request.path, request_id, error.detail)
        return _response(error)

    @app.errorhandler(OAuthError)
    async def oauth_error(error: OAuthError) -> Response:
        body = orjson.dumps({"error": error.code, "error_description": error.message})
        return Response(body, status=error.status, content_type=JSON, headers=NO_STORE)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        if error.code == 404:
            return _response(NotFound(f"no route for {request.method} {request.path}"))
        if isinstance(error, WerkzeugNotAllowed) and error.valid_methods:
            allowed = tuple(sorted(error.valid_methods))
            return _response(MethodNotAllowed(request.method, request.path, allowed))
        return _response(HTTPProblem(error.code or 400, error.description or error.name))

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        request_id = request.headers.get("x-request-id", "")
        log.exception("unhandled error in %s %s (%s)", request.method, request.path, request_id)
        return _response(internal_error(request_id))

    app.register_blueprint(health_blueprint(services))
    app.register_blueprint(v1_blueprint(services))
    app.register_blueprint(auto_blueprint(services))
    app.register_blueprint(oauth_blueprint(services))
    app.register_blueprint(device_blueprint(services))
    app.register_blueprint(authorize_blueprint(services))
    app.register_blueprint(api_blueprint(services))
    app.register_blueprint(admin_api_blueprint(services))
    app.register_blueprint(llms_blueprint(services))
    app.register_blueprint(mcp_blueprint(services))
    app.register_blueprint(payment_pages_blueprint(services))
    app.register_blueprint(metrics_blueprint(services))
    install_openapi(app, version("tokenroute"))
    return app


def _response(error: GatewayError) -> Response:
    request_id = request.headers.get("x-request-id")
    status, headers, body = render_error(error, g.get("limit_headers"), request_id)
    return Response(body, status=status, headers=headers)
