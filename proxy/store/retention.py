"""Usage retention in SQL: where it stands, whether the rollups hold a day, deleting old rows.

The daily rollups (`usage_daily`, `usage_days`, `usage_key_days`, migration 0007) are kept
in the same transaction as each usage row (`rollups.py`), so they already hold every day's
totals before a raw row is deleted; deletion touches no rollup. What retention records is
its horizon, a UTC midnight: usage rows created before it may be gone, and the books check
(`ledger.check`) reads the rollups and the ledger, never the raw rows, for those days.

The ledger is never deleted. A usage debit keeps its `usage_id` (a plain number since
migration 0010). Usage ids are never reused, because the newest usage row is never
deleted (`record_batch` numbers new rows from `max(id)`).
"""

from __future__ import annotations

import sqlite3

from .accounts import now_ms
from .dialect import day_of, is_postgres, utc_day

DAY_MS = 86_400_000
_GRAIN = ("day", "key_id", "model", "provider", "tier", "ok")


def horizon(conn: sqlite3.Connection) -> int:
    """Usage rows created before this (ms, a UTC midnight) may have been deleted; 0: none."""
    row = conn.execute("SELECT horizon_ms FROM usage_retention WHERE id = 1").fetchone()
    return int(row[0]) if row else 0


def cutoff_for(now: int, usage_days: int) -> int:
    """The UTC midnight before which rows are older than `usage_days` whole days."""
    moment = now - usage_days * DAY_MS
    return moment - moment % DAY_MS


def days_not_rolled_up(conn: sqlite3.Connection, since_ms: int, until_ms: int) -> list[str]:
    """The UTC days in [since, until) whose raw rows disagree with `usage_daily`.

    A read (run it on a reader connection, not the writer): raw rows grouped the way the
    rollups group them, compared with the rollup rows of the same days. Empty when every
    day's raw rows are exactly what the rollups hold, so deleting them loses nothing.
    """
    raw = conn.execute(
        f"SELECT {day_of(conn, 'created_at')}, coalesce(key_id, ''), "
        "coalesce(served_model, ''), coalesce(provider, ''), coalesce(tier, ''), "
        "CASE WHEN status = 200 THEN 1 ELSE 0 END, count(*), sum(tokens_in), "
        "sum(tokens_out), sum(cost) FROM usage "
        "WHERE created_at >= ? AND created_at < ? GROUP BY 1, 2, 3, 4, 5, 6",
        (since_ms, until_ms),
    ).fetchall()
    rolled = conn.execute(
        f"SELECT {', '.join(_GRAIN)}, requests, tokens_in, tokens_out, cost FROM usage_daily "
        "WHERE day >= ? AND day < ?",
        (utc_day(since_ms), utc_day(until_ms)),
    ).fetchall()
    have = {tuple(r[:6]): tuple(r[6:]) for r in raw}
    want = {tuple(r[:6]): tuple(r[6:]) for r in rolled}
    return sorted({k[0] for k in have.keys() | want.keys() if have.get(k) != want.get(k)})


def oldest_usage(conn: sqlite3.Connection, at_least: int = 0) -> int | None:
    """When the oldest usage row (created at `at_least` or later) was made; None: none."""
    row = conn.execute(
        "SELECT min(created_at) FROM usage WHERE created_at >= ?", (at_least,)
    ).fetchone()
    return None if row[0] is None else int(row[0])


def advance_horizon(conn: sqlite3.Connection, horizon_ms: int) -> int:
    """(A write job.) Move the horizon forward (never back); the horizon now in force."""
    row = conn.execute(
        "INSERT INTO usage_retention (id, horizon_ms, pruned_rows, updated_at) "
        "VALUES (1, ?, 0, ?) ON CONFLICT (id) DO UPDATE SET "
        "horizon_ms = CASE WHEN excluded.horizon_ms > usage_retention.horizon_ms "
        "THEN excluded.horizon_ms ELSE usage_retention.horizon_ms END, "
        "updated_at = excluded.updated_at "
        "RETURNING horizon_ms",
        (horizon_ms, now_ms()),
    ).fetchone()
    return int(row[0])


def delete_batch(conn: sqlite3.Connection, limit: int) -> int:
    """(A write job.) Delete up to `limit` of the oldest usage rows below the horizon; how
    many. The newest usage row is kept whatever its age, so ids are never handed out twice."""
    limit_ms = horizon(conn)
    if not limit_ms:
        return 0
    deleted = conn.execute(
        "DELETE FROM usage WHERE id IN (SELECT id FROM usage WHERE created_at < ? "
        "ORDER BY created_at LIMIT ?) AND id < (SELECT max(id) FROM usage)",
        (limit_ms, limit),
    ).rowcount
    if deleted:
        conn.execute(
            "UPDATE usage_retention SET pruned_rows = pruned_rows + ?, updated_at = ? WHERE id = 1",
            (deleted, now_ms()),
        )
    return int(deleted)


def checkpoint(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """A PASSIVE checkpoint: copies what it can without waiting for readers or the writer.
    (busy, WAL frames, frames checkpointed). PostgreSQL checkpoints on its own: nothing."""
    if is_postgres(conn):
        return 0, 0, 0
    row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(row[0]), int(row[1]), int(row[2])


def pruned_days_problems(conn: sqlite3.Connection, limit_ms: int) -> list[str]:
    """For the days before the horizon, whose raw rows may be gone: the three rollups agree
    with each other, and each key's day in the rollups costs what its ledger debits say."""
    if not limit_ms:
        return []
    problems = []
    for day, *sums in conn.execute(
        "SELECT day, sum(r1), sum(c1), sum(r2), sum(c2), sum(r3), sum(c3) FROM ("
        "SELECT day, requests AS r1, cost AS c1, 0 AS r2, 0 AS c2, 0 AS r3, 0 AS c3 "
        "FROM usage_daily UNION ALL "
        "SELECT day, 0, 0, requests, cost, 0, 0 FROM usage_days UNION ALL "
        "SELECT day, 0, 0, 0, 0, requests, cost FROM usage_key_days"
        ") AS r WHERE day < ? GROUP BY day "
        "HAVING sum(r1) != sum(r2) OR sum(r1) != sum(r3) OR sum(c1) != sum(c2) "
        "OR sum(c1) != sum(c3)",
        (utc_day(limit_ms),),
    ):
        problems.append(
            f"rolled-up day {day}: the rollups disagree (requests and cost: usage_daily "
            f"{sums[0]}, {sums[1]}; usage_days {sums[2]}, {sums[3]}; usage_key_days "
            f"{sums[4]}, {sums[5]})"
        )
    for day, key_id, rolled, debited in conn.execute(
        "SELECT day, key_id, sum(r), sum(l) FROM ("
        "SELECT day, key_id, cost AS r, 0 AS l FROM usage_key_days "
        "WHERE day < :day UNION ALL "
        f"SELECT {day_of(conn, 'created_at')}, key_id, 0, -amount FROM ledger "
        "WHERE kind = 'usage' AND created_at < :h"
        ") AS d GROUP BY day, key_id HAVING sum(r) != sum(l)",
        {"h": limit_ms, "day": utc_day(limit_ms)},
    ):
        problems.append(
            f"rolled-up day {day}, key {key_id or '(none)'}: usage costing {rolled} but "
            f"ledger debits of {debited}"
        )
    return problems
