"""Two gateways (as two workers, or two machines) on one database: a key's rate limit and
stream cap hold for the key as a whole, whichever gateway a request lands on."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from pathlib import Path

import openai
import pytest
import trio

from proxy.access.shared_state import SharedState
from proxy.core.config import Settings
from proxy.core.config_scale import ScaleSettings, WorkerRole
from proxy.store.ledger import set_limits, transaction
from tests.conftest import RunningGateway, running_gateway
from tests.fakes.openai_upstream import FakeOpenAI
from tests.redis_helpers import redis_server

MODEL = "openai/gpt-4o-mini"
HI = [{"role": "user", "content": "hi"}]


@asynccontextmanager
async def two_gateways(
    nursery: trio.Nursery, first: Settings, second: Settings
) -> AsyncIterator[tuple[RunningGateway, RunningGateway]]:
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(running_gateway(nursery, first))
        b = await stack.enter_async_context(running_gateway(nursery, second))
        yield a, b


async def limits_hold_for_the_key(gateways: tuple[RunningGateway, RunningGateway]) -> None:
    """A key allowed bursts of 5 then 1/s, asked alternately through both gateways; then a
    key allowed one stream, streaming through one and asking through the other."""
    a, b = gateways
    key_id, raw = a.create_key()
    stream_key_id, stream_raw = a.create_key()
    conn = a.db()
    with transaction(conn):
        set_limits(conn, key_id, rps=1.0, burst=5)
        set_limits(conn, stream_key_id, max_streams=1)
    conn.close()
    clients = [gw.client(raw) for gw in gateways]
    began, admitted, refused = trio.current_time(), 0, 0
    for i in range(20):
        try:
            await clients[i % 2].chat.completions.create(model=MODEL, messages=HI)
            admitted += 1
        except openai.RateLimitError:
            refused += 1
    elapsed = trio.current_time() - began
    # One gateway each would let 5 through on each: 10 and more.
    assert 5 <= admitted <= 5 + math.ceil(elapsed), (admitted, elapsed)

    first = await a.client(stream_raw).chat.completions.create(
        model=MODEL, messages=HI, stream=True
    )
    with pytest.raises(openai.RateLimitError) as caught:
        await b.client(stream_raw).chat.completions.create(model=MODEL, messages=HI, stream=True)
    assert "streams open" in caught.value.body["message"]  # type: ignore[index]
    async for _ in first:
        pass
    with trio.fail_after(3):  # the slot comes back (at once here; Redis: a decrement away)
        while True:
            try:
                second = await b.client(stream_raw).chat.completions.create(
                    model=MODEL, messages=HI, stream=True
                )
                break
            except openai.RateLimitError:
                await trio.sleep(0.05)
    async for _ in second:
        pass


async def test_two_workers_share_a_keys_limits(
    nursery: trio.Nursery, gateway_settings: Settings, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    path = tmp_path / "limits.shm"
    supervisor = SharedState.create(path, 2)
    fake_openai.chunk_delay = 0.05
    roles = [replace(gateway_settings, worker=WorkerRole(i, 2, path)) for i in (0, 1)]
    async with two_gateways(nursery, *roles) as gateways:
        await limits_hold_for_the_key(gateways)
    supervisor.close()


@pytest.mark.scaleout
async def test_two_gateways_on_redis_share_a_keys_limits(
    nursery: trio.Nursery, gateway_settings: Settings, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.chunk_delay = 0.05
    with redis_server(tmp_path / "redis") as url:
        settings = replace(gateway_settings, scale=ScaleSettings(redis_url=url))
        async with two_gateways(nursery, settings, settings) as gateways:
            await limits_hold_for_the_key(gateways)
