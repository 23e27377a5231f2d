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
