"""What every gateway process does alike, alone or as one of N workers: its log, and the
one line for what stopped it from serving."""

from __future__ import annotations

import logging
import os
import sys
from logging.handlers import QueueHandler, QueueListener
from queue import SimpleQueue

from proxy.core.config import Settings
from proxy.core.errors import ConfigError
from proxy.core.logs import HumanFormatter, JsonFormatter

from .output import UserFacingError


def startup_failure(error: BaseException, settings: Settings) -> UserFacingError | None:
    """The one line for what stopped the gateway from serving (None: not the operator's)."""
    error = first_leaf(error)
    if isinstance(error, ConfigError):  # settings only the app can check (auto routes)
        return UserFacingError(str(error))
    if isinstance(error, OSError):
        return UserFacingError(
            f"cannot listen on {settings.host}:{settings.port}: {error.strerror or error}"
        )
    return None


def configure_logging(settings: Settings) -> QueueListener:
    """Log through a queue to a thread that writes stderr: a full pipe (journald busy) must
    not stall the event loop. JSON lines under systemd (or `log_format = "json"`), words on
    a terminal; in words, one line per request only with `access_log`. A worker's lines
    say which worker wrote them."""
    worker = settings.worker.index if settings.worker else None
    as_json = settings.log_format == "json" or (
        settings.log_format == "auto" and _under_systemd() and not sys.stderr.isatty()
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(worker) if as_json else HumanFormatter(worker))
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


def first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
