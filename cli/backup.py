"""`tokenroute backup`, `tokenroute restore` and `tokenroute admin prune-usage`.

Backup runs beside a live server (it reads one WAL snapshot; the server's writer never
waits for it). Restore refuses while a server or an admin command has the database
open. Exit codes as everywhere: 1 for what the operator can fix (PATH exists, the server
is running, the backup's books do not balance), 3 for a copy that fails its verification.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from proxy.services import OperatorServices
from proxy.services import backups as copies
from proxy.services.retention import PruneReport

from .common import iso, load, run_operator
from .output import EXIT_SERVER, EXIT_USER, UserFacingError, emit


def add_admin_commands(sub: Any) -> list[argparse.ArgumentParser]:
    prune = sub.add_parser(
        "prune-usage",
        help="delete raw usage rows older than [retention] usage_days now (rollups and "
        "the ledger stay)",
    )
    prune.add_argument("--days", type=int, help="keep this many days instead of the setting")
    prune.set_defaults(run=prune_usage_command)
    return [prune]


def backup_command(args: argparse.Namespace) -> int:
    settings = load(args)
    try:
        done = copies.backup(
            settings, Path(args.path), force=args.force, step_pages=args.step_pages
        )
    except copies.NotTrusted as exc:
        raise UserFacingError(str(exc), EXIT_SERVER) from exc
    except copies.StoreError as exc:  # PATH exists, no database there...
        raise UserFacingError(str(exc)) from exc
    data, human = _report(done)
    emit(data, args.json, f"backup of {settings.db_path} written to {args.path}: {human}")
    return EXIT_USER if done.verified.problems else 0


def restore_command(args: argparse.Namespace) -> int:
    settings = load(args)
    try:
        done = copies.restore(settings, Path(args.path), force=args.force)
    except copies.StoreError as exc:  # the database is in use, the backup is damaged...
        raise UserFacingError(str(exc)) from exc
    data, human = _report(done)
    kept = f"; the database it replaced is kept as {done.replaced}" if done.replaced else ""
    data["replaced"] = str(done.replaced) if done.replaced else None
    emit(data, args.json, f"restored {args.path} to {settings.db_path}: {human}{kept}")
    return 0


def prune_usage_command(args: argparse.Namespace) -> int:
    if args.days is not None and args.days < 1:
        raise UserFacingError("--days: expected at least 1")

    async def prune(ops: OperatorServices) -> PruneReport:
        return await ops.retention.prune(args.days)

    report = run_operator(args, prune)
    data = {
        "usage_days": report.usage_days,
        "cutoff": iso(report.cutoff_ms) if report.cutoff_ms else None,
        "horizon": iso(report.horizon_ms) if report.horizon_ms else None,
        "deleted": report.deleted,
        "batches": report.batches,
        "seconds": round(report.seconds, 3),
        "not_rolled_up": report.not_rolled_up,
    }
    if not report.usage_days:
        human = "retention is off ([retention] usage_days = 0): nothing deleted"
    else:
        human = (f"deleted {report.deleted} usage rows created before "
                 f"{data['cutoff']} in {report.batches} batches")  # fmt: skip
    if report.not_rolled_up:
        human += (f"\nstopped at {report.not_rolled_up[0]}: its usage rows disagree with the "
                  "daily rollups (see `tokenroute admin check`)")  # fmt: skip
        emit(data, args.json, human)
        return EXIT_SERVER
    emit(data, args.json, human)
    return 0


def _report(done: copies.Done) -> tuple[dict[str, Any], str]:
    found = done.verified
    data: dict[str, Any] = {
        "ok": not found.problems,
        "path": str(found.path),
        "bytes": found.bytes,
        "schema_version": found.schema_version,
        "rows": found.rows,
        "problems": found.problems,
        "open_holds": found.open_holds,
        "notes": found.notes,
        "seconds": round(done.seconds, 3),
    }
    rows, problems = found.rows, found.problems
    books = f"{len(problems)} PROBLEMS in the books" if problems else "books balance"
    holds = f" ({found.open_holds} holds of requests in flight)" if found.open_holds else ""
    human = "\n".join([
        f"{found.bytes / 1e6:.1f} MB, schema {found.schema_version}, {rows.get('usage', 0)} "
        f"usage rows, {rows.get('ledger', 0)} ledger rows, integrity ok, {books}{holds}, "
        f"in {done.seconds:.1f} s",
        *problems,
        *(f"note: {note}" for note in found.notes),
    ])  # fmt: skip
    return data, human
