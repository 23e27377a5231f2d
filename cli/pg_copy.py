"""`tokenroute migrate-to-postgres --from FILE --to URL`: a SQLite database into PostgreSQL.

The copy is verified on both sides (the books check, row counts, every key's balance);
each problem is one line and the exit code is 3. Refusals are one line, exit 1. The URL
is never printed with its password.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from proxy.core.errors import ConfigError
from proxy.services.database_copy import copy_sqlite_to_postgres

from .output import EXIT_OK, EXIT_SERVER, UserFacingError, emit


def migrate_to_postgres_command(args: argparse.Namespace) -> int:
    try:
        report = copy_sqlite_to_postgres(Path(args.source), args.to)
    except ConfigError as exc:
        raise UserFacingError(str(exc)) from None
    rows = sum(report.rows.values())
    data = {"source": report.source, "target": report.target, "rows": report.rows,
            "problems": report.problems, "ok": not report.problems}  # fmt: skip
    if report.problems:
        if args.json:
            emit(data, True, "")
        for problem in report.problems:
            print(f"tokenroute: problem: {problem}", file=sys.stderr)
        return EXIT_SERVER
    human = (
        f"copied {rows} rows in {len(report.rows)} tables from {report.source} to "
        f"{report.target}; the books check passes on both sides"
    )
    emit(data, args.json, human)
    return EXIT_OK
