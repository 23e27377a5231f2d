"""Usage rows: one per request, written in batches by the store's writer."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class UsageRecord:
    request_id: str
    key_id: str | None
    user_id: str | None
    requested_model: str
    served_model: str | None
    provider: str | None
    tokens_in: int
    tokens_out: int
    cached_tokens: int
    estimated: bool
    cost: int
    status: int
    error: str | None
    latency_ms: int | None
    ttft_ms: int | None
    stream: bool
    created_at: int
    reserved: int = 0  # the hold the request ran under
    unbilled: int = 0  # cost the balance could not cover (set when settling)
    fallbacks: int = 0  # upstreams that failed before the one that served
    attempts: str | None = None  # those failures, as JSON
    tier: str | None = None  # the tier tokenroute/auto chose
    score: float | None = None  # the complexity score behind it


USAGE_COLUMNS = tuple(f.name for f in fields(UsageRecord))


def usage_values(record: UsageRecord) -> tuple[object, ...]:
    return tuple([getattr(record, name) for name in USAGE_COLUMNS])


def usage_for_request(conn: sqlite3.Connection, request_id: str) -> list[dict[str, object]]:
    rows = conn.execute("SELECT * FROM usage WHERE request_id = ? ORDER BY id", (request_id,))
    return [dict(r) for r in rows]


def usage_summary(
    conn: sqlite3.Connection,
    since_day: str,
    *,
    key_id: str | None = None,
    user_id: str | None = None,
) -> dict[str, object]:
    """Totals of successful requests from a UTC day on, for one key or one user's keys.

    Only successful requests count (as the docs promise). Read from the daily rollup
    (`usage_daily`, kept with each usage row: `rollups.py`), not from the raw rows: it
    answers the same after retention deleted old rows, and reads days, not requests.
    """
    if (key_id is None) == (user_id is None):
        raise ValueError("give exactly one of key_id or user_id")
    column, owner = ("key_id", key_id) if key_id is not None else ("user_id", user_id)
    where = f"WHERE d.{column} = ? AND d.day >= ? AND d.ok = 1 "
    sums = "sum(d.requests), sum(d.tokens_in), sum(d.tokens_out), sum(d.cost)"
    by_model = [
        {"model": model or None, "requests": n, "tokens_in": t_in, "tokens_out": t_out,
         "cost": cost}
        for model, n, t_in, t_out, cost in conn.execute(
            f"SELECT d.model, {sums} FROM usage_daily d " + where +
            "GROUP BY d.model ORDER BY sum(d.cost) DESC, d.model",
            (owner, since_day),
        )
    ]  # fmt: skip
    by_key = [
        {"key_id": key or None, "name": name, "requests": n, "tokens_in": t_in,
         "tokens_out": t_out, "cost": cost}
        for key, name, n, t_in, t_out, cost in conn.execute(
            f"SELECT d.key_id, k.name, {sums} FROM usage_daily d "
            "LEFT JOIN api_keys k ON k.id = d.key_id " + where +
            "GROUP BY d.key_id, k.name ORDER BY sum(d.cost) DESC, d.key_id",
            (owner, since_day),
        )
    ]  # fmt: skip
    by_day = [
        {"date": day, "requests": n, "tokens_in": t_in, "tokens_out": t_out, "cost": cost}
        for day, n, t_in, t_out, cost in conn.execute(
            f"SELECT d.day, {sums} FROM usage_daily d " + where + "GROUP BY d.day ORDER BY d.day",
            (owner, since_day),
        )
    ]
    return {
        "requests": sum(m["requests"] for m in by_model),
        "tokens_in": sum(m["tokens_in"] for m in by_model),
        "tokens_out": sum(m["tokens_out"] for m in by_model),
        "cost": sum(m["cost"] for m in by_model),
        "by_model": by_model,
        "by_key": by_key,
        "by_day": by_day,
    }
