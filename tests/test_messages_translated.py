"""Anthropic's Messages API served by other providers, through the adapters chat uses.

The official SDK against the gateway and fake OpenAI and Gemini upstreams: system,
tools and tool results, images, stop reasons, usage, and the named stream events.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest
import trio

from tests.messages_helpers import PNG, WEATHER_TOOL, Messages, messages_world

EPHEMERAL = {"type": "ephemeral"}
IMAGE = {"type": "base64", "media_type": "image/png", "data": PNG}
QUESTION = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture
async def world(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Messages]:
    async with messages_world(nursery, tmp_path) as world:
        yield world


async def test_openai_serves_a_message_with_system_and_an_image(world: Messages) -> None:
    async with world.client() as client:
        reply = await client.messages.create(
            model="openai/gpt-4o-mini",
            max_tokens=100,
            system="Be brief.",
            stop_sequences=["END"],
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?", "cache_control": EPHEMERAL},
                        {"type": "image", "source": IMAGE},
                    ],
                }
            ],
        )
    sent = world.openai.requests[-1]
    assert sent["model"] == "gpt-4o-mini" and sent["max_tokens"] == 100 and sent["stop"] == ["END"]
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            ],
        },
    ]
    assert reply.type == "message" and reply.role == "assistant"
    assert reply.model == "openai/gpt-4o-mini" and reply.stop_reason == "end_turn"
    assert reply.content[0].type == "text" and reply.content[0].text == "".join(world.openai.words)
    usage = world.openai.prompt_tokens, 7  # what the fake reports for one choice
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == usage
    row = (await world.gateway.wait_usage_rows(1))[-1]
    assert (row["served_model"], row["tokens_in"], row["tokens_out"]) == (
        "openai/gpt-4o-mini",
        *usage,
    )


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "google/gemini-2.5-flash"])
async def test_tool_use_round_trip_streamed(world: Messages, model: str) -> None:
    async with world.client() as client:
        async with client.messages.stream(
            model=model, max_tokens=100, messages=QUESTION, tools=[WEATHER_TOOL]
        ) as stream:
            kinds = [event.type async for event in stream]
            called = await stream.get_final_message()
        assert kinds[:2] == ["message_start", "content_block_start"]
        assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
        assert called.stop_reason == "tool_use"
        use = called.content[-1]
        assert use.type == "tool_use" and use.name == "get_weather"
        assert use.input == {"city": "Paris"}
        async with client.messages.stream(
            model=model,
            max_tokens=100,
            tools=[WEATHER_TOOL],
            messages=[
                *QUESTION,
                {"role": "assistant", "content": [use.model_dump(exclude_none=True)]},
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "Sunny"}],
                },
            ],
        ) as stream:
            text = "".join([piece async for piece in stream.text_stream])
            answer = await stream.get_final_message()
    assert text and answer.stop_reason == "end_turn"
    fake = world.openai if model.startswith("openai/") else world.gemini
    assert b'"Sunny"' in orjson.dumps(fake.requests[-1])  # the tool's result went up
    assert answer.usage.output_tokens > 0
    rows = await world.gateway.wait_usage_rows(2)
    assert [r["served_model"] for r in rows] == [model, model]
    assert all(r["status"] == 200 and r["cost"] > 0 and r["stream"] == 1 for r in rows)


async def test_openai_gets_tool_calls_and_results_in_its_own_shape(world: Messages) -> None:
    async with world.client() as client:
        await client.messages.create(
            model="openai/gpt-4o-mini",
            max_tokens=100,
            tools=[WEATHER_TOOL],
            tool_choice={"type": "any", "disable_parallel_tool_use": True},
            messages=[
                *QUESTION,
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "Let me look.", "signature": "sig"},
                        {"type": "text", "text": "Looking."},
                        {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                         "input": {"city": "Paris"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"},
                        {"type": "text", "text": "And tomorrow?"},
                    ],
                },
            ],
        )  # fmt: skip
    sent = world.openai.requests[-1]
    assert sent["tool_choice"] == "required" and sent["parallel_tool_calls"] is False
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER_TOOL["input_schema"],
                "description": "Weather in a city",
            },
        }
    ]
    assert sent["messages"][1:] == [
        {
            "role": "assistant",
            "content": "Looking.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "Sunny"},
        {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"}]},
    ]


async def test_what_only_anthropic_serves_keeps_to_anthropic(world: Messages) -> None:
    search: Any = {"type": "web_search_20250305", "name": "web_search", "max_uses": 1}
    async with world.client() as client:
        with pytest.raises(anthropic.BadRequestError) as refused:
            await client.messages.create(
                model="openai/gpt-4o-mini", max_tokens=50, messages=QUESTION, tools=[search]
            )
        served = await client.messages.with_raw_response.create(
            model="claude-haiku-4-5", max_tokens=50, messages=QUESTION, tools=[search]
        )
    error = refused.value.body["error"]  # type: ignore[index]
    assert error["type"] == "invalid_request_error"
    assert error["message"] == (
        "the 'web_search_20250305' tool is served by Anthropic models only; choose a claude model"
    )
    assert served.headers["x-tokenroute-provider"] == "anthropic"
    assert world.openai.requests == []


async def test_count_tokens_estimates_for_other_providers(world: Messages) -> None:
    async with world.client() as client:
        short = await client.messages.count_tokens(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        longer = await client.messages.count_tokens(
            model="openai/gpt-4o-mini",
            messages=[{"role": "user", "content": "hi " * 200}],
            tools=[WEATHER_TOOL],
        )
    assert 0 < short.input_tokens < longer.input_tokens
    assert world.openai.requests == [] and world.gateway.usage_rows() == []


async def test_auto_routes_a_message(world: Messages) -> None:
    async with world.client() as client:
        raw = await client.messages.with_raw_response.create(
            model="tokenroute/auto", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        )
        reply = await raw.parse()
    assert raw.headers["x-tokenroute-tier"] and reply.content[0].type == "text"
    assert reply.model == raw.headers["x-tokenroute-model"]
