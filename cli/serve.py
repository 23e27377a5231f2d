"""`tokenroute serve`: the gateway in this process (imported only when serving)."""

from __future__ import annotations

import argparse
import logging
import sys

from proxy.core.errors import ConfigError
from proxy.services import migrate_database

from .common import UserFacingError, load


def serve_command(args: argparse.Namespace) -> int:
    import trio

    from proxy.server import serve

    settings = load(args, host=args.host, port=args.port)
    try:
        migrate_database(settings)  # a bad path or schema fails here, in one line
    except ConfigError as error:
        raise UserFacingError(str(error)) from error
    _configure_logging(settings.log_level)
    log = logging.getLogger("tokenroute")
    names = ", ".join(p.name for p in settings.providers) or "none"
    log.info("database %s; providers: %s", settings.db_path, names)
    if not settings.providers:
        log.warning("no provider is enabled: set OPENAI_API_KEY or add [providers.NAME]")
    try:
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
    return 0


def _first_leaf(group: BaseExceptionGroup) -> BaseException:  # type: ignore[type-arg]
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # The HTTP client logs every upstream request at INFO: far too much on the hot path;
    # the MCP SDK logs each stateless request it serves.
    for noisy in ("httpx2", "httpcore2", "httpx", "httpcore", "mcp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
