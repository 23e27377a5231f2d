"""What every operator command shares: settings, the services on the database file, errors."""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import trio

from proxy.core.config import Settings, load_settings
from proxy.core.errors import ConfigError, GatewayError
from proxy.services import AccountService, OperatorServices, with_operator

from .output import EXIT_SERVER, EXIT_USER, UserFacingError

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


def run_operator(
    args: argparse.Namespace, operation: Callable[[OperatorServices], Awaitable[T]]
) -> T:
    """Run `operation` on the operator's services over the database file."""
    settings = load(args)
    try:
        return trio.run(with_operator, settings, operation)
    except ConfigError as exc:
        raise UserFacingError(str(exc)) from exc
    except GatewayError as exc:
        flag = f"--{exc.param.replace('_', '-')}: " if exc.param else ""
        code = EXIT_USER if exc.status < 500 else EXIT_SERVER
        raise UserFacingError(flag + exc.message, code) from exc


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")
