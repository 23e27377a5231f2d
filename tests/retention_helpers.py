"""Usage rows dated in the past, written through the store's own settlement function."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from proxy.access import keys as apikeys
from proxy.core.money import usd_to_units
from proxy.store import UsageRecord, connect
from proxy.store import accounts as acc
from proxy.store.ledger import check, record_batch, transaction
from tests.cli_helpers import run_cli

DAY_MS = 86_400_000


def now_ms() -> int:
    return int(time.time() * 1000)


def make_key(db: Path, credit: str = "50") -> str:
    """A user and a funded key in the file, as `tokenroute admin create-key` makes them."""
    conn = connect(db)
    try:
        raw = apikeys.generate_key()
        with transaction(conn):
            user = acc.user_by_email(conn, "old@example.com") or acc.create_user(
                conn, "old@example.com"
            )
            record = acc.create_key(
                conn, user_id=user.id, name="old", key_hash=apikeys.hash_key(raw),
                key_prefix=apikeys.display_prefix(raw), credit=usd_to_units(credit),
            )  # fmt: skip
        return record.id
    finally:
        conn.close()


def seed_usage(
    db: Path,
    key_id: str,
    days_ago: list[float],
    *,
    per_day: int,
    at: int | None = None,
    free: bool = False,
) -> int:
    """`per_day` settled requests on each of those days (every fifth one failed, free); the
    key pays for the others as a real request would: a usage row, its debit, the rollups."""
    now = now_ms() if at is None else at
    conn = connect(db)
    try:
        user_id = conn.execute("SELECT user_id FROM api_keys WHERE id = ?", (key_id,)).fetchone()[0]
        settlements: list[tuple[UsageRecord, str | None]] = []
        for days in days_ago:
            for i in range(per_day):
                ok = i % 5 != 4
                model = "openai/gpt-4o-mini" if i % 2 else "openai/gpt-4o"
                record = UsageRecord(
                    request_id=f"seed-{days}-{i}", key_id=key_id, user_id=user_id,
                    requested_model=model, served_model=model if ok else None,
                    provider="openai", tokens_in=10 + i, tokens_out=5 + i, cached_tokens=0,
                    estimated=False, cost=0 if free or not ok else 1_000 + i,
                    status=200 if ok else 502,
                    error=None if ok else "upstream failed", latency_ms=100, ttft_ms=20,
                    stream=False, created_at=now - int(days * DAY_MS) + i,
                )  # fmt: skip
                settlements.append((record, None))
        with transaction(conn):
            record_batch(conn, [], settlements)
    finally:
        conn.close()
    return len(settlements)


def unlimit(db: Path, key_id: str) -> None:
    """Limits no test traffic reaches (set before the key's first request)."""
    conn = connect(db)
    try:
        conn.execute("UPDATE api_keys SET rps = 1000, burst = 1000, max_streams = 100 "
                     "WHERE id = ?", (key_id,))  # fmt: skip
    finally:
        conn.close()


def query(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return [tuple(row) for row in conn.execute(sql, args)]
    finally:
        conn.close()


def problems(db: Path) -> list[str]:
    """The books check on the file (what `admin check` runs), in this process."""
    conn = connect(db)
    try:
        return check(conn)
    finally:
        conn.close()


async def books(db: Path, env: dict[str, str]) -> dict[str, Any]:
    """`tokenroute admin check --json` on the file, as an operator runs it."""
    done = await run_cli("admin", "check", "--db", str(db), "--json", env=env)
    report: dict[str, Any] = json.loads(done.stdout)
    assert done.returncode == (0 if report["ok"] else 1), done.stderr
    return report
