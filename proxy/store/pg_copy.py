"""Copying a live SQLite database into an empty PostgreSQL one (`migrate-to-postgres`).

The source is read inside one read transaction, as `backup.py` does: a gateway may keep
committing beside it (WAL), and the copy is the snapshot that transaction began on,
row counts, balances and books check included. The target must be empty: the copy
creates the schema itself (the same migrations a gateway runs), then writes every table,
parents before the tables that refer to them, each in id order, in one transaction, and
moves each identity sequence past the largest id copied. It is then verified: the books
check (`tokenroute admin check`) on both sides, every table's row count, every key's
balance. What disagrees is a problem, one line each.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from . import db, ledger, pg, pg_schema

NOT_COPIED = {"schema_migrations"}  # the target's own record of its migrations


class CopyRefused(db.StoreError):
    """The copy cannot start (or finish); one line, nothing was kept on the target."""


@dataclass(frozen=True, slots=True)
class CopyReport:
    source: str
    target: str  # the URL without its password
    rows: dict[str, int]  # table -> rows copied
    problems: list[str] = field(default_factory=list)


def copy_to_postgres(source: Path, url: str) -> CopyReport:
    if not source.is_file():
        raise CopyRefused(f"no SQLite database at {source}")
    target = pg.connect(url)
    try:
        src = db.connect(source, readonly=True)
        try:
            return _copy(src, target, source, url)
        finally:
            src.close()
    except (sqlite3.Error, psycopg.Error) as exc:
        raise CopyRefused(f"copying {source}: {pg.describe(url, exc)}") from None
    finally:
        target.close()


def _copy(src: sqlite3.Connection, target: pg.PgConnection, source: Path, url: str) -> CopyReport:
    shown = pg.redact(url)
    version, latest = db.schema_version(src), len(db.migrations())
    if version != latest:
        raise CopyRefused(
            f"{source} is at schema version {version}, this tokenroute at {latest}: "
            f"run `tokenroute migrate --db {source}` first"
        )
    _refuse_unless_empty(target, shown)
    pg_schema.migrate(target)
    src.execute("BEGIN")  # the snapshot: every table, count and check below reads it
    order = _parents_first(src)
    expected = {t: _count(src, t) for t in order}
    target.execute("BEGIN")
    for table in order:
        _copy_table(src, target, table)
    target.execute("COMMIT")
    problems = [f"SQLite {source}: {p}" for p in ledger.check(src)]
    src_balances = dict(src.execute("SELECT id, balance FROM api_keys").fetchall())
    src.execute("COMMIT")
    problems += [f"PostgreSQL {shown}: {p}" for p in ledger.check(target)]
    for table, count in expected.items():
        copied = _count(target, table)
        if copied != count:
            problems.append(f"table {table}: {count} rows in SQLite, {copied} in PostgreSQL")
    pg_balances = dict(target.execute("SELECT id, balance FROM api_keys").fetchall())
    for key_id in sorted(src_balances.keys() | pg_balances.keys()):
        if src_balances.get(key_id) != pg_balances.get(key_id):
            problems.append(f"key {key_id}: balance {src_balances.get(key_id)} in SQLite, "
                            f"{pg_balances.get(key_id)} in PostgreSQL")  # fmt: skip
    return CopyReport(str(source), shown, expected, problems)


def _refuse_unless_empty(target: pg.PgConnection, shown: str) -> None:
    """Empty: no tables, or only the schema of a copy that failed (every table without a
    row). Anything else may be a live database: it is never written to."""
    tables = [r[0] for r in target.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    )]  # fmt: skip
    ours = pg_schema.schema_version(target) == len(db.migrations()) if tables else True
    filled = [t for t in tables if t not in NOT_COPIED and _count(target, t)]
    if filled or not ours:
        raise CopyRefused(
            f"the database {shown} is not empty ({len(tables)} tables, "
            f"{len(filled)} with rows): migrate-to-postgres copies into an empty database only"
        )


def _parents_first(src: sqlite3.Connection) -> list[str]:
    """The tables to copy, each after the tables its foreign keys point at."""
    names = [r[0] for r in src.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name"
    )]  # fmt: skip
    parents = {t: {r[2] for r in src.execute(f'PRAGMA foreign_key_list("{t}")')} for t in names}
    order: list[str] = []
    while len(order) < len(names):
        ready = [t for t in names if t not in order and parents[t] - {t} <= set(order)]
        if not ready:
            raise CopyRefused(f"foreign keys form a cycle among {set(names) - set(order)}")
        order += ready
    return [t for t in order if t not in NOT_COPIED]


def _count(conn: Any, table: str) -> int:
    return int(conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])


def _copy_table(src: sqlite3.Connection, target: pg.PgConnection, table: str) -> None:
    columns = [r[1] for r in src.execute(f'PRAGMA table_info("{table}")')]
    keys = [r[1] for r in sorted(src.execute(f'PRAGMA table_info("{table}")'), key=lambda r: r[5])
            if r[5]]  # fmt: skip
    order = "id" if "id" in columns else ", ".join(keys) or "rowid"
    listed = ", ".join(f'"{c}"' for c in columns)
    rows = src.execute(f'SELECT {listed} FROM "{table}" ORDER BY {order}')
    with target.raw.cursor().copy(f'COPY "{table}" ({listed}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row(tuple(row))
    if "id" in columns:  # new rows continue after the copied ids
        sequence = target.execute("SELECT pg_get_serial_sequence(?, 'id')", (table,)).fetchone()[0]
        largest = target.execute(f'SELECT max(id) FROM "{table}"').fetchone()[0]
        if sequence and largest is not None:
            target.execute("SELECT setval(CAST(? AS regclass), ?)", (sequence, largest))
