"""The gateway on PostgreSQL (`TOKENROUTE_DATABASE_URL`): the money guarantees, streams,
the operator's commands against the URL, and two gateways sharing one database.

The server is real (`tests/pg_cluster.py`); these tests fail, never skip, without it.
"""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
import trio

from proxy.core.config import Settings
from proxy.services.processes import startup_reclaim
from proxy.store import accounts as acc
from proxy.store import leases, migrate, open_database
from proxy.store import ledger as books
from tests import test_money
from tests.cli_helpers import clean_env, run_cli, run_json
from tests.conftest import RunningGateway, running_gateway
from tests.fakes.openai_upstream import FakeOpenAI
from tests.pg_cluster import PASSWORD
from tests.process_helpers import process_env, serving

pytestmark = pytest.mark.scaleout
MODEL = "openai/gpt-4o-mini"
HI = [{"role": "user", "content": "hi"}]


async def test_concurrent_requests_never_spend_more_than_the_key_holds(
    pg_gateway: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    """tests/test_money.py's 200 requests on a key that pays for 20, on PostgreSQL."""
    await test_money.test_concurrent_requests_never_spend_more_than_the_key_holds(
        pg_gateway, fake_openai
    )
    assert not pg_gateway.db_path.exists()  # nothing went to a SQLite file


async def test_a_streamed_request_is_billed_once(pg_gateway: RunningGateway) -> None:
    key_id, raw = pg_gateway.create_key(credit="1")
    stream = await pg_gateway.client(raw).chat.completions.create(
        model=MODEL, messages=HI, stream=True, stream_options={"include_usage": True}
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text
    [row] = await pg_gateway.wait_usage_rows(1)
    assert row["stream"] == 1 and row["status"] == 200 and row["cost"] > 0
    state = test_money.books_of(pg_gateway, key_id)
    assert state["balance"] == 10**9 - row["cost"] == sum(r["amount"] for r in state["ledger"])
    assert state["holds"] == 0 and state["problems"] == []


async def test_operator_commands_on_the_url(pg_gateway: RunningGateway) -> None:
    """`tokenroute admin` with TOKENROUTE_DATABASE_URL: a user and a key made from a
    terminal serve at once; a revocation is honoured within a second; the books check."""
    env = clean_env(TOKENROUTE_DATABASE_URL=pg_gateway.settings.scale.database_url or "")
    user = await run_json("admin", "create-user", "--email", "ops@example.com", env=env)
    key = await run_json("admin", "create-key", "--email", user["email"], "--name", "ci",
                         "--credit", "2", env=env)  # fmt: skip
    assert key["balance_usd"] == "2.00"
    client = pg_gateway.client(key["raw"])
    reply = await client.chat.completions.create(model=MODEL, messages=HI)
    assert reply.choices[0].message.content
    granted = await run_json("admin", "grant", "--key", key["id"], "--amount", "1", env=env)
    assert granted
    revoked = await run_json("admin", "revoke-key", key["id"], env=env)
    assert revoked["status"] == "revoked"
    started = trio.current_time()
    with trio.fail_after(5):
        while True:
            try:
                await client.models.list()
            except openai.AuthenticationError:
                break
            await trio.sleep(0.05)
    assert trio.current_time() - started < 1.0
    await pg_gateway.wait_usage_rows(1)
    check = await run_json("admin", "check", env=env)
    assert check == {"ok": True, "problems": [], "open_holds": 0}
    plan = await run_cli("migrate", "--check", env=env)
    assert plan.returncode == 0 and "up to date" in plan.stdout, plan.stderr


async def test_two_gateways_share_one_database(
    nursery: trio.Nursery, pg_settings: Settings
) -> None:
    """200 requests on a key that pays for 20, spread over two gateways: each spends only
    what it leased, so successes == charges and the balance never goes below zero; a
    revocation written through one is honoured by the other within a second."""
    async with (
        running_gateway(nursery, pg_settings) as one,
        running_gateway(nursery, pg_settings) as two,
    ):
        key_id, raw = one.create_key(credit=f"{20 * test_money.COST / 1e9:.9f}")  # pays for 20
        test_money.raise_limits(one, key_id, rps=10_000, burst=1_000)
        first, second = one.client(raw), two.client(raw)
        outcomes: list[str] = []

        async def call(client: openai.AsyncOpenAI) -> None:
            try:
                await client.chat.completions.create(model=MODEL, messages=HI, max_tokens=7)
                outcomes.append("ok")
            except openai.APIStatusError as exc:
                assert exc.status_code in (402, 503), exc
                outcomes.append(str(exc.status_code))

        async with trio.open_nursery() as calls:
            for n in range(200):
                calls.start_soon(call, first if n % 2 else second)
        ok = outcomes.count("ok")
        assert 1 <= ok <= 20 and len(outcomes) == 200
        rows = await one.wait_usage_rows(ok)
        # Each gateway spends only what it leased: nothing is served that is not paid for.
        assert len(rows) == ok and all(r["cost"] == test_money.COST for r in rows)
        assert all(r["unbilled"] == 0 for r in rows)
        state = test_money.books_of(one, key_id)
        assert state["balance"] == 20 * test_money.COST - ok * test_money.COST >= 0
        assert state["balance"] == sum(r["amount"] for r in state["ledger"])
        assert state["problems"] == []

        conn = one.db()
        try:
            with books.transaction(conn):
                conn.execute("UPDATE api_keys SET status = 'revoked' WHERE id = ?", (key_id,))
        finally:
            conn.close()
        with trio.fail_after(2):
            while True:
                try:
                    await second.models.list()
                except openai.AuthenticationError:
                    break
                await trio.sleep(0.05)


async def test_the_supervisor_reclaims_a_dead_workers_lease_on_postgresql(
    pg_settings: Settings,
) -> None:
    """`serve --workers` releases what this host's dead processes leased, on the URL."""
    url = pg_settings.scale.database_url or ""
    conn = open_database(url)
    try:
        migrate(conn)
        with books.transaction(conn):
            user = acc.create_user(conn, "w@example.com")
            key = acc.create_key(conn, user_id=user.id, name="w", key_hash=b"w" * 32,
                                 key_prefix="sk-tr-w", credit=1_000)  # fmt: skip
            leases.register_owner(conn, "dead-worker")
            conn.execute("UPDATE owners SET pid = ? WHERE id = 'dead-worker'", (2**22 + 7,))
            assert leases.take(conn, key.id, "dead-worker", 100, 100, 1).granted == 100
        assert await trio.to_thread.run_sync(startup_reclaim, pg_settings) == (0, 100)
        assert conn.execute("SELECT leased FROM api_keys").fetchone()[0] == 0
        assert books.check(conn) == [] and leases.problems(conn) == []
    finally:
        conn.close()
    assert not pg_settings.db_path.exists()


async def test_serve_names_the_database_it_runs_on_without_its_password(
    tmp_path: Path, pg_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    url = pg_settings.scale.database_url or ""
    env = {**process_env(fake_openai), "TOKENROUTE_DATABASE_URL": url}
    log = tmp_path / "serve.log"
    async with serving(str(tmp_path / "not-used.db"), env, log, "--workers", "1"):
        pass  # it answered /healthz: the start-up line is written
    text = log.read_text()
    starting = next(line for line in text.splitlines() if " starting " in line)
    assert "db=postgresql://" in starting and ":***@127.0.0.1" in starting, starting
    assert "not-used.db" not in starting and PASSWORD not in text
