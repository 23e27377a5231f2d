"""Operator money commands: grant, ledger, set-limits, check.

They work on the database file beside a running server, which sees a change
within a second: balances are re-read in order with its own settlements.
"""

from __future__ import annotations

import argparse
import sqlite3
from typing import Any

from proxy.money import MoneyError, format_usd, usd_to_units
from proxy.store import AccountError
from proxy.store import ledger as books

from .common import UserFacingError, iso, load, open_database
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
    kind = "grant" if amount > 0 else "adjustment"
    conn = open_database(load(args))
    try:
        with books.transaction(conn):
            balance = books.credit(conn, args.key, amount, kind=kind, actor="cli", note=args.note)
    except AccountError as exc:
        raise UserFacingError(str(exc)) from exc
    finally:
        conn.close()
    data = {
        "key_id": args.key,
        "kind": kind,
        "amount_usd": format_usd(amount),
        "balance_usd": format_usd(balance),
    }
    emit(data, args.json, f"{kind} ${format_usd(amount)}: balance ${format_usd(balance)}")
    return 0


def ledger_command(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UserFacingError("--limit must be at least 1")
    conn = open_database(load(args))
    try:
        rows = books.ledger_rows(conn, args.key, args.limit)
    except AccountError as exc:
        raise UserFacingError(str(exc)) from exc
    finally:
        conn.close()
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
    settings = load(args)
    settings_tiers = {t.name for t in settings.tiers}
    if args.tier is not None and args.tier not in settings_tiers:
        raise UserFacingError(
            f"--tier: no tier named {args.tier!r} (known: {', '.join(sorted(settings_tiers))})"
        )
    if args.rps is not None and args.rps <= 0:
        raise UserFacingError("--rps: must be above 0")
    if args.burst is not None and args.burst < 1:
        raise UserFacingError("--burst: must be at least 1")
    if args.max_streams is not None and args.max_streams < 0:
        raise UserFacingError("--max-streams: must be at least 0")
    conn = open_database(settings)
    try:
        with books.transaction(conn):
            books.set_limits(
                conn,
                args.key,
                tier=args.tier,
                rps=args.rps,
                burst=args.burst,
                max_streams=args.max_streams,
            )
            row = conn.execute(
                "SELECT tier, rps, burst, max_streams FROM api_keys WHERE id = ?", (args.key,)
            ).fetchone()
    except AccountError as exc:
        raise UserFacingError(str(exc)) from exc
    finally:
        conn.close()
    data = {"key_id": args.key, **dict(row)}
    emit(data, args.json, "limits: " + ", ".join(f"{k}={v}" for k, v in dict(row).items()))
    return 0


def check_command(args: argparse.Namespace) -> int:
    conn = open_database(load(args))
    try:
        problems = books.check(conn)
        holds = _open_holds(conn)
    finally:
        conn.close()
    data = {"ok": not problems, "problems": problems, "open_holds": holds}
    human = "\n".join(problems) if problems else "ok: every balance matches its ledger"
    if holds:
        human += f"\n{holds} holds open (requests in flight, or left by a stopped gateway)"
    emit(data, args.json, human)
    return 1 if problems else 0


def _open_holds(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM holds").fetchone()[0])
