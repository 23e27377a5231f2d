"""`tokenroute`: the account commands of the docs, and the operator's commands.

Exit codes (as the docs promise): 0 success, 1 user error (bad input, bad setting, a
4xx, no key, not logged in), 2 network error, 3 server error (a 5xx, a failed login).
The account commands speak HTTP with the standard library; the operator commands
(`serve`, `migrate`, `admin`) import the gateway only when they run, so `--help` and
`env` start fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .output import EXIT_SERVER, EXIT_USER, UserFacingError, fail

OPERATOR = ("serve", "migrate", "migrate-to-postgres", "admin", "backup", "restore")


class Parser(argparse.ArgumentParser):
    """Usage errors exit 1 (a user error) with one line, like every other failure."""

    def error(self, message: str) -> Any:
        self.print_usage(sys.stderr)
        print(f"tokenroute: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USER)


class Version(argparse.Action):
    """`--version`, looked up only when asked (reading package metadata takes a while)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(f"tokenroute {_version()}")
        parser.exit()


def lazy(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """A command whose module is imported only when it runs."""

    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(module, __package__), name)(args)  # type: ignore[no-any-return]

    return run


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    about = "OpenAI-compatible LLM gateway: your account from a terminal, and the gateway."
    parser = Parser(prog="tokenroute", description=about)
    parser.add_argument("--version", action=Version, nargs=0, help="print the version")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                     parser_class=Parser)  # fmt: skip

    def command(name: str, help: str, run: Callable[[argparse.Namespace], int]) -> Any:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument("--version", action=Version, nargs=0, help="print the version")
        sub.add_argument("--json", action="store_true", help="machine-readable output")
        sub.add_argument("--api-url", help="the gateway (default $TOKENROUTE_API_URL, "
                         "else the one you logged in to, else http://127.0.0.1:8080)")  # fmt: skip
        sub.set_defaults(run=run)
        return sub

    login = command("login", "log in with the OAuth device flow", lazy(".login", "login_command"))
    login.add_argument("--no-browser", action="store_true", help="do not open a browser")
    command("logout", "forget the stored login (and revoke it)", lazy(".login", "logout_command"))
    command("whoami", "who you are, and your balance", lazy(".account", "whoami_command"))
    command("balance", "credit across your active keys", lazy(".account", "balance_command"))
    usage = command("usage", "spend over the last N days", lazy(".account", "usage_command"))
    usage.add_argument("--days", type=int, default=30, help="1-365 (default 30)")
    usage.add_argument("--key", metavar="ID", help="one key only")
    topup = command("topup", "a checkout URL to add credit", lazy(".account", "topup_command"))
    topup.add_argument("--amount", required=True, metavar="USD")
    topup.add_argument("--key", metavar="ID", help="the key to credit")
    topup.add_argument("--no-browser", action="store_true", help="do not open a browser")
    models = command("models", "models and prices", lazy(".account", "models_command"))
    models.add_argument("--key", metavar="SK", help="the API key to list with")
    env = command("env", "OPENAI_API_KEY and OPENAI_BASE_URL lines for a .env file",
                  lazy(".account", "env_command"))  # fmt: skip
    env.add_argument("--key", metavar="SK", help="the key (default: the env, else the last made)")
    env.add_argument("--format", choices=("openai", "anthropic"), default="openai")
    test = command("test", "send a tiny chat completion", lazy(".account", "test_command"))
    test.add_argument("--model", help="default openai/gpt-4o-mini, else the cheapest listed")
    test.add_argument("--key", metavar="SK", help="the key (default as for env)")
    _keys_commands(commands)

    serve = commands.add_parser("serve", help="run the gateway")
    _settings_flags(serve)
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", help="port to bind (default 8080)")
    serve.add_argument("--workers", help="gateway processes (default: one per CPU core)")
    serve.set_defaults(run=lazy(".serve", "serve_command"))
    migrate = commands.add_parser("migrate", help="create or upgrade the database schema",
                                  epilog="exit codes with --check: 0 up to date, "
                                  "4 migrations pending")  # fmt: skip
    _settings_flags(migrate)
    migrate.add_argument("--check", action="store_true", help="say which migrations would "
                         "run, changing nothing (exit 0: up to date, 4: pending)")  # fmt: skip
    migrate.add_argument("--json", action="store_true", help="machine-readable output")
    migrate.set_defaults(run=lazy(".migrate", "migrate_command"))
    to_pg = commands.add_parser("migrate-to-postgres", help="copy a SQLite database into an "
                                "empty PostgreSQL one, and verify the copy")  # fmt: skip
    to_pg.add_argument("--from", dest="source", required=True, metavar="FILE",
                       help="the SQLite database (it may be in use)")  # fmt: skip
    to_pg.add_argument("--to", required=True, metavar="URL", help="postgresql://... (empty)")
    to_pg.add_argument("--json", action="store_true", help="machine-readable output")
    to_pg.set_defaults(run=lazy(".pg_copy", "migrate_to_postgres_command"))
    backup = commands.add_parser("backup", help="copy the database while the server runs, "
                                 "and verify the copy")  # fmt: skip
    backup.add_argument("--step-pages", type=int, default=1024, metavar="N",
                        help="pages copied per step (default 1024: 4 MiB)")  # fmt: skip
    restore = commands.add_parser("restore", help="replace the database with a verified "
                                  "backup (with the server stopped)")  # fmt: skip
    for copy, force in ((backup, "replace PATH if it exists"),
                        (restore, "restore even a backup whose books do not balance")):  # fmt: skip
        _settings_flags(copy)
        copy.add_argument("path", metavar="PATH", help="the backup file")
        copy.add_argument("--force", action="store_true", help=force)
        copy.add_argument("--json", action="store_true", help="machine-readable output")
        copy.set_defaults(run=lazy(".backup", f"{copy.prog.split()[-1]}_command"))
    admin = commands.add_parser("admin", help="operator commands on the database file")
    if "admin" in argv:  # its many subcommands are built only when asked for
        from . import admin as operator

        operator.add_commands(admin, _settings_flags)
    return parser


def _keys_commands(commands: Any) -> None:
    keys = commands.add_parser("keys", help="your API keys")
    sub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True,
                              parser_class=Parser)  # fmt: skip

    def command(name: str, help: str, run: str) -> Any:
        parser = sub.add_parser(name, help=help, description=help)
        parser.add_argument("--version", action=Version, nargs=0, help="print the version")
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        parser.add_argument("--api-url", help="the gateway (default as for login)")
        parser.set_defaults(run=lazy(".keys", run))
        return parser

    create = command("create", "create a key (the raw key is shown once)", "create_command")
    create.add_argument("--name", required=True)
    create.add_argument("--no-cache", action="store_true",
                        help="do not keep the raw key in ~/.tokenroute/last_key.txt")  # fmt: skip
    create.add_argument("--credit", metavar="USD", help="move this much from --from-key")
    create.add_argument("--from-key", metavar="ID")
    command("list", "your keys (never their raw values)", "list_command")
    revoke = command("revoke", "revoke a key: its next call gets 401", "revoke_command")
    revoke.add_argument("id")
    transfer = command("transfer", "move credit between your keys", "transfer_command")
    transfer.add_argument("--from", dest="source", required=True, metavar="ID")
    transfer.add_argument("--to", required=True, metavar="ID")
    transfer.add_argument("--amount", required=True, metavar="USD")


def _settings_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="tokenroute.toml (default: $TOKENROUTE_CONFIG)")
    parser.add_argument("--db", help="SQLite database file (default ./tokenroute.db)")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tokenroute")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # the reader went away (`| head`): nothing more to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_USER


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    if os.environ.get("TOKENROUTE_JSON") == "1" and hasattr(args, "json"):
        args.json = True
    try:
        code: int = args.run(args)
    except UserFacingError as exc:
        return fail(str(exc), exc.code, getattr(args, "json", False))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        raise
    except Exception as exc:  # never a traceback to a user; the log has the details
        logging.getLogger("tokenroute").debug("unexpected error", exc_info=True)
        return fail(f"unexpected error: {exc!r}", EXIT_SERVER, getattr(args, "json", False))
    return code


if __name__ == "__main__":
    sys.exit(main())
