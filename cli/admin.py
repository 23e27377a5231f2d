"""Operator commands on the database file, beside a running server or without one.

`tokenroute admin create-user|create-key|revoke-key` and `tokenroute migrate`; the
money commands are in `cli.money`. Each parses its flags, calls the account
service, and prints; a running server sees the change within a second.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from proxy.core.errors import ConfigError
from proxy.core.money import MoneyError, format_usd, usd_to_units
from proxy.services import (
    KeyRecord,
    NewKey,
    OperatorServices,
    UserRecord,
    migrate_database,
)

from . import backup, money, payments_admin, users
from .common import UserFacingError, iso, load, run_operator
from .output import emit


def add_commands(
    parser: argparse.ArgumentParser, settings_flags: Callable[[argparse.ArgumentParser], None]
) -> None:
    sub = parser.add_subparsers(dest="admin_command", metavar="COMMAND", required=True)

    user = sub.add_parser("create-user", help="create a user account")
    user.add_argument("--email", required=True)
    user.add_argument("--name", default="", help="display name")
    user.add_argument("--admin", action="store_true", help="give the user operator rights")
    user.add_argument(
        "--password-stdin",
        action="store_true",
        help="read a password to sign in with from standard input (one line)",
    )
    user.set_defaults(run=create_user)

    key = sub.add_parser("create-key", help="create an API key (the raw key is shown once)")
    key.add_argument("--email", required=True, help="the owner's email")
    key.add_argument("--name", required=True, help="a label for the key")
    key.add_argument("--credit", default="0", help="opening balance in USD, e.g. 5.00")
    key.set_defaults(run=create_key)

    revoke = sub.add_parser("revoke-key", help="revoke a key: its next call gets 401")
    revoke.add_argument("id")
    revoke.set_defaults(run=revoke_key)

    commands = [*money.add_commands(sub), *users.add_commands(sub), *backup.add_admin_commands(sub)]
    for command in (user, key, revoke, *commands, *payments_admin.add_commands(sub)):
        settings_flags(command)
        command.add_argument("--json", action="store_true", help="machine-readable output")


def migrate_command(args: argparse.Namespace) -> int:
    try:
        applied, version = migrate_database(load(args))
    except ConfigError as exc:
        raise UserFacingError(str(exc)) from exc
    human = "\n".join([f"applied {name}" for name in applied] + [f"schema version {version}"])
    emit({"applied": applied, "schema_version": version}, args.json, human)
    return 0


def create_user(args: argparse.Namespace) -> int:
    password = users.read_password() if args.password_stdin else None

    async def create(ops: OperatorServices) -> UserRecord:
        if password is not None:  # refused before the user exists, not after
            ops.identity.check_password(password)
        user = await ops.accounts.create_user(args.email, name=args.name, admin=args.admin)
        if password is not None:
            user = await ops.identity.set_password(user.email, password)
        return user

    user = run_operator(args, create)
    emit(users.user_json(user), args.json, f"created user {user.email} (id {user.id})")
    return 0


def create_key(args: argparse.Namespace) -> int:
    try:
        credit = usd_to_units(args.credit)
    except MoneyError as exc:
        raise UserFacingError(f"--credit: {exc}") from exc
    if credit < 0:
        raise UserFacingError("--credit cannot be negative")

    async def create(ops: OperatorServices) -> NewKey:
        return await ops.accounts.create_key(args.email, args.name, credit=credit, actor="cli")

    new = run_operator(args, create)
    record = new.record
    data = key_json(record) | {"raw": new.raw, "email": new.owner.email}
    human = (
        f"created key {record.name} (id {record.id}), balance ${format_usd(record.balance)}\n"
        f"{new.raw}\nThis is the only time the key is shown: store it now."
    )
    emit(data, args.json, human)
    return 0


def revoke_key(args: argparse.Namespace) -> int:
    async def revoke(ops: OperatorServices) -> KeyRecord:
        return await ops.accounts.revoke_key(args.id)

    record = run_operator(args, revoke)
    emit(key_json(record), args.json, f"revoked key {record.name} (id {record.id})")
    return 0


def key_json(record: KeyRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "key_prefix": record.key_prefix,
        "balance_usd": format_usd(record.balance),
        "status": record.status,
        "user_id": record.user_id,
        "created_at": iso(record.created_at),
    }
