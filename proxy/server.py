"""Serving the app under Hypercorn's trio worker in this process.

One process, one event loop: no master/worker pair. SIGTERM or SIGINT starts a
graceful shutdown: stop accepting, let in-flight requests (long streams
included) finish for `shutdown_grace` seconds, then cancel them; their usage is
still recorded before the store closes.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from .app import create_app
from .config import Settings

log = logging.getLogger("tokenroute")


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.graceful_timeout = settings.shutdown_grace
    config.backlog = 2048
    config.keep_alive_timeout = 75
    config.accesslog = logging.getLogger("tokenroute.access") if settings.access_log else None
    config.errorlog = logging.getLogger("tokenroute.server")
    config.include_server_header = False
    return config


async def wait_for_signal() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s: shutting down gracefully", signal.Signals(signum).name)
            return


async def serve(
    settings: Settings,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = wait_for_signal,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run until the trigger fires; `task_status.started` gets the bound addresses."""
    app = create_app(settings)
    await hypercorn_serve(
        app,  # type: ignore[arg-type]
        hypercorn_config(settings),
        shutdown_trigger=shutdown_trigger,
        task_status=task_status,
    )
