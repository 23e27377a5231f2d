"""The daily rollups of new usage rows, written by the settlement in its own transaction.

SQLite keeps them with the trigger of migration 0007 (one upsert per usage row per
rollup). PostgreSQL has no such trigger (`migrations/postgresql/0007_usage_daily.sql`):
the settlement adds its batch's rows here, summed per rollup row first, as plain
`INSERT ... ON CONFLICT DO UPDATE` statements both engines accept. The rows are upserted
in sorted order, so two gateways settling at once lock them in the same order and
cannot deadlock on them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .dialect import is_postgres, utc_day
from .usage import UsageRecord

_ROWS_PER_STATEMENT = 2000
_SUMS = ("tokens_in", "tokens_out", "cost")
_TABLES = (  # table, its key, the columns summed (after `requests`)
    ("usage_daily", ("day", "key_id", "model", "provider", "tier", "ok"), _SUMS),
    ("usage_days", ("day", "ok"), _SUMS),
    ("usage_key_days", ("day", "key_id"), ("cost",)),
)


def roll_up(conn: Any, records: Iterable[UsageRecord]) -> None:
    """Count `records` (usage rows just inserted, as billed) into the three rollups."""
    if not is_postgres(conn):
        return  # the trigger of 0007 did it, row by row, as each row went in
    sums: dict[str, dict[tuple[Any, ...], list[Any]]] = {table: {} for table, _, _ in _TABLES}
    for record in records:
        grain = {
            "day": utc_day(record.created_at),
            "key_id": record.key_id or "",
            "model": record.served_model or "",
            "provider": record.provider or "",
            "tier": record.tier or "",
            "ok": 1 if record.status == 200 else 0,
        }
        values = {"tokens_in": record.tokens_in, "tokens_out": record.tokens_out,
                  "cost": record.cost}  # fmt: skip
        for table, key, summed in _TABLES:
            row = sums[table].setdefault(
                tuple(grain[name] for name in key), [record.user_id, 0] + [0] * len(summed)
            )
            row[1] += 1
            for i, name in enumerate(summed):
                row[2 + i] += values[name]
    for table, key, summed in _TABLES:
        _upsert(conn, table, key, summed, sums[table])


def _upsert(
    conn: Any,
    table: str,
    key: tuple[str, ...],
    summed: tuple[str, ...],
    rows: dict[tuple[Any, ...], list[Any]],
) -> None:
    user = ("user_id",) if "key_id" in key else ()
    columns = (*key, *user, "requests", *summed)
    added = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in ("requests", *summed))
    ordered = [(*k, *(v if user else v[1:])) for k, v in sorted(rows.items())]
    marks = "(" + ", ".join("?" * len(columns)) + ")"
    for start in range(0, len(ordered), _ROWS_PER_STATEMENT):
        part = ordered[start : start + _ROWS_PER_STATEMENT]
        conn.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([marks] * len(part))} "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {added}",
            [value for row in part for value in row],
        )
