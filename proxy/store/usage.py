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


_INSERT = (
    "INSERT INTO usage (request_id, key_id, user_id, requested_model, served_model, provider, "
    "tokens_in, tokens_out, cached_tokens, estimated, cost, status, error, latency_ms, ttft_ms, "
    "stream, created_at, reserved, unbilled) VALUES (" + ", ".join("?" * 19) + ")"
)


_COLUMNS = tuple(f.name for f in fields(UsageRecord))


def insert_usage(conn: sqlite3.Connection, record: UsageRecord) -> int:
    """Insert the row; its id."""
    cursor = conn.execute(_INSERT, tuple([getattr(record, name) for name in _COLUMNS]))
    return cursor.lastrowid  # type: ignore[return-value]


def usage_for_request(conn: sqlite3.Connection, request_id: str) -> list[dict[str, object]]:
    rows = conn.execute("SELECT * FROM usage WHERE request_id = ? ORDER BY id", (request_id,))
    return [dict(r) for r in rows]
