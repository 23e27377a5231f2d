"""`tokenroute admin payments list|reconcile`: top-ups as the operator sees them."""

from __future__ import annotations

import argparse
from typing import Any

from proxy.core.money import format_usd
from proxy.services import OperatorServices

from .common import iso, run_operator
from .output import emit, table


def add_commands(sub: Any) -> list[argparse.ArgumentParser]:
    payments = sub.add_parser("payments", help="Stripe top-ups: list, reconcile")
    inner = payments.add_subparsers(dest="payments_command", metavar="COMMAND", required=True)
    listing = inner.add_parser("list", help="recent top-ups, newest first")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(run=list_command)
    reconcile = inner.add_parser(
        "reconcile", help="credit paid sessions whose webhook never came (exactly once)"
    )
    reconcile.add_argument("--since", type=int, default=7, metavar="DAYS", help="1-90 (7)")
    reconcile.set_defaults(run=reconcile_command)
    return [listing, reconcile]


def list_command(args: argparse.Namespace) -> int:
    async def read(ops: OperatorServices) -> list[Any]:
        return await ops.payments.payments(limit=max(1, min(args.limit, 1000)))

    found = run_operator(args, read)
    data = [
        {"id": p.id, "key_id": p.key_id, "user_id": p.user_id, "status": p.status,
         "amount_usd": format_usd(p.amount), "credit_usd": format_usd(p.credit),
         "clawed_back_usd": format_usd(p.clawed_back), "owed_usd": format_usd(p.owed),
         "session_id": p.session_id, "created_at": iso(p.created_at)}
        for p in found
    ]  # fmt: skip
    rows = [[d["id"], d["status"], "$" + d["amount_usd"], "$" + d["credit_usd"],
             "$" + d["owed_usd"], d["key_id"], d["created_at"]] for d in data]  # fmt: skip
    headers = ["PAYMENT", "STATUS", "PAID", "CREDIT", "OWED", "KEY", "CREATED"]
    emit(data, args.json, table(headers, rows) if rows else "no payments yet")
    return 0


def reconcile_command(args: argparse.Namespace) -> int:
    async def reconcile(ops: OperatorServices) -> list[dict[str, object]]:
        return await ops.payments.reconcile(args.since)

    credited = run_operator(args, reconcile)
    human = "\n".join(f"credited {c['credit_usd']} USD to key {c['key_id']} (session "
                      f"{c['session_id']})" for c in credited) or "nothing was missing"  # fmt: skip
    emit({"credited": credited}, args.json, human)
    return 0
