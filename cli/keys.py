"""`tokenroute keys create|list|revoke|transfer`: a person's own API keys (needs a login)."""

from __future__ import annotations

import argparse
from typing import Any

from . import credentials
from .output import UserFacingError, emit, money, short_time, table
from .session import Session


def create_command(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"name": args.name}
    if args.credit is not None and not args.from_key:
        raise UserFacingError("--credit needs --from-key: the key to move it from")
    if args.credit is not None:
        body["credit_usd"] = args.credit
        body["from_key"] = args.from_key
    key = Session(args).call("POST", "/api/v1/me/keys", key_ok=False, json_body=body)
    if not args.no_cache:
        credentials.save_last_key(key["raw"])
    human = (f"created key {key['name']} ({key['id']}), balance {money(key['balance_usd'])}\n"
             f"{key['raw']}\nThis is the only time the key is shown: store it now.")  # fmt: skip
    emit(key, args.json, human)
    return 0


def list_command(args: argparse.Namespace) -> int:
    keys = Session(args).call("GET", "/api/v1/me/keys", key_ok=False)
    if args.json:
        emit(keys, True, "")
        return 0
    rows = [[k["id"], k["name"], k["key_prefix"] + "...", money(k["balance_usd"]), k["status"],
             short_time(k["created_at"]), short_time(k["last_used_at"])] for k in keys]  # fmt: skip
    headers = ["ID", "NAME", "KEY", "BALANCE", "STATUS", "CREATED", "LAST USED"]
    print(table(headers, rows) if rows else "no keys yet: tokenroute keys create --name NAME")
    return 0


def revoke_command(args: argparse.Namespace) -> int:
    key = Session(args).call("POST", f"/api/v1/me/keys/{args.id}/revoke", key_ok=False)
    emit(key, args.json, f"revoked key {key['name']} ({key['id']}); its balance stays on it")
    return 0


def transfer_command(args: argparse.Namespace) -> int:
    body = {"to_key": args.to, "amount_usd": args.amount}
    moved = Session(args).call("POST", f"/api/v1/me/keys/{args.source}/transfer",
                               key_ok=False, json_body=body)  # fmt: skip
    human = (f"moved {money(moved['amount_usd'])}: {moved['from']['name']} now "
             f"{money(moved['from']['balance_usd'])}, {moved['to']['name']} now "
             f"{money(moved['to']['balance_usd'])}")  # fmt: skip
    emit(moved, args.json, human)
    return 0
