"""Limits across gateways on several machines, against a real redis-server: a key's rate
and stream cap hold for the key as a whole, a dead gateway's streams are freed after
`reclaim_after`, cooldown verdicts travel within a second, and Redis down is a 503."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import openai
import pytest
import trio

from proxy.access.ratelimit import RateLimiter
from proxy.access.redis_limits import RedisLimits
from proxy.core.config import Settings
from proxy.core.config_scale import ScaleSettings
from proxy.core.errors import RateLimited, ServiceUnavailable
from proxy.store import KeyRecord
from proxy.upstream.cooldown import Cooldowns
from tests import redis_workers
from tests.conftest import running_gateway
from tests.process_helpers import free_port
from tests.redis_helpers import redis_binary, redis_server

pytestmark = pytest.mark.scaleout
SPAWN = multiprocessing.get_context("spawn")
MODEL = "openai/gpt-4o-mini"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with redis_server(tmp_path / "redis") as url:
        yield url


def _key(key_id: str, **limits: object) -> KeyRecord:
    return KeyRecord(key_id, "u1", "test", "sk-tr-abcd", 0, "active", 0, **limits)  # type: ignore[arg-type]


@asynccontextmanager
async def gateways(
    url: str, count: int, reclaim_after: float = 15.0
) -> AsyncIterator[list[RedisLimits]]:
    """`count` Redis stores, as that many gateway processes would each have."""
    stores = [
        RedisLimits(url, reclaim_after=reclaim_after, heartbeat=reclaim_after / 5)
        for _ in range(count)
    ]
    async with trio.open_nursery() as nursery:
        for store in stores:
            await nursery.start(store.run)
        yield stores
        for store in stores:
            await store.aclose()
        nursery.cancel_scope.cancel()


async def test_a_keys_rate_holds_across_gateways(redis_url: str) -> None:
    """Never over the rate; at it, within 10 %, in at least one of three windows (a loaded
    machine can starve the askers of one window, which admits less without any fault)."""
    rps, burst, window = 100.0, 40, 2.0
    expected = burst + rps * window
    sums = []
    async with gateways(redis_url, 2) as stores:
        limiters = [RateLimiter(Settings(), store) for store in stores]
        for attempt in range(3):
            key = _key(f"key-rate-{attempt}", rps=rps, burst=burst)
            admitted = [0, 0]
            end = trio.current_time() + window

            async def hammer(which: int, key: KeyRecord = key, admitted: list[int] = admitted,
                             end: float = end) -> None:  # fmt: skip
                while trio.current_time() < end:
                    try:
                        await limiters[which].take(key)
                    except RateLimited:
                        await trio.sleep(0.0005)
                    else:
                        admitted[which] += 1

            async with trio.open_nursery() as nursery:
                for which in (0, 1) * 8:
                    nursery.start_soon(hammer, which)
            assert all(admitted), admitted
            assert sum(admitted) <= 1.1 * expected, (admitted, expected)  # never over
            sums.append(sum(admitted))
            if sum(admitted) >= 0.9 * expected:
                break
    assert max(sums) >= 0.9 * expected, (sums, expected)


async def test_streams_across_gateways_never_pass_the_cap(redis_url: str) -> None:
    cap = 3
    key = _key("key-streams", max_streams=cap)
    holding = most = opened = 0
    async with gateways(redis_url, 2) as stores:
        limiters = [RateLimiter(Settings(), store) for store in stores]
        end = trio.current_time() + 1.5

        async def stream(limiter: RateLimiter) -> None:
            nonlocal holding, most, opened
            while trio.current_time() < end:
                try:
                    await limiter.open_stream(key)
                except RateLimited:
                    await trio.sleep(0.001)
                    continue
                opened += 1
                holding += 1
                most = max(most, holding)
                await trio.sleep(random.uniform(0, 0.01))
                holding -= 1
                limiter.close_stream(key)

        async with trio.open_nursery() as nursery:
            for limiter in limiters * 6:
                nursery.start_soon(stream, limiter)
        assert opened > 20 and most == cap
        with trio.fail_after(2):  # the decrements are sent in the background
            while True:
                try:
                    for _ in range(cap):
                        await limiters[1].open_stream(key)
                    break
                except RateLimited:
                    await trio.sleep(0.05)
        assert limiters[0].open_streams == 0 and limiters[1].open_streams == cap


async def test_a_dead_gateways_streams_are_freed_after_reclaim(redis_url: str) -> None:
    reclaim_after, cap = 1.0, 3
    parent, child = SPAWN.Pipe()
    dead = SPAWN.Process(
        target=redis_workers.open_streams_and_wait,
        args=(redis_url, "key-dead", cap, cap, reclaim_after, child),
    )
    dead.start()
    try:
        async with gateways(redis_url, 1, reclaim_after) as (store,):
            assert await trio.to_thread.run_sync(parent.poll, 30) and parent.recv() == "open"
            assert await store.open_stream("key-dead", cap) == (False, cap)
            await trio.sleep(reclaim_after * 1.5)  # its heartbeat keeps them
            assert await store.open_stream("key-dead", cap) == (False, cap)
            os.kill(dead.pid, signal.SIGKILL)  # type: ignore[arg-type]
            killed = trio.current_time()
            while not (await store.open_stream("key-dead", cap))[0]:
                assert trio.current_time() - killed < reclaim_after + 1.0
                await trio.sleep(0.05)
    finally:
        dead.kill()
        dead.join()


async def test_a_cooldown_travels_within_a_second_and_a_success_clears_it(redis_url: str) -> None:
    upstream = "openai/gpt-4o-mini"
    async with gateways(redis_url, 2) as (first, second):
        mine, theirs = (Cooldowns(Settings(), shared=store) for store in (first, second))
        assert mine.available(upstream) and theirs.available(upstream)
        for _ in range(Settings().cooldown_failures):
            theirs.failed(upstream, "upstream said 500")
        cooled = trio.current_time()
        while mine.available(upstream):
            assert trio.current_time() - cooled < 1.0, "the other gateway's cooldown unseen"
            await trio.sleep(0.02)
        assert mine.retry_in(upstream) == pytest.approx(Settings().cooldown_seconds, abs=1.5)
        mine.succeeded(upstream)
        cleared = trio.current_time()
        while not theirs.available(upstream):
            assert trio.current_time() - cleared < 1.0, "the success was not seen"
            await trio.sleep(0.02)


async def test_redis_down_is_a_clear_503_and_its_return_heals(
    nursery: trio.Nursery, gateway_settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    settings = replace(gateway_settings, scale=ScaleSettings(redis_url=f"redis://127.0.0.1:{port}"))
    async with running_gateway(nursery, settings) as gateway:
        _, raw = gateway.create_key()
        client = gateway.client(raw)
        for stream in (False, True):
            with pytest.raises(openai.APIStatusError) as caught:
                await client.chat.completions.create(model=MODEL, messages=HI, stream=stream)
            assert caught.value.status_code == 503
            assert caught.value.body["type"] == "service_unavailable"  # type: ignore[index]
            assert "rate-limit store" in caught.value.body["message"]  # type: ignore[index]
            assert caught.value.response.headers["retry-after"] == "1"
        assert len((await client.models.list()).data) > 0  # answers that count nothing work
        with redis_server(tmp_path / "redis", port):
            began = time.monotonic()
            while True:
                try:
                    await client.chat.completions.create(model=MODEL, messages=HI)
                    break
                except openai.APIStatusError as error:
                    assert error.status_code == 503 and time.monotonic() - began < 5
                    await trio.sleep(0.1)
            stream = await client.chat.completions.create(model=MODEL, messages=HI, stream=True)
            async for _ in stream:
                pass


def test_the_store_raises_the_gateways_own_error() -> None:
    """Redis unreachable is `ServiceUnavailable` (503, the gateway's fault), never an
    exception of the client library."""

    async def main() -> None:
        store = RedisLimits(f"redis://127.0.0.1:{free_port()}", reclaim_after=5, heartbeat=1)
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            with pytest.raises(ServiceUnavailable):
                await store.admit("k", 1.0, 1)
            with pytest.raises(ServiceUnavailable):
                await store.open_stream("k", 1)
            store.close_stream("k")  # never raises, never waits
            assert store.cooling_until("openai/x") == 0.0
            await store.aclose()
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_a_missing_redis_server_fails_the_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scaleout tests fail (never skip) on a machine without Debian's redis-server."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="redis-server is not installed"):
        redis_binary()
