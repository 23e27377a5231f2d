"""Anthropic and Gemini behind the OpenAI API: the openai SDK against the gateway and real fakes."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import orjson
import pytest
import trio

from proxy.core.config import load_settings
from tests.conftest import INTERNAL_SECRET, OPERATOR, RunningGateway, running_gateway
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.openai_upstream import FakeOpenAI

HAIKU, SONNET, FLASH = (
    "anthropic/claude-haiku-4-5",
    "anthropic/claude-sonnet-4-5",
    "google/gemini-2.5-flash",
)
HI = [{"role": "user", "content": "hi"}]
WEATHER = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
CONFIG = """
[providers.anthropic]
first_byte_timeout = 1
idle_timeout = 1

[providers.google]
first_byte_timeout = 1
idle_timeout = 1

[routes]
"anthropic/claude-haiku-4-5" = ["anthropic/claude-sonnet-4-5", "openai/gpt-4o"]
"google/gemini-2.5-flash" = ["openai/gpt-4o-mini"]
"""


@dataclass
class World:
    gateway: RunningGateway
    anthropic: FakeAnthropic
    gemini: FakeGemini
    openai: FakeOpenAI
    raw: str

    def client(self) -> Any:
        return self.gateway.client(self.raw)

    async def row(self) -> dict[str, Any]:
        rows = await self.gateway.wait_usage_rows(1)
        return rows[-1]

    async def upstreams(self) -> dict[str, dict[str, Any]]:
        """Each upstream's health as /readyz reports it."""
        async with httpx.AsyncClient() as http:
            ready = await http.get(self.gateway.url + "/readyz", headers=OPERATOR)
        return orjson.loads(ready.content)["upstreams"]  # type: ignore[no-any-return]


@pytest.fixture
async def world(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[World]:
    anthropic = await nursery.start(FakeAnthropic().run)
    gemini = await nursery.start(FakeGemini().run)
    openai_fake = await nursery.start(FakeOpenAI().run)
    config = tmp_path / "tokenroute.toml"
    config.write_text(CONFIG)
    env = {
        "ANTHROPIC_API_KEY": "sk-ant-test",
        "ANTHROPIC_BASE_URL": anthropic.url,
        "GEMINI_API_KEY": "gm-test",
        "GEMINI_BASE_URL": gemini.url,
        "OPENAI_API_KEY": "sk-oa-test",
        "OPENAI_BASE_URL": openai_fake.url + "/v1",
        "TOKENROUTE_INTERNAL_SECRET": INTERNAL_SECRET,
    }
    settings = load_settings(env, config, {"db_path": tmp_path / "gw.db", "port": 0})
    async with running_gateway(nursery, settings) as gateway:
        _, raw = gateway.create_key()
        yield World(gateway, anthropic, gemini, openai_fake, raw)
    for fake in (anthropic, gemini, openai_fake):
        fake.stop()


async def collect(stream: Any) -> tuple[str, list[Any], list[Any]]:
    """Text, tool-call deltas and all chunks of a streamed reply."""
    text, calls, chunks = [], [], []
    async for chunk in stream:
        chunks.append(chunk)
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            calls.extend(choice.delta.tool_calls or [])
    return "".join(text), calls, chunks


@pytest.mark.parametrize("model", [HAIKU, FLASH])
async def test_plain_and_streamed_text(world: World, model: str) -> None:
    fake = world.anthropic if model == HAIKU else world.gemini
    client = world.client()
    reply = await client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": "Be brief."}, *HI],
        max_tokens=100,
    )
    assert reply.model == model and reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.content == "".join(fake.words)
    assert reply.usage is not None and reply.usage.prompt_tokens == 11
    text, _, chunks = await collect(
        await client.chat.completions.create(
            model=model, messages=HI, stream=True, stream_options={"include_usage": True}
        )
    )
    assert text == "".join(fake.words)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    rows = await world.gateway.wait_usage_rows(2)
    assert all(r["served_model"] == model and r["cost"] > 0 and not r["estimated"] for r in rows)


@pytest.mark.parametrize("model", [HAIKU, FLASH])
async def test_tool_calls_plain_and_streamed(world: World, model: str) -> None:
    client = world.client()
    asked = [{"role": "user", "content": "Weather in Paris?"}]
    reply = await client.chat.completions.create(model=model, messages=asked, tools=WEATHER)
    [call] = reply.choices[0].message.tool_calls
    assert reply.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert orjson.loads(call.function.arguments) == {"city": "Paris"}
    _, deltas, chunks = await collect(
        await client.chat.completions.create(
            model=model, messages=asked, tools=WEATHER, stream=True
        )
    )
    assert deltas[0].function.name == "get_weather" and deltas[0].id
    arguments = "".join(d.function.arguments or "" for d in deltas)
    assert orjson.loads(arguments) == {"city": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    # the round trip: the tool's answer goes back as the provider expects it
    follow = await client.chat.completions.create(
        model=model,
        tools=WEATHER,
        messages=[
            *asked,
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"},
        ],
    )
    assert "18C and sunny" in follow.choices[0].message.content


async def test_images_reach_each_provider_in_its_own_shape(world: World) -> None:
    pixel = base64.b64encode(b"\x89PNG fake").decode()
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{pixel}"}},
    ]
    for model in (HAIKU, FLASH):
        await world.client().chat.completions.create(
            model=model, messages=[{"role": "user", "content": content}]
        )
    block = world.anthropic.requests[-1]["messages"][0]["content"][1]
    assert block["source"] == {"type": "base64", "media_type": "image/png", "data": pixel}
    part = world.gemini.requests[-1]["contents"][0]["parts"][1]
    assert part["inlineData"] == {"mimeType": "image/png", "data": pixel}


async def test_stop_reasons_map(world: World) -> None:
    world.anthropic.stop_reason = "max_tokens"
    world.gemini.finish_reason = "MAX_TOKENS"
    for model in (HAIKU, FLASH):
        reply = await world.client().chat.completions.create(model=model, messages=HI)
        assert reply.choices[0].finish_reason == "length"


@pytest.mark.parametrize(
    ("status", "retry_after", "cooling"),
    [(429, "30", True), (500, None, False), (529, None, False)],
)
async def test_anthropic_failures_fall_back_before_the_first_byte(
    world: World, status: int, retry_after: str | None, cooling: bool
) -> None:
    world.anthropic.status, world.anthropic.retry_after = status, retry_after
    reply = await world.client().chat.completions.with_raw_response.create(model=HAIKU, messages=HI)
    assert reply.parse().model == "openai/gpt-4o"
    assert reply.headers["x-tokenroute-fallbacks"] == "2"
    assert len(world.anthropic.requests) == 2 and len(world.openai.requests) == 1
    row = await world.row()
    tried = [(a["model"], a["status"]) for a in orjson.loads(row["attempts"])]
    expected = {429: 429, 500: 502, 529: 503}[status]
    assert tried == [(HAIKU, expected), (SONNET, expected)]
    states = await world.upstreams()
    assert (states[HAIKU]["state"] == "cooling") is cooling
    assert states[HAIKU]["recent_failures"] == (0 if cooling else 1)


@pytest.mark.parametrize(
    ("status", "retry_after", "cooling"),
    [(429, "30", True), (500, None, False), (503, None, False)],
)
async def test_gemini_failures_fall_back_before_the_first_byte(
    world: World, status: int, retry_after: str | None, cooling: bool
) -> None:
    world.gemini.status, world.gemini.retry_after = status, retry_after
    stream = await world.client().chat.completions.create(model=FLASH, messages=HI, stream=True)
    text, _, chunks = await collect(stream)
    assert text == "".join(world.openai.words) and chunks[0].model == "openai/gpt-4o-mini"
    assert len(world.gemini.requests) == 1 and len(world.openai.requests) == 1
    row = await world.row()
    expected = {429: 429, 500: 502, 503: 503}[status]
    assert [(a["model"], a["status"]) for a in orjson.loads(row["attempts"])] == [(FLASH, expected)]
    assert row["fallbacks"] == 1 and row["status"] == 200
    state = (await world.upstreams())[FLASH]
    assert (state["state"] == "cooling") is cooling
    if cooling:  # Retry-After says how long
        assert 25 < state["retry_in_seconds"] <= 30
        again = await world.client().chat.completions.create(model=FLASH, messages=HI)
        assert again.model == "openai/gpt-4o-mini" and len(world.gemini.requests) == 1


@pytest.mark.parametrize("model", [HAIKU, FLASH])
async def test_a_hang_before_headers_falls_back(world: World, model: str) -> None:
    world.anthropic.hang_before_headers = world.gemini.hang_before_headers = True
    reply = await world.client().chat.completions.create(model=model, messages=HI)
    assert reply.model == ("openai/gpt-4o" if model == HAIKU else "openai/gpt-4o-mini")
    hung = [HAIKU, SONNET] if model == HAIKU else [FLASH]
    row = await world.row()
    assert [(a["model"], a["status"]) for a in orjson.loads(row["attempts"])] == [
        (m, 504) for m in hung
    ]
    assert row["served_model"] == reply.model and row["status"] == 200
    states = await world.upstreams()
    for m in hung:  # one timeout is a strike, not yet a cooldown
        assert states[m]["state"] == "healthy" and states[m]["recent_failures"] == 1
        assert "first byte" in states[m]["last_error"]


@pytest.mark.parametrize(
    ("model", "fault", "status"),
    [
        (HAIKU, "hang_mid_stream_after", 504),
        (HAIKU, "reset_mid_stream_after", 502),
        (HAIKU, "malformed_after", 502),
        (HAIKU, "error_event_after", 503),
        (FLASH, "hang_mid_stream_after", 504),
        (FLASH, "reset_mid_stream_after", 502),
        (FLASH, "malformed_after", 502),
    ],
)
async def test_a_mid_stream_failure_ends_with_an_error_event_and_is_billed(
    world: World, model: str, fault: str, status: int
) -> None:
    fake = world.anthropic if model == HAIKU else world.gemini
    setattr(fake, fault, 2)
    stream = await world.client().chat.completions.create(model=model, messages=HI, stream=True)
    text = []
    with pytest.raises(openai.APIError) as caught:  # the SDK raises on the error event
        async for chunk in stream:
            text.extend(c.delta.content or "" for c in chunk.choices)
    assert str(caught.value.code) == str(status)  # OpenAI's error shape, our status as code
    assert "".join(text) == "".join(fake.words[:2])  # what came before the failure got through
    assert world.openai.requests == []  # too late to fall back: the client had output
    row = await world.row()
    assert row["status"] == status and row["served_model"] == model
    assert row["tokens_out"] > 0 and row["cost"] > 0  # the partial answer is billed
    assert row["attempts"] is None and row["fallbacks"] == 0  # only the served one was tried
    state = (await world.upstreams())[model]  # the failure counts against the upstream
    assert state["recent_failures"] == 1 and state["state"] == "healthy"
    assert state["last_error"]
