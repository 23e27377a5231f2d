"""Where SQLite and PostgreSQL differ at run time, in one place: each helper is the store's
common subset, or a small branch on the connection's engine.

The store's functions take either a `sqlite3.Connection` or a `pg.PgConnection`
(`dialect = "postgresql"`); nothing outside the store knows which.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import psycopg

# A unique index or a CHECK refused a row: the caller's problem, on either engine.
INTEGRITY_ERRORS: tuple[type[Exception], ...] = (sqlite3.IntegrityError, psycopg.IntegrityError)
DATABASE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)
DAY_MS = 86_400_000


def is_postgres(conn: Any) -> bool:
    return getattr(conn, "dialect", "sqlite") == "postgresql"


def utc_day(ms: int) -> str:
    """The UTC date (YYYY-MM-DD) of a unix time in ms: SQLite's `date(ms / 1000, 'unixepoch')`,
    computed here so a query passes a day rather than spell the conversion per engine."""
    return time.strftime("%Y-%m-%d", time.gmtime(ms // 1000))


def day_of(conn: Any, column: str) -> str:
    """SQL for the UTC date of a column of unix ms, as text (YYYY-MM-DD)."""
    if is_postgres(conn):
        return f"to_char(to_timestamp({column} / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
    return f"date({column} / 1000, 'unixepoch')"


def next_ids(conn: Any, table: str, count: int) -> list[int]:
    """`count` new ids for rows of `table` that name each other (a usage row and its debit).

    SQLite: after the largest id, safe because the single writer holds the write lock for
    the transaction. PostgreSQL: from the table's identity sequence, so gateways writing at
    once never hand out the same id (a sequence never gives a number twice)."""
    if count <= 0:
        return []
    if is_postgres(conn):
        rows = conn.execute(
            "SELECT nextval(pg_get_serial_sequence(?, 'id')) FROM generate_series(1, ?)",
            (table, count),
        ).fetchall()
        return [int(r[0]) for r in rows]
    first = conn.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}").fetchone()[0]
    return list(range(first, first + count))
