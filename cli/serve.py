"""`tokenroute serve`: the gateway in this process, or a supervisor of N worker processes
with `--workers N` (imported only when serving)."""

from __future__ import annotations

import argparse
import logging

from proxy.core.config import Settings
from proxy.core.config_scale import redacted_url
from proxy.core.errors import ConfigError
from proxy.core.logs import event
from proxy.services import migrate_database

from .common import UserFacingError, load
from .process import configure_logging, first_leaf, startup_failure


def serve_command(args: argparse.Namespace) -> int:
    settings = load(args, host=args.host, port=args.port, workers=args.workers)
    try:
        migrate_database(settings)  # a bad path or schema fails here, in one line
    except ConfigError as error:
        raise UserFacingError(str(error)) from error
    listener = configure_logging(settings)
    try:
        _log_config(settings)
        if settings.scale.worker_count() > 1:
            from .supervisor import supervise

            return supervise(settings)
        _serve_in_this_process(settings)
    finally:
        listener.stop()  # writes out what is queued
    return 0


def _serve_in_this_process(settings: Settings) -> None:
    import trio

    from proxy.server import serve

    try:
        trio.run(serve, settings)
    except (BaseExceptionGroup, ConfigError, OSError) as error:
        failure = startup_failure(error, settings)
        if failure is None:
            raise first_leaf(error) from error
        raise failure from error


def _log_config(settings: Settings) -> None:
    """What this server runs with (no secret: key and secret settings are left out)."""
    log = logging.getLogger("tokenroute")
    names = [p.name for p in settings.providers]
    scale = settings.scale
    fields = {
        "db": redacted_url(scale.database_url) if scale.database_url else str(settings.db_path),
        "redis": redacted_url(scale.redis_url) if scale.redis_url else None,
        "providers": names,
        "public_url": settings.public_url,
        "host": settings.host,
        "port": settings.port,
        "shutdown_grace": settings.shutdown_grace,
        "markup": str(settings.markup),
        "log_level": settings.log_level,
    }
    log.info("starting", extra=event("config", **fields))
    if not settings.providers:
        log.warning("no provider is enabled: set OPENAI_API_KEY or add [providers.NAME]")
