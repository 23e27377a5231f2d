"""Serving the app under Hypercorn's trio worker in this process.

One process, one event loop. SIGTERM or SIGINT starts a graceful shutdown: stop
accepting, let in-flight requests (long streams included) finish for `shutdown_grace`
seconds, then cancel them; their usage is still recorded before the store closes.
A worker of `serve --workers N` runs the same, on the listening sockets its supervisor
bound and handed down (`fd://`), and the supervisor forwards it the signal.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable
from functools import partial
from importlib.metadata import version

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from quart_trio import QuartTrio

from .app import asgi_app, create_app, metrics_asgi_app, services_of, started
from .core.config import Settings
from .core.logs import event

log = logging.getLogger("tokenroute")
DRAIN_MARGIN = 5.0  # seconds for cut streams to send their error event and usage row


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    shared = settings.worker.listen_fd if settings.worker else None
    config.bind = [f"fd://{shared}" if shared is not None else f"{settings.host}:{settings.port}"]
    # Our own drain ends streams at `shutdown_grace`; Hypercorn's cancel is the backstop.
    config.graceful_timeout = settings.shutdown_grace + DRAIN_MARGIN
    config.backlog = 2048
    config.keep_alive_timeout = 75
    config.accesslog = logging.getLogger("tokenroute.access") if settings.access_log else None
    config.errorlog = logging.getLogger("tokenroute.server")
    config.include_server_header = False
    return config


def metrics_config(settings: Settings) -> Config:
    """The `[metrics] listen` listener's: one address, no access log, a short drain."""
    config = Config()
    shared = settings.worker.metrics_fd if settings.worker else None
    config.bind = [f"fd://{shared}" if shared is not None else str(settings.metrics.listen)]
    config.graceful_timeout = 1.0
    config.accesslog = None
    config.errorlog = logging.getLogger("tokenroute.server")
    config.include_server_header = False
    return config


async def wait_for_signal() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            log.info("received %s: shutting down gracefully", name,
                     extra=event("shutdown", signal=name, phase="draining"))  # fmt: skip
            return


async def serve(
    settings: Settings,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = wait_for_signal,
    app: QuartTrio | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run until the trigger fires; `task_status.started` gets the bound addresses.

    `app` is one `create_app(settings)` made already (to reach its services in tests).
    """
    app = app or create_app(settings)
    services = services_of(app)

    async def drain_then_cut() -> None:
        await trio.sleep(settings.shutdown_grace)
        cut = services.cut_streams("the gateway is shutting down; retry the request")
        if cut:
            log.info("grace period over: ended %d open streams", cut,
                     extra=event("shutdown", phase="cut", streams=cut))  # fmt: skip

    async with trio.open_nursery() as nursery:
        if settings.metrics.listen is not None:  # until the main server has served out
            listener = partial(
                hypercorn_serve,
                metrics_asgi_app(app),  # type: ignore[arg-type]
                metrics_config(settings),
            )
            bound = await nursery.start(partial(listener, shutdown_trigger=trio.sleep_forever))
            services.metrics_export.listening = bound
            log.info("metrics served without the secret on %s", ", ".join(bound))

        async def trigger() -> None:
            if shutdown_trigger is None:
                await trio.sleep_forever()
            else:
                await shutdown_trigger()
            nursery.start_soon(drain_then_cut)

        async def run(task_status: trio.TaskStatus[list[str]]) -> None:
            await hypercorn_serve(
                asgi_app(app),  # type: ignore[arg-type]
                hypercorn_config(settings),
                shutdown_trigger=trigger,
                task_status=task_status,
            )
            # Served out: the last request ended before the grace did; nothing is left to cut.
            nursery.cancel_scope.cancel()

        binds = await nursery.start(run)
        if not started(app):  # its start failed: the error is on its way; never say "serving"
            await trio.sleep_forever()
        services.identity.serving_at(binds[0])
        log.info("serving", extra=event("start", listen=binds, version=version("tokenroute")))
        task_status.started(binds)
    log.info("stopped", extra=event("shutdown", phase="stopped"))
