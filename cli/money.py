"""Operator money commands: grant, ledger, set-limits, check.

They work on the database file beside a running server, which sees a change
within a second: balances are re-read in order with its own settlements.
"""

from __future__ import annotations

import argparse
from typing import Any

from proxy.core.money import MoneyError, format_usd, usd_to_units
from proxy.services import AccountService, BooksCheck, Credit

from .common import UserFacingError, iso, run_accounts
from .output import emit

LEDGER_LIMIT = 100


def add_commands(sub: Any) -> list[argparse.ArgumentParser]:
    grant = sub.add_parser("grant", help="add credit to a key (a negative amount takes it back)")
    grant.add_argument("--key", required=True, metavar="ID", help="the key's id")
    grant.add_argument("--amount", required=True, metavar="USD", help="e.g. 5.00 or -1.25")
    grant.add_argument("--note", default=None, help="why, kept on the ledger row")
    grant.set_defaults(run=grant_command)

    ledger = sub.add_parser("ledger", help="a key's ledger, newest first")
    ledger.add_argument("--key", required=True, metavar="ID", help="the key's id")
    ledger.add_argument("--limit", type=int, default=LEDGER_LIMIT, help="rows to show")
    ledger.set_defaults(run=ledger_command)

    limits = sub.add_parser("set-limits", help="set a key's tier or its own limits")
    limits.add_argument("--key", required=True, metavar="ID", help="the key's id")
    limits.add_argument("--tier", help="a tier from the config's [tiers]")
    limits.add_argument("--rps", type=float, help="sustained requests per second")
    limits.add_argument("--burst", type=int, help="requests allowed at once")
    limits.add_argument("--max-streams", type=int, help="concurrent streams")
    limits.set_defaults(run=set_limits_command)

    check = sub.add_parser("check", help="verify balances against the ledger and usage rows")
    check.set_defaults(run=check_command)
    return [grant, ledger, limits, check]


def grant_command(args: argparse.Namespace) -> int:
    try:
        amount = usd_to_units(args.amount)
    except MoneyError as exc:
        raise UserFacingError(f"--amount: {exc}") from exc

    async def grant(accounts: AccountService) -> Credit:
        return await accounts.grant(args.key, amount, note=args.note, actor="cli")

    credit = run_accounts(args, grant)
    data = {
        "key_id": credit.key_id,
        "kind": credit.kind,
        "amount_usd": format_usd(credit.amount),
        "balance_usd": format_usd(credit.balance),
    }
    human = f"{credit.kind} ${format_usd(credit.amount)}: balance ${format_usd(credit.balance)}"
    emit(data, args.json, human)
    return 0


def ledger_command(args: argparse.Namespace) -> int:
    async def ledger(accounts: AccountService) -> list[dict[str, object]]:
        return await accounts.ledger(args.key, args.limit)

    rows = run_accounts(args, ledger)
    entries = [
        {
            "id": row["id"],
            "kind": row["kind"],
            "amount_usd": format_usd(int(row["amount"])),  # type: ignore[call-overload]
            "reference": row["reference"],
            "note": row["note"],
            "actor": row["actor"],
            "created_at": iso(int(row["created_at"])),  # type: ignore[call-overload]
        }
        for row in rows
    ]
    human = "\n".join(
        f"{e['created_at']}  {e['kind']:<10} {e['amount_usd']:>14}  {e['reference'] or ''}"
        + (f"  ({e['note']})" if e["note"] else "")
        for e in entries
    )
    emit({"key_id": args.key, "entries": entries}, args.json, human or "no ledger rows")
    return 0


def set_limits_command(args: argparse.Namespace) -> int:
    async def set_limits(accounts: AccountService) -> dict[str, object]:
        return await accounts.set_limits(
            args.key, tier=args.tier, rps=args.rps, burst=args.burst, max_streams=args.max_streams
        )

    limits = run_accounts(args, set_limits)
    emit(
        {"key_id": args.key, **limits},
        args.json,
        "limits: " + ", ".join(f"{k}={v}" for k, v in limits.items()),
    )
    return 0


def check_command(args: argparse.Namespace) -> int:
    async def check(accounts: AccountService) -> BooksCheck:
        return await accounts.check()

    books = run_accounts(args, check)
    data = {"ok": not books.problems, "problems": books.problems, "open_holds": books.open_holds}
    human = "\n".join(books.problems) if books.problems else "ok: every balance matches its ledger"
    if books.open_holds:
        human += (
            f"\n{books.open_holds} holds open (requests in flight, or left by a stopped gateway)"
        )
    emit(data, args.json, human)
    return 1 if books.problems else 0
