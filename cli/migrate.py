"""`tokenroute migrate [--check]`: upgrade the schema, or say what an upgrade would do.

`--check` is for the moment before an upgrade: it names the migrations the new version
would apply, changes nothing (the file is opened read-only, no -wal or -shm file is made
beside it), and answers in its exit code so a script can stop and take a backup first.
"""

from __future__ import annotations

import argparse
from typing import Any

from proxy.core.errors import ConfigError
from proxy.services import pending_database_migrations

from .common import UserFacingError, load
from .output import EXIT_OK, emit

# Distinct from 1-3 (user, network and server errors): "pending" is an answer, not a failure.
EXIT_PENDING = 4


def migrate_command(args: argparse.Namespace) -> int:
    if args.check:
        return check_command(args)
    from .admin import migrate_command as apply

    return apply(args)


def check_command(args: argparse.Namespace) -> int:
    settings = load(args)
    try:
        version, pending = pending_database_migrations(settings)
    except ConfigError as exc:
        raise UserFacingError(str(exc)) from exc
    latest = version + len(pending)
    data: dict[str, Any] = {
        "schema_version": version,
        "latest_version": latest,
        "up_to_date": not pending,
        "pending": [{"version": m.version, "name": m.name, "summary": m.summary} for m in pending],
    }
    emit(data, args.json, _human(str(settings.db_path), version, latest, data["pending"]))
    return EXIT_PENDING if pending else EXIT_OK


def _human(db: str, version: int, latest: int, pending: list[dict[str, Any]]) -> str:
    if not pending:
        return f"schema version {version}: up to date"
    count = f"{len(pending)} migration{'s' if len(pending) > 1 else ''}"
    width = max(len(m["name"]) for m in pending)
    lines = [f"  {m['name'].ljust(width)}  {m['summary']}" for m in pending]
    if version == 0:
        return "\n".join([f"no schema in {db} yet: `tokenroute migrate` applies {count}", *lines])
    head = f"schema version {version}, this tokenroute has {latest}: {count} pending"
    advice = "back the database up first, then run `tokenroute migrate`"
    return "\n".join([head, *lines, advice])
