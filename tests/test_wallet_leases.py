"""How one gateway's leases move: taken on the first request, given back when idle, at
once on a nearly empty key, and on shutdown; the books balance at every step."""

from __future__ import annotations

from dataclasses import replace

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
