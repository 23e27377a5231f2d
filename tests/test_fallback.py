"""Fallback routes and cooldowns, driven with the openai SDK against two real fake upstreams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx2 as httpx
import openai
import orjson
import pytest
import trio

from proxy.core.config import load_settings
from tests.conftest import INTERNAL_SECRET, OPERATOR, RunningGateway, running_gateway
from tests.fakes.openai_upstream import FakeOpenAI

HI = [{"role": "user", "content": "hi"}]
CONFIG = """
[providers.primary]
kind = "openai-compatible"
base_url = "{primary}/v1"
first_byte_timeout = 1

[providers.backup]
kind = "openai-compatible"
base_url = "{backup}/v1"

[models."primary/m1"]
input_price = "1"
output_price = "2"
context_length = 1000

[models."backup/m1"]
input_price = "1"
output_price = "2"
context_length = 100000

[routes]
"primary/m1" = ["backup/m1"]
"""


@pytest.fixture
async def upstreams(nursery: trio.Nursery) -> AsyncIterator[tuple[FakeOpenAI, FakeOpenAI]]:
    primary = await nursery.start(FakeOpenAI().run)
    backup = await nursery.start(FakeOpenAI().run)
    yield primary, backup
    primary.stop()
    backup.stop()


@pytest.fixture
async def routed(
    nursery: trio.Nursery, tmp_path: Path, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> AsyncIterator[RunningGateway]:
    primary, backup = upstreams
    config = tmp_path / "tokenroute.toml"
    config.write_text(CONFIG.format(primary=primary.url, backup=backup.url))
    env = {"TOKENROUTE_INTERNAL_SECRET": INTERNAL_SECRET}
    settings = load_settings(env, config, {"db_path": tmp_path / "gw.db", "port": 0})
    async with running_gateway(nursery, settings) as gateway:
        yield gateway


async def readyz(gateway: RunningGateway) -> dict[str, object]:
    async with httpx.AsyncClient() as client:
        ready = await client.get(gateway.url + "/readyz", headers=OPERATOR)
        return orjson.loads(ready.content)  # type: ignore[no-any-return]


async def test_a_429_falls_back_and_cools_the_upstream_down(
    routed: RunningGateway, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    primary, backup = upstreams
    primary.status, primary.retry_after = 429, "30"
    _, raw = routed.create_key()
    client = routed.client(raw)
    reply = await client.chat.completions.with_raw_response.create(model="primary/m1", messages=HI)
    assert reply.parse().model == "backup/m1"
    assert reply.headers["x-tokenroute-model"] == "backup/m1"
    assert reply.headers["x-tokenroute-provider"] == "backup"
    assert reply.headers["x-tokenroute-fallbacks"] == "1"
    assert len(primary.requests) == 1 and len(backup.requests) == 1

    # cooling for Retry-After: the next request goes straight to the backup
    await client.chat.completions.create(model="primary/m1", messages=HI)
    assert len(primary.requests) == 1 and len(backup.requests) == 2
    state = (await readyz(routed))["upstreams"]["primary/m1"]  # type: ignore[index]
    assert state["state"] == "cooling" and 25 < state["retry_in_seconds"] <= 30

    first, second = await routed.wait_usage_rows(2)
    assert first["requested_model"] == "primary/m1" and first["served_model"] == "backup/m1"
    assert first["fallbacks"] == 1 and second["fallbacks"] == 0
    [attempt] = orjson.loads(first["attempts"])
    assert attempt["model"] == "primary/m1" and attempt["status"] == 429


async def test_repeated_5xx_cool_down_after_three(
    routed: RunningGateway, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    primary, backup = upstreams
    primary.status = 500
    _, raw = routed.create_key()
    client = routed.client(raw)
    for _ in range(4):
        served = await client.chat.completions.create(model="primary/m1", messages=HI)
        assert served.model == "backup/m1"
    assert len(primary.requests) == 3  # the fourth skipped it
    assert len(backup.requests) == 4


async def test_errors_caused_by_the_request_are_not_retried(
    routed: RunningGateway, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    primary, backup = upstreams
    primary.status = 400
    primary.error_body = {"error": {"message": "temperature is out of range", "type": "x"}}
    _, raw = routed.create_key()
    with pytest.raises(openai.BadRequestError) as caught:
        await routed.client(raw).chat.completions.create(model="primary/m1", messages=HI)
    assert "temperature is out of range" in caught.value.body["message"]  # type: ignore[index]
    assert caught.value.response.headers["x-tokenroute-fallbacks"] == "1"
    assert backup.requests == []
    assert (await readyz(routed))["upstreams"] == {}  # not the upstream's fault


async def test_a_context_length_error_moves_to_a_larger_window(
    routed: RunningGateway, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    primary, backup = upstreams
    primary.status = 400
    primary.error_body = {
        "error": {"message": "This model's maximum context length is 1000 tokens", "type": "x"}
    }
    _, raw = routed.create_key()
    served = await routed.client(raw).chat.completions.create(model="primary/m1", messages=HI)
    assert served.model == "backup/m1" and len(backup.requests) == 1


async def test_the_requests_own_models_list_wins_and_is_not_sent_upstream(
    routed: RunningGateway, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    primary, backup = upstreams
    backup.status = 503
    _, raw = routed.create_key()
    client = routed.client(raw)
    served = await client.chat.completions.create(
        model="backup/m1", messages=HI, extra_body={"models": ["primary/m1"]}
    )
    assert served.model == "primary/m1"
    assert "models" not in primary.requests[0] and "models" not in backup.requests[0]
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(
            model="backup/m1", messages=HI, extra_body={"models": ["nope/m9"]}
        )
    assert "nope/m9" in caught.value.body["message"]  # type: ignore[index]


async def test_a_stream_falls_back_before_its_first_byte(
    routed: RunningGateway, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    primary, backup = upstreams
    primary.hang_before_headers = True  # first_byte_timeout = 1 s on primary
    _, raw = routed.create_key()
    stream = await routed.client(raw).chat.completions.create(
        model="primary/m1", messages=HI, stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "".join(backup.words)
    [row] = await routed.wait_usage_rows(1)
    assert row["served_model"] == "backup/m1" and row["status"] == 200
    assert orjson.loads(row["attempts"])[0]["status"] == 504


async def test_every_upstream_cooling_is_503_with_retry_after(
    routed: RunningGateway, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    primary, backup = upstreams
    for fake in (primary, backup):
        fake.status, fake.retry_after = 429, "20"
    _, raw = routed.create_key()
    client = routed.client(raw)
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model="primary/m1", messages=HI)
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(model="primary/m1", messages=HI)
    assert caught.value.status_code == 503
    assert 15 <= int(caught.value.response.headers["retry-after"]) <= 20
    assert len(primary.requests) == 1 and len(backup.requests) == 1
