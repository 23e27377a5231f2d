"""No fault on PostgreSQL loses money either: connections the server drops are replaced,
and a lock held elsewhere past the lock timeout holds the books back (`/readyz` not ready,
new paid requests 503) until it goes, then every settled request is written once.
"""

from __future__ import annotations

import time

import openai
import pytest
import trio

from proxy.store import open_database
from tests.cli_helpers import clean_env, run_json
from tests.conftest import RunningGateway
from tests.test_store_faults import ask, wait_ready

pytestmark = pytest.mark.scaleout


async def books_balance(gateway: RunningGateway, answered: int) -> None:
    with trio.fail_after(10):
        while len(gateway.usage_rows()) < answered:  # noqa: ASYNC110 (the writer's commits)
            await trio.sleep(0.05)
    rows = gateway.usage_rows()
    assert len(rows) == answered == len({r["request_id"] for r in rows})  # each once
    assert all(r["status"] == 200 and r["cost"] > 0 for r in rows)
    env = clean_env(TOKENROUTE_DATABASE_URL=gateway.settings.scale.database_url or "")
    books = await run_json("admin", "check", env=env)
    assert books["ok"] and books["open_holds"] == 0, books


def terminate_others(url: str) -> int:
    conn = open_database(url)
    try:
        return len(conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid != pg_backend_pid()"
        ).fetchall())  # fmt: skip
    finally:
        conn.close()


async def test_connections_dropped_by_the_server_are_replaced(pg_gateway: RunningGateway) -> None:
    url = pg_gateway.settings.scale.database_url or ""
    _, raw = pg_gateway.create_key(credit="10")
    client = pg_gateway.client(raw)
    outcomes: list[int] = []
    await ask(client, outcomes)
    assert await trio.to_thread.run_sync(terminate_others, url) >= 3  # writer, reader, listener
    for _ in range(3):
        await ask(client, outcomes)
    await client.models.list()  # a read on a fresh reader connection
    assert outcomes == [200] * 4
    await books_balance(pg_gateway, 4)
    await wait_ready(pg_gateway, ready=True)


def hold_lock(url: str, seconds: float, locked: trio.Event, token: trio.lowlevel.TrioToken) -> None:
    conn = open_database(url)
    try:
        conn.raw.execute("BEGIN")
        conn.raw.execute("LOCK TABLE usage IN EXCLUSIVE MODE")
        trio.from_thread.run_sync(locked.set, trio_token=token)
        time.sleep(seconds)
        conn.raw.execute("COMMIT")
    finally:
        conn.close()


async def test_a_lock_held_elsewhere_past_the_lock_timeout(pg_gateway: RunningGateway) -> None:
    url = pg_gateway.settings.scale.database_url or ""
    _, raw = pg_gateway.create_key(credit="10")
    client = pg_gateway.client(raw)
    outcomes: list[int] = []
    await ask(client, outcomes)
    await pg_gateway.wait_usage_rows(1)
    locked = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, hold_lock, url, 8.0, locked,
                           trio.lowlevel.current_trio_token())  # fmt: skip
        await locked.wait()
        await ask(client, outcomes)  # answered; its settlement waits for the lock
        await wait_ready(pg_gateway, ready=False, saying="lock timeout")  # past 5 s
        refused: list[int] = []
        await ask(client, refused)  # fail closed: nothing it cannot record
        assert refused == [503]
    await wait_ready(pg_gateway, ready=True)
    assert outcomes == [200, 200]
    await books_balance(pg_gateway, 2)
    with pytest.raises(openai.APIStatusError):
        await pg_gateway.client("sk-tr-madeup").models.list()
