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
    since_ms: int,
    *,
    key_id: str | None = None,
    user_id: str | None = None,
) -> dict[str, object]:
    """Totals of successful requests since a time, for one key or one user's keys.

    Only successful requests count (as the docs promise); the totals and each
    model's share come from the indexed (key or user, time) range.
    """
    if (key_id is None) == (user_id is None):
        raise ValueError("give exactly one of key_id or user_id")
    column, owner = ("key_id", key_id) if key_id is not None else ("user_id", user_id)
    rows = conn.execute(
        "SELECT served_model, count(*), sum(tokens_in), sum(tokens_out), sum(cost) FROM usage "
        f"WHERE {column} = ? AND created_at >= ? AND status = 200 "
        "GROUP BY served_model ORDER BY sum(cost) DESC, served_model",
        (owner, since_ms),
    ).fetchall()
    by_model = [
        {"model": model, "requests": n, "tokens_in": t_in, "tokens_out": t_out, "cost": cost}
        for model, n, t_in, t_out, cost in rows
    ]
    where = f"WHERE u.{column} = ? AND u.created_at >= ? AND u.status = 200 "
    by_key = [
        {"key_id": key, "name": name, "requests": n, "tokens_in": t_in, "tokens_out": t_out,
         "cost": cost}
        for key, name, n, t_in, t_out, cost in conn.execute(
            "SELECT u.key_id, k.name, count(*), sum(u.tokens_in), sum(u.tokens_out), sum(u.cost) "
            "FROM usage u LEFT JOIN api_keys k ON k.id = u.key_id " + where +
            "GROUP BY u.key_id ORDER BY sum(u.cost) DESC, u.key_id",
            (owner, since_ms),
        )
    ]  # fmt: skip
    by_day = [
        {"date": day, "requests": n, "tokens_in": t_in, "tokens_out": t_out, "cost": cost}
        for day, n, t_in, t_out, cost in conn.execute(
            "SELECT date(u.created_at / 1000, 'unixepoch') AS day, count(*), sum(u.tokens_in), "
            "sum(u.tokens_out), sum(u.cost) FROM usage u " + where + "GROUP BY day ORDER BY day",
            (owner, since_ms),
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
