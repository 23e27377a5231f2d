"""`tokenroute serve`: the gateway in this process (imported only when serving)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from logging.handlers import QueueHandler, QueueListener
from queue import SimpleQueue

from proxy.core.config import Settings
from proxy.core.errors import ConfigError
from proxy.core.logs import HumanFormatter, JsonFormatter, event
from proxy.services import migrate_database

from .common import UserFacingError, load


def serve_command(args: argparse.Namespace) -> int:
    import trio

    from proxy.server import serve

    settings = load(args, host=args.host, port=args.port, workers=args.workers)
    try:
        migrate_database(settings)  # a bad path or schema fails here, in one line
    except ConfigError as error:
        raise UserFacingError(str(error)) from error
    listener = configure_logging(settings)
    try:
        _log_config(settings)
        trio.run(serve, settings)
    except BaseExceptionGroup as group:
        error = _first_leaf(group)
        if isinstance(error, ConfigError):  # settings only the app can check (auto routes)
            raise UserFacingError(str(error)) from error
        if isinstance(error, OSError):
            raise UserFacingError(
                f"cannot listen on {settings.host}:{settings.port}: {error.strerror or error}"
            ) from error
        raise error from group
    except ConfigError as error:
        raise UserFacingError(str(error)) from error
    except OSError as error:
        raise UserFacingError(
            f"cannot listen on {settings.host}:{settings.port}: {error.strerror or error}"
        ) from error
    finally:
        listener.stop()  # writes out what is queued
    return 0


def _log_config(settings: Settings) -> None:
    """What this server runs with (no secret: key and secret settings are left out)."""
    log = logging.getLogger("tokenroute")
    names = [p.name for p in settings.providers]
    fields = {
        "db": str(settings.db_path),
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


def _first_leaf(group: BaseExceptionGroup) -> BaseException:  # type: ignore[type-arg]
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def configure_logging(settings: Settings) -> QueueListener:
    """Log through a queue to a thread that writes stderr: a full pipe (journald busy) must
    not stall the event loop. JSON lines under systemd (or `log_format = "json"`), words on
    a terminal; in words, one line per request only with `access_log`."""
    as_json = settings.log_format == "json" or (
        settings.log_format == "auto" and _under_systemd() and not sys.stderr.isatty()
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else HumanFormatter())
    queue: SimpleQueue[logging.LogRecord] = SimpleQueue()
    listener = QueueListener(queue, handler)
    listener.start()
    root = logging.getLogger()
    root.handlers[:] = [QueueHandler(queue)]
    root.setLevel(settings.log_level.upper())
    # The HTTP client logs every upstream request at INFO: far too much on the hot path;
    # the MCP SDK logs each stateless request it serves.
    for noisy in ("httpx2", "httpcore2", "httpx", "httpcore", "mcp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    per_request = as_json or settings.access_log
    logging.getLogger("tokenroute.requests").setLevel(
        logging.INFO if per_request else logging.WARNING
    )
    return listener


def _under_systemd() -> bool:
    return "INVOCATION_ID" in os.environ or "JOURNAL_STREAM" in os.environ
