"""Anthropic's Messages API to an Anthropic upstream: the official SDK against the gateway.

The body goes up unchanged but for the model (cache_control, thinking, tools, images,
PDFs and the version and beta headers untouched), the answer and the event stream come
back as the upstream sent them, and the request is held, billed and recorded as chat is.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2 as httpx
import orjson
import pytest
import trio

from tests.messages_helpers import PDF, PNG, WEATHER_TOOL, Messages, messages_world

HI = [{"role": "user", "content": "hi"}]
BETA = "interleaved-thinking-2025-05-14,context-management-2025-06-27"
# Everything a Claude Code request carries that no other provider understands.
RICH: dict[str, Any] = {
    "model": "claude-haiku-4-5",
    "max_tokens": 300,
    "system": [
        {"type": "text", "text": "You are terse."},
        {"type": "text", "text": "Answer in English.", "cache_control": {"type": "ephemeral"}},
    ],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": PNG}},
                {
                    "type": "document",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
                    "cache_control": {"type": "ephemeral"},
                },
            ],
        }
    ],
    "thinking": {"type": "enabled", "budget_tokens": 200},
    "metadata": {"user_id": "user-7"},
    "output_config": {"effort": "high"},
}  # fmt: skip


@pytest.fixture
async def world(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Messages]:
    async with messages_world(nursery, tmp_path) as world:
        yield world


async def test_a_rich_request_goes_up_unchanged_but_for_the_model(world: Messages) -> None:
    world.anthropic.cache_read_tokens, world.anthropic.cache_creation_tokens = 100, 50
    world.anthropic.cache_hour_tokens = 20  # of the 50 written, kept for an hour
    async with world.client() as client:
        raw = await client.messages.with_raw_response.create(
            **copy.deepcopy(RICH), extra_headers={"anthropic-beta": BETA}
        )
    reply = await raw.parse()
    assert reply.type == "message" and reply.content[0].type == "text"
    assert reply.content[0].text == "Hello from the fake Claude."
    assert reply.id == "msg_fake_1" and reply.stop_reason == "end_turn"
    assert reply.usage.input_tokens == 11 and reply.usage.cache_read_input_tokens == 100
    assert world.anthropic.requests == [RICH]  # the bare id is the upstream's own id
    sent = world.anthropic.headers[-1]
    assert sent["anthropic-beta"] == BETA  # and the SDK's own API version:
    assert sent["anthropic-version"] == anthropic._constants.ANTHROPIC_API_VERSION
    assert sent["x-api-key"] == "sk-ant-test"  # the operator's key, never the client's
    assert raw.headers["x-tokenroute-model"] == "anthropic/claude-haiku-4-5"
    assert raw.headers["x-tokenroute-provider"] == "anthropic"
    # Billed like chat, cache reads and writes priced: haiku 4.5 is $1 in, $5 out,
    # $0.10 cache read, $1.25 cache write (5 minutes) and $2 (an hour) per 1M tokens.
    row = (await world.gateway.wait_usage_rows(1))[-1]
    expected = 11 * 1_000 + 100 * 100 + 30 * 1_250 + 20 * 2_000 + 6 * 5_000  # nano-USD
    assert (row["served_model"], row["status"], row["cost"]) == (
        "anthropic/claude-haiku-4-5",
        200,
        expected,
    )
    assert row["tokens_in"] == 161 and row["tokens_out"] == 6 and row["cached_tokens"] == 100
    assert raw.headers["x-tokenroute-cost"] == "0.0001285"
    assert world.balance() == 10 * 10**9 - expected


async def test_a_stream_is_relayed_event_for_event(world: Messages) -> None:
    # The raw bytes, to compare with the fake's.
    async with (
        httpx.AsyncClient() as http,
        http.stream(
            "POST",
            world.gateway.url + "/v1/messages",
            headers={"x-api-key": world.raw, "anthropic-version": "2023-06-01"},
            json={**RICH, "stream": True},
        ) as response,
    ):
        body = b"".join([part async for part in response.aiter_bytes()])
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [block.split(b"\n")[0] for block in body.strip().split(b"\n\n")]
    assert events == [
        b"event: message_start",
        b"event: content_block_start",
        b"event: ping",
        *[b"event: content_block_delta"] * 6,
        b"event: content_block_stop",
        b"event: message_delta",
        b"event: message_stop",
    ]
    assert world.anthropic.requests[-1] == {**RICH, "stream": True}
    row = (await world.gateway.wait_usage_rows(1))[-1]
    assert row["stream"] == 1 and row["tokens_out"] == 6 and row["estimated"] == 0


async def test_the_sdk_streams_text_and_tool_calls(world: Messages) -> None:
    async with world.client() as client:
        async with client.messages.stream(
            model="anthropic/claude-haiku-4-5",
            max_tokens=100,
            messages=[{"role": "user", "content": "hi"}],
        ) as stream:
            text = "".join([piece async for piece in stream.text_stream])
            final = await stream.get_final_message()
        assert text == "Hello from the fake Claude." and final.usage.output_tokens == 6
        question = [{"role": "user", "content": "Weather in Paris?"}]
        async with client.messages.stream(
            model="claude-haiku-4-5", max_tokens=100, messages=question, tools=[WEATHER_TOOL]
        ) as stream:
            called = await stream.get_final_message()
        assert called.stop_reason == "tool_use"
        use = called.content[0]
        assert use.type == "tool_use" and use.name == "get_weather"
        assert use.input == {"city": "Paris"}
        answer = await client.messages.create(
            model="claude-haiku-4-5",
            max_tokens=100,
            tools=[WEATHER_TOOL],
            messages=[
                *question,
                {"role": "assistant", "content": [use.model_dump(exclude_none=True)]},
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "Sunny"}],
                },
            ],
        )
    assert answer.content[0].type == "text" and answer.content[0].text == "The tool said: Sunny"
    assert len(await world.gateway.wait_usage_rows(3)) == 3


async def test_the_sync_client_works_too(world: Messages) -> None:
    def call() -> tuple[str, list[str]]:
        with world.sync_client() as client:
            reply = client.messages.create(
                model="claude-haiku-4-5",
                max_tokens=50,
                messages=[{"role": "user", "content": "hi"}],
            )
            stream = client.messages.create(
                model="claude-haiku-4-5",
                max_tokens=50,
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
            )
            kinds = [event.type for event in stream]
        return reply.content[0].text, kinds  # type: ignore[union-attr]

    text, kinds = await trio.to_thread.run_sync(call)
    assert text == "Hello from the fake Claude."
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]


async def test_count_tokens_asks_anthropic_and_costs_nothing(world: Messages) -> None:
    async with world.client() as client:
        counted = await client.messages.count_tokens(
            model="claude-haiku-4-5",
            system="Be brief.",
            messages=[{"role": "user", "content": "hi"}],
            tools=[WEATHER_TOOL],
        )
    assert counted.input_tokens == 1234
    sent = world.anthropic.count_requests[-1]
    assert sent["model"] == "claude-haiku-4-5" and sent["tools"] == [WEATHER_TOOL]
    assert world.gateway.usage_rows() == [] and world.balance() == 10 * 10**9


async def test_dated_and_new_claude_ids_reach_anthropic_as_named(world: Messages) -> None:
    async with world.client() as client:
        for name in ("claude-haiku-4-5-20251001", "anthropic/claude-opus-4-8-20261001"):
            raw = await client.messages.with_raw_response.create(
                model=name, max_tokens=10, messages=[{"role": "user", "content": "hi"}]
            )
            assert world.anthropic.requests[-1]["model"] == name.removeprefix("anthropic/")
            assert raw.headers["x-tokenroute-provider"] == "anthropic"
        with pytest.raises(anthropic.NotFoundError) as missing:
            await client.messages.create(
                model="claude-nonesuch-9",
                max_tokens=10,
                messages=[{"role": "user", "content": "hi"}],
            )
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    rows = await world.gateway.wait_usage_rows(2)
    assert [r["served_model"] for r in rows] == [
        "anthropic/claude-haiku-4-5-20251001",
        "anthropic/claude-opus-4-8-20261001",
    ]
    assert all(r["cost"] > 0 for r in rows)


async def test_models_list_in_anthropic_shape(world: Messages) -> None:
    async with world.client() as client:
        ids = [model.id async for model in client.models.list(limit=3)]
        one = await client.models.retrieve("anthropic/claude-haiku-4-5")
    assert "anthropic/claude-haiku-4-5" in ids and "openai/gpt-4o-mini" in ids
    assert ids[0] == "tokenroute/auto"
    assert len(ids) == len(set(ids)) > 3  # every page, once
    assert one.type == "model" and one.id == "anthropic/claude-haiku-4-5"
    async with httpx.AsyncClient() as http:
        plain = await http.get(
            world.gateway.url + "/v1/models", headers={"authorization": f"Bearer {world.raw}"}
        )
    assert orjson.loads(plain.content)["object"] == "list"  # OpenAI's shape without the header


async def test_a_dated_id_is_its_listed_model_price_and_all(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    config = """
[models."anthropic/claude-haiku-4-5"]
input_price = "2"
output_price = "8"

[models."anthropic/claude-opus-4-8"]
hidden = true
"""
    async with messages_world(nursery, tmp_path, config) as world, world.client() as client:
        await client.messages.create(model="claude-haiku-4-5-20251001", max_tokens=10, messages=HI)
        with pytest.raises(anthropic.NotFoundError):  # hidden, by any of its names
            await client.messages.create(
                model="claude-opus-4-8-20261001", max_tokens=10, messages=HI
            )
    [row] = await world.gateway.wait_usage_rows(1)
    assert row["served_model"] == "anthropic/claude-haiku-4-5-20251001"
    assert row["cost"] == 11 * 2_000 + 6 * 8_000  # the operator's price, in nano-USD
    assert [r["model"] for r in world.anthropic.requests] == ["claude-haiku-4-5-20251001"]
