"""Operator commands that work on the database file, beside a running server.

`tokenroute admin create-user|create-key|revoke-key` and `tokenroute migrate`;
the money commands are in `cli.money`.
A running server sees their changes within a second (it watches the file).
"""

from __future__ import annotations

import argparse
import sqlite3
from collections.abc import Callable
from typing import Any

from proxy import apikeys
from proxy.money import MoneyError, format_usd, usd_to_units
from proxy.store import AccountError, StoreError, connect, migrate
from proxy.store import accounts as acc

from . import money
from .common import UserFacingError, iso, load, open_database
from .output import emit


def add_commands(
    parser: argparse.ArgumentParser, settings_flags: Callable[[argparse.ArgumentParser], None]
) -> None:
    sub = parser.add_subparsers(dest="admin_command", metavar="COMMAND", required=True)

    user = sub.add_parser("create-user", help="create a user account")
    user.add_argument("--email", required=True)
    user.add_argument("--name", default="", help="display name")
    user.add_argument("--admin", action="store_true", help="give the user operator rights")
    user.set_defaults(run=create_user)

    key = sub.add_parser("create-key", help="create an API key (the raw key is shown once)")
    key.add_argument("--email", required=True, help="the owner's email")
    key.add_argument("--name", required=True, help="a label for the key")
    key.add_argument("--credit", default="0", help="opening balance in USD, e.g. 5.00")
    key.set_defaults(run=create_key)

    revoke = sub.add_parser("revoke-key", help="revoke a key: its next call gets 401")
    revoke.add_argument("id")
    revoke.set_defaults(run=revoke_key)

    for command in (user, key, revoke, *money.add_commands(sub)):
        settings_flags(command)
        command.add_argument("--json", action="store_true", help="machine-readable output")


def _open(args: argparse.Namespace) -> sqlite3.Connection:
    return open_database(load(args))


def migrate_command(args: argparse.Namespace) -> int:
    settings = load(args)
    try:
        conn = connect(settings.db_path)
        applied = migrate(conn)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except StoreError as exc:
        raise UserFacingError(str(exc)) from exc
    conn.close()
    human = "\n".join([f"applied {name}" for name in applied] + [f"schema version {version}"])
    emit({"applied": applied, "schema_version": version}, args.json, human)
    return 0


def create_user(args: argparse.Namespace) -> int:
    conn = _open(args)
    try:
        user = acc.create_user(conn, args.email, admin=args.admin, display_name=args.name)
    except AccountError as exc:
        raise UserFacingError(str(exc)) from exc
    finally:
        conn.close()
    data = {
        "id": user["id"],
        "email": user["email"],
        "display_name": user["display_name"],
        "is_admin": bool(user["is_admin"]),
        "status": user["status"],
        "created_at": iso(int(user["created_at"])),  # type: ignore[call-overload]
    }
    emit(data, args.json, f"created user {data['email']} (id {data['id']})")
    return 0


def create_key(args: argparse.Namespace) -> int:
    try:
        credit = usd_to_units(args.credit)
    except MoneyError as exc:
        raise UserFacingError(f"--credit: {exc}") from exc
    if credit < 0:
        raise UserFacingError("--credit cannot be negative")
    conn = _open(args)
    try:
        user = acc.user_by_email(conn, args.email)
        if user is None:
            raise UserFacingError(
                f"no user with email {args.email}; create one with "
                f"'tokenroute admin create-user --email {args.email}'"
            )
        raw = apikeys.generate_key()
        record = acc.create_key(
            conn,
            user_id=str(user["id"]),
            name=args.name,
            key_hash=apikeys.hash_key(raw),
            key_prefix=apikeys.display_prefix(raw),
            credit=credit,
            actor="cli",
        )
    except AccountError as exc:
        raise UserFacingError(str(exc)) from exc
    finally:
        conn.close()
    data = key_json(record) | {"raw": raw, "email": user["email"]}
    human = (
        f"created key {record.name} (id {record.id}), balance ${format_usd(record.balance)}\n"
        f"{raw}\nThis is the only time the key is shown: store it now."
    )
    emit(data, args.json, human)
    return 0


def revoke_key(args: argparse.Namespace) -> int:
    conn = _open(args)
    try:
        record = acc.revoke_key(conn, args.id)
    except AccountError as exc:
        raise UserFacingError(str(exc)) from exc
    finally:
        conn.close()
    emit(key_json(record), args.json, f"revoked key {record.name} (id {record.id})")
    return 0


def key_json(record: acc.KeyRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "key_prefix": record.key_prefix,
        "balance_usd": format_usd(record.balance),
        "status": record.status,
        "user_id": record.user_id,
        "created_at": iso(record.created_at),
    }
