"""Chat completions through the gateway with the official openai SDK."""

from __future__ import annotations

import openai
import pytest
import trio

from tests.conftest import RunningGateway
from tests.fakes.openai_upstream import FakeOpenAI


async def test_non_streaming_completion(gateway: RunningGateway, fake_openai: FakeOpenAI) -> None:
    key_id, raw = gateway.create_key()
    client = gateway.client(raw)
    response = await client.chat.completions.with_raw_response.create(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "Hello"}],
        temperature=0.2,
        seed=7,
        user="u-1",
        extra_headers={"x-request-id": "my-req-1"},
    )
    completion = response.parse()
    assert completion.choices[0].message.content == "Hello from the fake upstream."
    assert completion.model == "openai/gpt-4o-mini"
    assert completion.usage is not None and completion.usage.prompt_tokens == 11
    assert response.headers["x-request-id"] == "my-req-1"
    assert response.headers["x-tokenroute-model"] == "openai/gpt-4o-mini"
    sent = fake_openai.requests[-1]
    assert sent["model"] == "gpt-4o-mini"
    assert sent["temperature"] == 0.2 and sent["seed"] == 7 and sent["user"] == "u-1"
    assert fake_openai.headers[-1]["authorization"] == "Bearer sk-upstream-secret-123"
    [row] = await gateway.wait_usage_rows(1)
    assert row["request_id"] == "my-req-1"
    assert row["key_id"] == key_id
    assert (row["tokens_in"], row["tokens_out"], row["estimated"]) == (11, 7, 0)
    assert row["served_model"] == "openai/gpt-4o-mini" and row["provider"] == "openai"
    assert row["status"] == 200 and row["stream"] == 0
    # gpt-4o-mini: $0.15 in / $0.60 out per 1M tokens -> 11*150 + 7*600 nano-USD
    assert row["cost"] == 11 * 150 + 7 * 600


async def test_streaming_relays_chunks_as_they_arrive(
    gateway: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    fake_openai.chunk_delay = 0.15
    _, raw = gateway.create_key()
    client = gateway.client(raw)
    stream = await client.chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "Hello"}],
        stream=True,
    )
    arrivals: list[float] = []
    texts: list[str] = []
    async for chunk in stream:
        arrivals.append(trio.current_time())
        assert chunk.model == "openai/gpt-4o-mini"
        assert chunk.usage is None
        if chunk.choices and chunk.choices[0].delta.content:
            texts.append(chunk.choices[0].delta.content)
    assert "".join(texts) == "Hello from the fake upstream."
    # six content chunks paced 150 ms apart reach the client spread out, not in one burst
    content_span = arrivals[-2] - arrivals[1]
    assert content_span > 0.5
    # the upstream was asked for usage even though the client was not given it
    assert fake_openai.requests[-1]["stream_options"] == {"include_usage": True}
    [row] = await gateway.wait_usage_rows(1)
    assert (row["tokens_in"], row["tokens_out"], row["stream"], row["status"]) == (11, 6, 1, 200)
    assert row["ttft_ms"] is not None and row["ttft_ms"] <= row["latency_ms"]


async def test_streaming_usage_chunk_when_asked(gateway: RunningGateway) -> None:
    _, raw = gateway.create_key()
    stream = await gateway.client(raw).chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "Hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 11 and chunks[-1].usage.completion_tokens == 6
    assert chunks[-1].choices == []


async def test_tool_call_round_trip(gateway: RunningGateway, fake_openai: FakeOpenAI) -> None:
    _, raw = gateway.create_key()
    client = gateway.client(raw)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    messages: list[dict[str, object]] = [{"role": "user", "content": "Weather in Paris?"}]
    first = await client.chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=messages,
        tools=tools,
        tool_choice="auto",  # type: ignore[arg-type]
    )
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and call.function.arguments == '{"city": "Paris"}'
    assert fake_openai.requests[-1]["tools"] == tools
    assert fake_openai.requests[-1]["tool_choice"] == "auto"
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
    ]
    second = await client.chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=messages,
        tools=tools,  # type: ignore[arg-type]
    )
    assert second.choices[0].message.content == "The tool said: sunny, 21 C"
    assert fake_openai.requests[-1]["messages"][-1]["tool_call_id"] == call.id


async def test_streamed_tool_call(gateway: RunningGateway) -> None:
    _, raw = gateway.create_key()
    tools = [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    ]
    stream = await gateway.client(raw).chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "Weather?"}],
        tools=tools,  # type: ignore[arg-type]
        stream=True,
    )
    arguments, names, finish = "", [], None
    async for chunk in stream:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                arguments += delta.function.arguments or ""  # type: ignore[union-attr]
                if delta.function and delta.function.name:
                    names.append(delta.function.name)
            finish = choice.finish_reason or finish
    assert names == ["get_weather"] and arguments == '{"city": "Paris"}' and finish == "tool_calls"


async def test_n_greater_than_one(gateway: RunningGateway, fake_openai: FakeOpenAI) -> None:
    _, raw = gateway.create_key()
    client = gateway.client(raw)
    completion = await client.chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "Hi"}],
        n=3,
    )
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert fake_openai.requests[-1]["n"] == 3
    stream = await client.chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "Hi"}],
        n=2,
        stream=True,
    )
    seen = {choice.index async for chunk in stream for choice in chunk.choices}
    assert seen == {0, 1}


async def test_estimates_tokens_when_upstream_reports_none(
    gateway: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    fake_openai.send_usage = False
    _, raw = gateway.create_key()
    client = gateway.client(raw)
    await client.chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "Hello there"}],
    )
    stream = await client.chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "Hello there"}],
        stream=True,
    )
    [_ async for _ in stream]
    rows = await gateway.wait_usage_rows(2)
    for row in rows:
        assert row["estimated"] == 1
        assert row["tokens_in"] > 2 and row["tokens_out"] > 2
        assert row["cost"] > 0


async def test_unknown_model_is_404_naming_it(gateway: RunningGateway) -> None:
    _, raw = gateway.create_key()
    with pytest.raises(openai.NotFoundError) as caught:
        await gateway.client(raw).chat.completions.create(
            model="openai/gpt-nope",
            messages=[{"role": "user", "content": "Hi"}],
        )
    error = caught.value.body
    assert isinstance(error, dict)
    assert "openai/gpt-nope" in error["message"] and "/v1/models" in error["message"]
    assert error["type"] == "invalid_request_error" and error["code"] == 404
