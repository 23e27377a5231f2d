"""`/v1/messages` refusals, failures and fallbacks: as chat's, in Anthropic's error shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2 as httpx
import orjson
import pytest
import trio

from tests.cli_helpers import run_cli
from tests.messages_helpers import Messages, messages_world

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def world(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Messages]:
    async with messages_world(nursery, tmp_path) as world:
        yield world


def error_of(raised: pytest.ExceptionInfo[anthropic.APIStatusError]) -> dict[str, Any]:
    body = raised.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    return body["error"]  # type: ignore[no-any-return]


async def test_a_wrong_key_is_401_without_reading_the_body(world: Messages) -> None:
    async with world.client("sk-tr-wrong") as client:
        with pytest.raises(anthropic.AuthenticationError) as refused:
            await client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=HI)
    assert error_of(refused)["type"] == "authentication_error"
    async with httpx.AsyncClient() as http:  # Bearer works as well as x-api-key
        reply = await http.post(
            world.gateway.url + "/v1/messages",
            headers={"authorization": f"Bearer {world.raw}"},
            json={"model": "claude-haiku-4-5", "max_tokens": 10, "messages": HI},
        )
    assert reply.status_code == 200 and orjson.loads(reply.content)["type"] == "message"


async def test_an_empty_balance_is_402_billing_error(world: Messages) -> None:
    _, broke = world.gateway.create_key(credit="0", email="broke@example.com")
    async with world.client(broke) as client:
        with pytest.raises(anthropic.APIStatusError) as refused:
            await client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=HI)
    assert refused.value.status_code == 402
    error = error_of(refused)
    assert error["type"] == "billing_error" and "balance" in error["message"]
    assert world.anthropic.requests == []


async def test_bad_requests_say_what_is_wrong(world: Messages) -> None:
    async with world.client() as client:
        with pytest.raises(anthropic.BadRequestError) as no_limit:
            await client.post(
                "/v1/messages",
                body={"model": "claude-haiku-4-5", "messages": HI},
                cast_to=object,
            )
        with pytest.raises(anthropic.BadRequestError) as bad_block:
            await client.messages.create(
                model="claude-haiku-4-5",
                max_tokens=10,
                messages=[{"role": "user", "content": [{"text": "no type"}]}],  # type: ignore[list-item]
            )
        with pytest.raises(anthropic.BadRequestError) as fast:
            await client.messages.create(
                model="claude-haiku-4-5", max_tokens=10, messages=HI, speed="fast"
            )
    assert error_of(fast)["message"] == (
        "'speed' 'fast' is not priced by this gateway; leave it out or send 'standard'"
    )
    assert error_of(no_limit) == {
        "type": "invalid_request_error",
        "message": "missing required parameter: 'max_tokens'",
    }
    assert error_of(bad_block)["message"] == (
        "'messages[0].content[0]' must be a content block with a 'type'"
    )
    async with httpx.AsyncClient() as http:
        broken = await http.post(
            world.gateway.url + "/v1/messages",
            headers={"x-api-key": world.raw},
            content=b"{not json",
        )
        wrong_method = await http.get(
            world.gateway.url + "/v1/messages", headers={"x-api-key": world.raw}
        )
    assert broken.status_code == 400
    assert orjson.loads(broken.content)["error"]["type"] == "invalid_request_error"
    assert wrong_method.status_code == 405
    assert orjson.loads(wrong_method.content)["error"]["type"] == "invalid_request_error"
    assert world.anthropic.requests == [] and world.gateway.usage_rows() == []


async def test_the_rate_limit_is_429_with_retry_after(world: Messages) -> None:
    async with world.client() as client:
        await client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=HI)
        db = str(world.gateway.db_path)
        done = await run_cli("admin", "set-limits", "--key", world.key_id, "--rps", "1", "--db", db)
        assert done.returncode == 0, done.stderr
        await trio.sleep(1.2)  # the running server re-reads the key within a second
        with pytest.raises(anthropic.RateLimitError) as refused:
            for _ in range(30):
                await client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=HI)
    assert error_of(refused)["type"] == "rate_limit_error"
    assert int(refused.value.response.headers["retry-after"]) >= 1


@pytest.mark.parametrize("stream", [False, True])
async def test_an_overloaded_anthropic_falls_back_to_the_next_model(
    world: Messages, stream: bool
) -> None:
    world.anthropic.status = 529
    async with world.client() as client:
        raw = await client.messages.with_raw_response.create(
            model="anthropic/claude-sonnet-4-5", max_tokens=50, messages=HI, stream=stream
        )
        if stream:
            events = [event async for event in await raw.parse()]
            text = "".join(
                e.delta.text
                for e in events
                if e.type == "content_block_delta"  # type: ignore[union-attr]
            )
        else:
            reply = await raw.parse()
            text = reply.content[0].text  # type: ignore[union-attr]
    assert raw.headers["x-tokenroute-model"] == "openai/gpt-4o"
    assert raw.headers["x-tokenroute-fallbacks"] == "1"
    assert text == "".join(world.openai.words)
    row = (await world.gateway.wait_usage_rows(1))[-1]
    assert (row["requested_model"], row["served_model"]) == (
        "anthropic/claude-sonnet-4-5",
        "openai/gpt-4o",
    )


async def test_an_error_mid_stream_ends_it_with_an_error_event(world: Messages) -> None:
    world.anthropic.error_event_after = 2
    async with world.client() as client:
        stream = await client.messages.create(
            model="claude-haiku-4-5", max_tokens=50, messages=HI, stream=True
        )
        kinds: list[str] = []
        with pytest.raises(anthropic.APIStatusError) as failed:
            async for event in stream:
                kinds.append(event.type)
    assert kinds.count("content_block_delta") == 2
    assert isinstance(failed.value.body, dict)
    assert failed.value.body["error"]["type"] == "overloaded_error"
    row = (await world.gateway.wait_usage_rows(1))[-1]
    assert row["status"] == 503 and row["tokens_out"] > 0 and row["cost"] > 0


async def test_a_client_that_leaves_mid_stream_cuts_the_upstream_and_pays_for_it(
    world: Messages,
) -> None:
    world.anthropic.chunk_delay = 0.1
    world.anthropic.words = [f" word{i}" for i in range(100)]  # ~10 s if read to the end
    async with world.client() as client:
        stream = await client.messages.create(
            model="claude-haiku-4-5", max_tokens=500, messages=HI, stream=True
        )
        deltas = 0
        async for event in stream:
            deltas += event.type == "content_block_delta"
            if deltas == 3:
                break
        closed_at = trio.current_time()
        await stream.close()
    with trio.fail_after(5):
        while not world.anthropic.stream_ends:  # noqa: ASYNC110 (polling the fake's record)
            await trio.sleep(0.005)
    end = world.anthropic.stream_ends[0]
    assert not end.completed and end.chunks_sent < 10
    # at once, not when the stream would have ended (~10 s); loose: a shared machine stalls
    assert end.at - closed_at < 2.0, f"upstream closed {end.at - closed_at:.3f} s after the client"
    [row] = await world.gateway.wait_usage_rows(1)
    assert (row["status"], row["stream"], row["estimated"]) == (499, 1, 1)
    assert 3 <= row["tokens_out"] <= 2 * end.chunks_sent + 2 and row["cost"] > 0
    assert world.balance() == 10 * 10**9 - row["cost"]


BAD_FIELDS = [
    ({"messages": [{"role": "user", "content": 123}]},
     "'messages[0].content' must be a string or an array"),
    ({"system": 5}, "'system' must be a string or an array of text blocks"),
    ({"tools": [{"name": "a"}]}, "'tools[0].input_schema' must be a JSON schema object"),
    ({"stop_sequences": "END"}, "'stop_sequences' must be an array of strings"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_result"}]}]},
     "'messages[0].content[0].tool_use_id' is required"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "file", "file_id": "file_1"}}]}]},
     "'messages[0].content[0].source': uploaded files are not supported here; send the "
     "content as base64"),
    ({"max_tokens": "5"}, "'max_tokens' must be a positive integer"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "message"), BAD_FIELDS)
async def test_each_bad_field_is_named(
    world: Messages, change: dict[str, Any], message: str
) -> None:
    body = {"model": "claude-haiku-4-5", "max_tokens": 10, "messages": HI, **change}
    async with httpx.AsyncClient() as http:
        reply = await http.post(
            world.gateway.url + "/v1/messages", headers={"x-api-key": world.raw}, json=body
        )
    assert reply.status_code == 400
    assert orjson.loads(reply.content)["error"] == {
        "type": "invalid_request_error",
        "message": message,
    }
    assert world.anthropic.requests == []


async def test_a_stream_cut_short_by_the_upstream_is_not_passed_off_as_whole(
    world: Messages,
) -> None:
    world.anthropic.end_early_after = 2  # a clean close, but no message_delta nor message_stop
    async with world.client() as client:
        stream = await client.messages.create(
            model="claude-haiku-4-5", max_tokens=50, messages=HI, stream=True
        )
        with pytest.raises(anthropic.APIStatusError) as failed:
            async for _ in stream:
                pass
        chat = world.gateway.client(world.raw)
        chunks = await chat.chat.completions.create(
            model="anthropic/claude-haiku-4-5", messages=HI, stream=True
        )
        with pytest.raises(Exception, match="ended the stream mid-answer"):
            async for _ in chunks:
                pass
    assert failed.value.body["error"]["message"] == (  # type: ignore[index]
        "anthropic ended the stream mid-answer"
    )
    rows = await world.gateway.wait_usage_rows(2)
    assert [r["status"] for r in rows] == [502, 502]
    assert all(r["tokens_out"] > 0 and r["cost"] > 0 for r in rows)  # what was relayed
