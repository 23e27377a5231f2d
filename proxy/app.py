"""The app factory: build every service once from the settings, wire the blueprints.

Nothing happens at import time. Background tasks (the store's writer) run in
the app's nursery from `before_serving`; `after_serving` lets the writer commit
everything queued (usage rows of cancelled streams included) before it closes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio
from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from .auth import KeyAuth
from .autoroute import AutoRouter
from .catalog import Catalog, build_catalog
from .config import Settings
from .cooldown import Cooldowns
from .edge import Edge, request_id_from
from .errors import GatewayError, InternalError, NotFound, PayloadTooLarge, envelope
from .failover import Failover
from .metering import Meter
from .money import format_usd
from .providers import adapter_for
from .providers.base import Adapter
from .ratelimit import RateLimiter
from .relay import Relay
from .sessions import Sessions
from .store import Store
from .store.ledger import release_holds
from .tokens import TokenCounter
from .wallet import Wallets

log = logging.getLogger("tokenroute")


@dataclass
class Gateway:
    """Every service, built once; handlers reach them through this."""

    settings: Settings
    store: Store
    auth: KeyAuth
    catalog: Catalog
    relay: Relay
    failover: Failover
    meter: Meter
    wallets: Wallets
    limiter: RateLimiter
    tokens: TokenCounter
    auto: AutoRouter
    sessions: Sessions


def build_gateway(settings: Settings) -> Gateway:
    store = Store(settings.db_path)
    adapters: dict[str, Adapter] = {p.name: adapter_for(p) for p in settings.providers}
    wallets = Wallets(store)
    tokens = TokenCounter()
    relay = Relay({p.name: p for p in settings.providers}, adapters)
    catalog = build_catalog(settings)
    return Gateway(
        settings=settings,
        store=store,
        auth=KeyAuth(store, settings.key_cache_seconds),
        catalog=catalog,
        relay=relay,
        failover=Failover(relay, Cooldowns(settings)),
        meter=Meter(wallets, tokens),
        wallets=wallets,
        limiter=RateLimiter(settings),
        tokens=tokens,
        auto=AutoRouter(catalog, settings.auto),
        sessions=Sessions(settings.auto.session_seconds),
    )


def create_app(settings: Settings) -> QuartTrio:
    """The Quart app; serve `asgi_app(app)` so the chat route takes the fast edge."""
    from .api import v1_blueprint
    from .auto_api import auto_blueprint
    from .health import health_blueprint

    gw = build_gateway(settings)
    app = QuartTrio("tokenroute")
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        RESPONSE_TIMEOUT=None,  # long streams are bounded by our own upstream timeouts
        BODY_TIMEOUT=60,
        BACKGROUND_TASK_SHUTDOWN_TIMEOUT=60,
        PROVIDE_AUTOMATIC_OPTIONS=False,
    )
    app.extensions["tokenroute"] = gw
    housekeeping = trio.CancelScope()

    async def keep_house() -> None:
        with housekeeping:
            await gw.limiter.housekeeping()

    @app.before_serving
    async def start_services() -> None:
        await app.nursery.start(gw.store.run)
        released, amount = await gw.store.write(release_holds)
        if released:
            log.warning(
                "released %d holds ($%s) left by a gateway process that stopped without "
                "settling them; the usage of those requests is unknown",
                released,
                format_usd(amount),
            )
        gw.relay.open()
        app.nursery.start_soon(keep_house)

    @app.after_serving
    async def stop_services() -> None:
        housekeeping.cancel()
        await gw.relay.aclose()
        gw.store.close()
        await gw.store.wait_stopped()

    @app.before_request
    async def assign_request_id() -> None:
        given = request.headers.get("x-request-id")
        g.request_id = request_id_from(given.encode("latin-1") if given else None)

    @app.after_request
    async def echo_request_id(response: Response) -> Response:
        response.headers["x-request-id"] = g.get("request_id", "")
        return response

    @app.errorhandler(GatewayError)
    async def gateway_error(error: GatewayError) -> Response:
        return _error_response(error)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        if error.code == 413:
            return _error_response(
                PayloadTooLarge(f"the request body is over {settings.max_body_bytes} bytes")
            )
        if error.code == 404:
            return _error_response(NotFound(f"no route for {request.method} {request.path}"))
        wrapped = GatewayError(error.description or error.name)
        wrapped.status, wrapped.type = error.code or 500, "invalid_request_error"
        return _error_response(wrapped)

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        log.exception(
            "unhandled error in %s %s (%s)", request.method, request.path, g.get("request_id")
        )
        return _error_response(
            InternalError(f"internal error; quote request id {g.get('request_id', '')}")
        )

    app.register_blueprint(health_blueprint(gw))
    app.register_blueprint(v1_blueprint(gw))
    app.register_blueprint(auto_blueprint(gw))
    return app


def asgi_app(app: QuartTrio) -> Edge:
    """What the server runs: the hot chat route as plain ASGI, everything else through Quart."""
    return Edge(app, gateway_of(app))


def gateway_of(app: QuartTrio) -> Gateway:
    return app.extensions["tokenroute"]  # type: ignore[no-any-return]


def _error_response(error: GatewayError) -> Response:
    response = Response(envelope(error), status=error.status, content_type="application/json")
    for name, value in error.headers.items():
        response.headers[name] = value
    return response
