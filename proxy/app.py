"""The app factory: build every service once from the settings, mount the surfaces.

Nothing happens at import time. Background work (the store's writer, housekeeping, the
MCP SDK's session manager) runs in the app's nursery from `before_serving`;
`after_serving` lets the writer commit everything queued (usage rows of cancelled
streams included) before it closes.
"""

from __future__ import annotations

from quart_trio import QuartTrio

from admin import admin_blueprint

from .core.config import Settings
from .http.edge import Edge
from .http.forwarded import Forwarded
from .http.mcp_server import McpServer
from .http.metrics import MetricsListener
from .http.web import quart_app
from .services import Services, build_services


def create_app(settings: Settings) -> QuartTrio:
    """The Quart app; serve `asgi_app(app)` so that every request passes the edge first."""
    services = build_services(settings)
    app = quart_app(services)
    app.register_blueprint(admin_blueprint(services))
    mcp = McpServer(services)
    app.extensions["tokenroute"] = services
    app.extensions["tokenroute.mcp"] = mcp

    @app.before_serving
    async def start_services() -> None:
        await services.start(app.nursery)
        await app.nursery.start(mcp.run)  # the MCP SDK's session manager, while we serve
        app.secret_key = services.identity.session_secret()  # the sign-in page's cookies
        app.extensions["tokenroute.started"] = True

    @app.after_serving
    async def stop_services() -> None:
        mcp.stop()
        await services.stop()

    return app


def asgi_app(app: QuartTrio) -> Edge | Forwarded:
    """What the server runs: the edge in front of the Quart app and the MCP server (behind
    the reverse proxies' word on who the client is, when there are any)."""
    mcp: McpServer = app.extensions["tokenroute.mcp"]
    services = services_of(app)
    edge = Edge(app, services, mcp)
    hops = services.settings.proxy_hops  # none: clients connect, no proxy's word to take
    return Forwarded(edge, hops) if hops else edge


def metrics_asgi_app(app: QuartTrio) -> MetricsListener:
    """What `[metrics] listen` serves: `/metrics` alone, without the internal secret."""
    return MetricsListener(services_of(app))


def started(app: QuartTrio) -> bool:
    """Whether the app's start (services, MCP) went through: Hypercorn reports serving even
    after a failed one, and the failure reaches it a moment later."""
    return bool(app.extensions.get("tokenroute.started"))


def services_of(app: QuartTrio) -> Services:
    return app.extensions["tokenroute"]  # type: ignore[no-any-return]
