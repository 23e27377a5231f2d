"""How one gateway's leases move: taken on the first request, given back when idle, at
once on a nearly empty key, and on shutdown; the books balance at every step."""

from __future__ import annotations

import time
from dataclasses import replace

import openai
import pytest
import trio

from proxy.core.config import Settings
from proxy.store import ledger as books
from tests.conftest import RunningGateway, running_gateway
from tests.fakes.openai_upstream import FakeOpenAI

MODEL = "openai/gpt-4o-mini"
COST = 11 * 150 + 7 * 600  # the fake's 11 prompt and 7 completion tokens
HI = [{"role": "user", "content": "hi"}]


def quick(settings: Settings) -> Settings:
    """Heartbeats every 0.2 s and leases idle after 0.5 s."""
    return replace(settings, scale=replace(settings.scale, reclaim_after=1.0, lease_idle=0.5))


def leased(gateway: RunningGateway, key_id: str) -> tuple[int, int, int]:
    """(balance, leased, sum of lease rows) of the key."""
    conn = gateway.db()
    try:
        balance, on_key = conn.execute(
            "SELECT balance, leased FROM api_keys WHERE id = ?", (key_id,)
        ).fetchone()
        rows = conn.execute(
            "SELECT coalesce(sum(amount), 0) FROM leases WHERE key_id = ?", (key_id,)
        ).fetchone()[0]
        assert books.check(conn) == []
        return int(balance), int(on_key), int(rows)
    finally:
        conn.close()


async def until(predicate, seconds: float) -> None:  # type: ignore[no-untyped-def]
    with trio.fail_after(seconds):
        while not predicate():  # noqa: ASYNC110 (the state is in the database file)
            await trio.sleep(0.02)


async def test_a_lease_is_taken_spent_and_given_back_when_idle(
    nursery: trio.Nursery, gateway_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    async with running_gateway(nursery, quick(gateway_settings)) as gateway:
        key_id, raw = gateway.create_key(credit="10")
        client = gateway.client(raw)
        for _ in range(5):
            await client.chat.completions.create(model=MODEL, messages=HI, max_tokens=7)
        await gateway.wait_usage_rows(5)
        balance, on_key, rows = leased(gateway, key_id)
        # A rich key: one lease of at least $0.05 served all five; the settlements spent it.
        assert balance == 10 * 10**9 - 5 * COST and on_key == rows
        assert 50_000_000 - 5 * COST <= on_key < balance
        await until(lambda: leased(gateway, key_id)[1] == 0, 3)  # idle: given back
        assert leased(gateway, key_id) == (10 * 10**9 - 5 * COST, 0, 0)
        await client.chat.completions.create(model=MODEL, messages=HI, max_tokens=7)
        await gateway.wait_usage_rows(6)
        assert leased(gateway, key_id)[1] > 0  # leased anew
    assert leased(gateway, key_id)[1:] == (0, 0)  # and everything back on shutdown


async def test_a_nearly_empty_key_keeps_no_spare_lease(
    nursery: trio.Nursery, gateway_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    async with running_gateway(nursery, quick(gateway_settings)) as gateway:
        key_id, raw = gateway.create_key(credit=f"{3 * COST / 1e9:.9f}")  # pays for 3
        client = gateway.client(raw)
        await client.chat.completions.create(model=MODEL, messages=HI, max_tokens=7)
        await gateway.wait_usage_rows(1)
        # Exact: the request leased its hold and gave back what it did not spend at once,
        # long before the lease would count as idle.
        await until(lambda: leased(gateway, key_id)[1] == 0, 0.4)
        assert leased(gateway, key_id) == (2 * COST, 0, 0)


def heartbeat_at(gateway: RunningGateway) -> int:
    conn = gateway.db()
    try:
        return int(conn.execute("SELECT max(heartbeat_at) FROM owners").fetchone()[0])
    finally:
        conn.close()


async def test_a_busy_event_loop_still_proves_the_process_alive(
    nursery: trio.Nursery, gateway_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    """Thousands of streams opening at once can keep the loop busy for seconds; the
    heartbeat runs on its own thread, so the process neither fences itself nor looks dead."""
    async with running_gateway(nursery, quick(gateway_settings)) as gateway:
        _, raw = gateway.create_key(credit="10")
        client = gateway.client(raw)
        await client.chat.completions.create(model=MODEL, messages=HI, max_tokens=7)
        before = heartbeat_at(gateway)
        time.sleep(1.0)  # noqa: ASYNC251 (the loop blocked for all of `reclaim_after`, 1 s)
        during = heartbeat_at(gateway)  # read while the loop is still blocked
        assert during >= before + 400, "no heartbeat committed while the loop was busy"
        reply = await client.chat.completions.create(model=MODEL, messages=HI, max_tokens=7)
        assert reply.usage is not None


async def test_a_process_that_cannot_record_its_heartbeat_refuses_paid_requests(
    nursery: trio.Nursery, gateway_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    async with running_gateway(nursery, quick(gateway_settings)) as gateway:
        _, raw = gateway.create_key(credit="10")
        client = gateway.client(raw).with_options(max_retries=0)
        await client.chat.completions.create(model=MODEL, messages=HI, max_tokens=7)
        blocker = gateway.db()
        try:
            blocker.execute("BEGIN EXCLUSIVE")  # no write, heartbeat included, gets through
            await trio.sleep(0.9)  # past the fence: 2/3 of `reclaim_after`
            with pytest.raises(openai.APIStatusError) as refused:
                await client.chat.completions.create(model=MODEL, messages=HI, max_tokens=7)
            assert refused.value.status_code == 503
            assert "prove it is alive" in refused.value.message
        finally:
            blocker.execute("COMMIT")
            blocker.close()
        await until(lambda: heartbeat_at(gateway) > 0, 1)
        await trio.sleep(0.5)  # the next heartbeat commits
        reply = await client.chat.completions.create(model=MODEL, messages=HI, max_tokens=7)
        assert reply.usage is not None
