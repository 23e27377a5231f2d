"""Per-key request rate and concurrent stream limits, as clients see them."""

from __future__ import annotations

import math

import openai
import pytest
import trio

from proxy.access.ratelimit import RateLimiter
from proxy.core.config import Settings
from proxy.store import KeyRecord
from tests.cli_helpers import run_cli
from tests.conftest import RunningGateway
from tests.fakes.openai_upstream import FakeOpenAI

MODEL = "openai/gpt-4o-mini"
HI = [{"role": "user", "content": "hi"}]


async def test_the_eleventh_request_in_a_second_waits_retry_after(
    gateway: RunningGateway,
) -> None:
    key_id, raw = gateway.create_key()
    client = gateway.client(raw)
    await client.chat.completions.create(model=MODEL, messages=HI)  # the key is now cached
    db = str(gateway.db_path)
    done = await run_cli("admin", "set-limits", "--key", key_id, "--rps", "1", "--db", db)
    assert done.returncode == 0, done.stderr
    await trio.sleep(1.2)  # the running server re-reads the key within a second
    began, sent = trio.current_time(), 0
    while True:  # ten at once, and one more for each second a busy machine took to send them
        try:
            reply = await client.chat.completions.with_raw_response.create(model=MODEL, messages=HI)
        except openai.RateLimitError as refused:
            error = refused
            break
        sent += 1
        refilled = math.ceil(trio.current_time() - began)  # at 1 request/s
        assert sent <= 10 + refilled, "the bucket let more requests through than it holds"
        assert reply.headers["x-ratelimit-limit-requests"] == "10"
        assert (
            10 - sent
            <= int(reply.headers["x-ratelimit-remaining-requests"])
            <= 10 - sent + refilled
        )
    assert sent >= 10
    assert error.status_code == 429 and error.body["type"] == "rate_limit_error"  # type: ignore[index]
    retry_after = int(error.response.headers["retry-after"])
    assert retry_after == 1  # at 1 request/s, the next token is under a second away
    assert error.response.headers["x-ratelimit-remaining-requests"] == "0"
    await trio.sleep(0.5)  # at the old 5/s this would be enough; at 1/s it is not
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model=MODEL, messages=HI)
    await trio.sleep(retry_after)
    await client.chat.completions.create(model=MODEL, messages=HI)


async def test_concurrent_streams_are_capped_per_key(
    gateway: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    key_id, raw = gateway.create_key()
    done = await run_cli(
        "admin", "set-limits", "--key", key_id, "--max-streams", "1", "--db", str(gateway.db_path)
    )
    assert done.returncode == 0, done.stderr
    await trio.sleep(1.2)  # the server re-reads the key within a second
    fake_openai.release = trio.Event()  # the first stream stays open until it is set
    client = gateway.client(raw)
    first = await client.chat.completions.create(model=MODEL, messages=HI, stream=True)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model=MODEL, messages=HI, stream=True)
    assert "streams open" in caught.value.body["message"]  # type: ignore[index]
    await client.chat.completions.create(model=MODEL, messages=HI)  # not a stream: allowed
    fake_openai.release.set()
    async for _ in first:
        pass
    second = await client.chat.completions.create(model=MODEL, messages=HI, stream=True)
    async for _ in second:
        pass


def _key(**limits: object) -> KeyRecord:
    return KeyRecord("k1", "u1", "test", "sk-tr-abcd", 0, "active", 0, **limits)  # type: ignore[arg-type]


async def test_bucket_refills_at_the_sustained_rate() -> None:
    now = [100.0]
    limiter = RateLimiter(Settings(), clock=lambda: now[0])
    key = _key(rps=2.0, burst=3)
    for left in (2, 1, 0):
        assert (await limiter.take(key))["x-ratelimit-remaining-requests"] == str(left)
    with pytest.raises(Exception) as caught:
        await limiter.take(key)
    assert caught.value.headers["retry-after"] == "1"  # type: ignore[attr-defined]
    assert caught.value.headers["x-ratelimit-reset-requests"] == "1.5s"  # type: ignore[attr-defined]
    now[0] += 0.5  # one token back at 2/s
    assert (await limiter.take(key))["x-ratelimit-remaining-requests"] == "0"
    now[0] += 10
    assert (await limiter.peek(key))[
        "x-ratelimit-remaining-requests"
    ] == "3"  # never above the burst


async def test_retry_after_rounds_up_to_whole_seconds() -> None:
    now = [0.0]
    limiter = RateLimiter(Settings(), clock=lambda: now[0])
    key = _key(rps=0.25, burst=1)
    await limiter.take(key)
    now[0] += 0.5
    with pytest.raises(Exception) as caught:
        await limiter.take(key)
    wait = (1 - 0.5 * 0.25) / 0.25
    assert caught.value.headers["retry-after"] == str(math.ceil(wait))  # type: ignore[attr-defined]


def test_key_overrides_beat_the_tier() -> None:
    from proxy.core.config import TierSettings

    settings = Settings(tiers=(TierSettings("default"), TierSettings("pro", 50, 100, 8)))
    limiter = RateLimiter(settings, clock=lambda: 0.0)
    assert limiter.limits(_key(tier="pro")).rps == 50
    assert limiter.limits(_key(tier="pro", burst=7)).burst == 7
    assert limiter.limits(_key(tier="gone")).burst == 10  # an unknown tier falls back
