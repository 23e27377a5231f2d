"""`tokenroute`: run the gateway and manage it from a terminal.

Exit codes (as the docs promise): 0 success, 1 user error (bad input, bad
setting, a 4xx), 2 network error, 3 server error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from proxy.core.errors import ConfigError
from proxy.services import migrate_database

from . import admin
from .common import UserFacingError, load
from .output import EXIT_SERVER, fail


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tokenroute",
        description="Self-hostable, OpenAI-compatible LLM API gateway.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    _settings_flags(serve)
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", help="port to bind (default 8080)")
    serve.set_defaults(run=_serve)

    migrate = commands.add_parser("migrate", help="create or upgrade the database schema")
    _settings_flags(migrate)
    migrate.add_argument("--json", action="store_true", help="machine-readable output")
    migrate.set_defaults(run=admin.migrate_command)

    admin_parser = commands.add_parser("admin", help="operator commands on the database file")
    admin.add_commands(admin_parser, _settings_flags)
    return parser


def _settings_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="tokenroute.toml (default: $TOKENROUTE_CONFIG)")
    parser.add_argument("--db", help="SQLite database file (default ./tokenroute.db)")


def _serve(args: argparse.Namespace) -> int:
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
    # The HTTP client logs every upstream request at INFO: far too much on the hot path.
    for noisy in ("httpx2", "httpcore2", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if os.environ.get("TOKENROUTE_JSON") == "1" and hasattr(args, "json"):
        args.json = True
    try:
        code: int = args.run(args)
    except UserFacingError as exc:
        return fail(str(exc), exc.code, getattr(args, "json", False))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # never a traceback to a user; the log has the details
        logging.getLogger("tokenroute").debug("unexpected error", exc_info=True)
        return fail(f"unexpected error: {exc!r}", EXIT_SERVER, getattr(args, "json", False))
    return code


if __name__ == "__main__":
    sys.exit(main())
