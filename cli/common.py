"""What every operator command shares: settings, the services on the database file, errors."""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from proxy.core.config import Settings, load_settings
from proxy.core.errors import ConfigError, GatewayError

from .output import EXIT_SERVER, EXIT_USER, UserFacingError

if TYPE_CHECKING:  # `serve` imports this module: its supervisor never builds the services
    from proxy.services import AccountService, OperatorServices

T = TypeVar("T")


def load(args: argparse.Namespace, **overrides: Any) -> Settings:
    try:
        return load_settings(os.environ, args.config, {"db_path": args.db, **overrides})
    except ConfigError as exc:
        raise UserFacingError(str(exc)) from exc


def run_accounts(
    args: argparse.Namespace, operation: Callable[[AccountService], Awaitable[T]]
) -> T:
    """Run `operation` on the account services over the database file (no server needed)."""

    async def on_accounts(services: OperatorServices) -> T:
        return await operation(services.accounts)

    return run_operator(args, on_accounts)


# Operator commands that only read: nothing to put in the audit log.
READ_ONLY = {"ledger", "check", "list"}
NOT_RECORDED = {"password_stdin", "json", "config", "db", "run", "admin_command",
                "payments_command", "command"}  # fmt: skip


def run_operator(
    args: argparse.Namespace, operation: Callable[[OperatorServices], Awaitable[T]]
) -> T:
    """Run `operation` on the operator's services over the database file; a command that
    changes something is written to the audit log (who: `cli`, from: this terminal)."""
    settings = load(args)
    action = getattr(args, "payments_command", None) or getattr(args, "admin_command", None)

    async def audited(services: OperatorServices) -> T:
        result = await operation(services)
        if action and action not in READ_ONLY:
            shown = {k: v for k, v in vars(args).items() if k not in NOT_RECORDED and v}
            target = str(shown.get("email") or shown.get("key") or shown.get("id") or "")
            detail = ", ".join(f"{k}={v}" for k, v in sorted(shown.items()))
            await services.admin.record("cli", action, target, detail, "terminal")
        return result

    from proxy.services import with_operator

    try:
        return trio.run(with_operator, settings, audited)
    except ConfigError as exc:
        raise UserFacingError(str(exc)) from exc
    except GatewayError as exc:
        flag = f"--{exc.param.replace('_', '-')}: " if exc.param else ""
        code = EXIT_USER if exc.status < 500 else EXIT_SERVER
        raise UserFacingError(flag + exc.message, code) from exc


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")
