"""The Anthropic adapter: translation tables, and a fake that the official SDK accepts as real."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2 as httpx
import orjson
import pytest
import trio
from anthropic.types import ToolUseBlock
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from proxy.core.chat import ChatRequest, Usage, parse_chat_request
from proxy.core.errors import (
    BadRequest,
    GatewayError,
    RateLimited,
    UpstreamError,
    UpstreamUnavailable,
)
from proxy.core.model import Model, Price, Rates
from proxy.providers.anthropic import JSON_ONLY, AnthropicAdapter
from proxy.providers.anthropic_stream import AnthropicStream
from proxy.providers.base import Completion, error_message
from tests.fakes.anthropic_upstream import FakeAnthropic, error_envelope, sse
from tests.wire import wire

# $1 / $5 per million tokens in / out, cache reads $0.10, cache writes $1.25 (pico-USD a token)
PRICE = Price(Rates(input=1_000_000, output=5_000_000, cache_read=100_000, cache_write=1_250_000))
MODEL = Model("anthropic/claude-haiku-4-5", "anthropic", "claude-haiku-4-5", PRICE, 200000)
ADAPTER = AnthropicAdapter("anthropic")
PARAMS = {"type": "object", "properties": {"city": {"type": "string"}}}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": PARAMS}}
USER_HI = [{"role": "user", "content": "hi"}]
PNG = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}}
CAT = "https://example.com/cat.jpg"
B64 = {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}
IMAGES = [
    {"type": "image", "source": B64},
    {"type": "image", "source": {"type": "url", "url": CAT}},
]


def chat(**body: Any) -> ChatRequest:
    return parse_chat_request({"model": MODEL.id, "messages": USER_HI, **body})


def translate(**body: Any) -> dict[str, Any]:
    sent = ADAPTER.chat_request(chat(**body), MODEL, "sk-test")
    return orjson.loads(sent.body)


def text(value: str) -> dict[str, str]:
    return {"type": "text", "text": value}


def msg(role: str, content: Any, **extra: Any) -> dict[str, Any]:
    return {"role": role, "content": content, **extra}


def call(call_id: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": "f", "arguments": arguments}}


def use(call_id: str, tool_input: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": "f", "input": tool_input}


def result(call_id: str, content: Any) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": call_id, "content": content}


def chunks(translated: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each chunk as sent, parsed, after checking it is one SSE event the openai SDK accepts."""
    out = []
    for event in wire(translated):
        assert event.startswith(b"data: ") and event.endswith(b"\n\n") and b"[DONE]" not in event
        out.append(orjson.loads(event[6:]))
        ChatCompletionChunk.model_validate(out[-1])
    return out


def deltas(parsed: list[dict[str, Any]]) -> list[Any]:
    return [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in parsed]


# -- requests ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"messages": [msg("system", "Be brief."), *USER_HI]},
         {"system": "Be brief.", "messages": [msg("user", [text("hi")])]}),
        ({"messages": [msg("system", "Be brief."), msg("developer", [text("Be kind.")]), *USER_HI]},
         {"system": "Be brief.\n\nBe kind."}),
        ({"messages": [msg("user", "a"), msg("user", [text("b")]), msg("assistant", "c"),
                       msg("assistant", "d"), msg("user", "e")]},
         {"messages": [msg("user", [text("a"), text("b")]),
                       msg("assistant", [text("c"), text("d")]), msg("user", [text("e")])]}),
        ({"messages": [msg("user", [text("What?"), PNG, {"type": "image_url", "image_url": CAT}])]},
         {"messages": [msg("user", [text("What?"), *IMAGES])]}),
        ({"messages": [*USER_HI, msg("assistant", None, tool_calls=[call("c1", "{}"),
                                                                  call("c2", '{"city": "Oslo"}')]),
                       msg("tool", "sunny", tool_call_id="c1"),
                       msg("tool", [text("rain")], tool_call_id="c2"), msg("user", "Thanks")]},
         {"messages": [msg("user", [text("hi")]),
                       msg("assistant", [use("c1", {}), use("c2", {"city": "Oslo"})]),
                       msg("user", [result("c1", "sunny"), result("c2", [text("rain")]),
                                    text("Thanks")])]}),
        ({"tools": [WEATHER, {"function": {"name": "now", "description": "T"}}]},
         {"tools": [{"name": "get_weather", "input_schema": PARAMS}, {"name": "now",
                     "description": "T", "input_schema": {"type": "object", "properties": {}}}],
          "tool_choice": None}),
        ({}, {"max_tokens": 8192, "model": "claude-haiku-4-5", "system": None}),
        ({"max_tokens": 50}, {"max_tokens": 50}),
        ({"max_completion_tokens": 100, "max_tokens": 50}, {"max_tokens": 100}),
        ({"stop": "END"}, {"stop_sequences": ["END"]}),
        ({"stop": ["a", "b"]}, {"stop_sequences": ["a", "b"]}),
        ({"temperature": 0.2, "top_p": 0.9}, {"temperature": 0.2, "top_p": 0.9}),
        ({"user": "u-42"}, {"metadata": {"user_id": "u-42"}}),
        ({"response_format": {"type": "json_object"}}, {"system": JSON_ONLY}),
        ({"response_format": {"type": "text"}}, {"system": None}),
    ],
)  # fmt: skip
def test_request_mapping(body: dict[str, Any], expected: dict[str, Any]) -> None:
    translated = translate(**body)
    assert {key: translated.get(key) for key in expected} == expected


def test_request_drops_what_anthropic_lacks_and_streams() -> None:
    dropped = {"n": 1, "seed": 7, "logprobs": True, "presence_penalty": 0.5, "store": True}
    translated = translate(stream=True, stream_options={"include_usage": True}, **dropped)
    hi = [msg("user", [text("hi")])]
    assert translated == {"model": MODEL.upstream_id, "max_tokens": 8192, "messages": hi,
                          "stream": True}  # fmt: skip


def test_json_schema_goes_into_the_system_prompt() -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    response_format = {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}
    messages = [msg("system", "Be brief."), *USER_HI]
    system = translate(messages=messages, response_format=response_format)["system"]
    said = f"{JSON_ONLY} It must match this JSON schema: {orjson.dumps(schema).decode()}"
    assert system == f"Be brief.\n\n{said}"


@pytest.mark.parametrize(("choice", "parallel", "expected"), [
    ("auto", None, {"type": "auto"}), ("required", None, {"type": "any"}),
    ("none", None, {"type": "none"}),
    ({"type": "function", "function": {"name": "f"}}, None, {"type": "tool", "name": "f"}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    (None, True, None)])  # fmt: skip
def test_tool_choice(choice: Any, parallel: Any, expected: dict[str, Any] | None) -> None:
    body: dict[str, Any] = {"tools": [WEATHER], "parallel_tool_calls": parallel}
    if choice is not None:
        body["tool_choice"] = choice
    assert translate(**body).get("tool_choice") == expected


def test_request_headers() -> None:
    sent = ADAPTER.chat_request(chat(), MODEL, "sk-test")
    assert (sent.path, sent.headers) == ("/v1/messages", {
        "content-type": "application/json", "accept-encoding": "identity",
        "anthropic-version": "2023-06-01", "x-api-key": "sk-test"})  # fmt: skip
    streamed = ADAPTER.chat_request(chat(stream=True), MODEL, None).headers
    assert streamed["accept"] == "text/event-stream" and "x-api-key" not in streamed


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"n": 2}, "n"),
        ({"messages": [msg("assistant", None, tool_calls=[call("c", "{oops")])]},
         "messages[0].tool_calls[0]"),
        ({"messages": [msg("assistant", None, tool_calls=[call("c", "[1]")])]},
         "messages[0].tool_calls[0]"),
        ({"messages": [msg("tool", "x")]}, "messages[0].tool_call_id"),
        ({"messages": [msg("user", [{"type": "input_audio"}])]}, "messages[0].content[0]"),
        ({"messages": [msg("user", [{"type": "image_url", "image_url": {"url": "ftp://x/y"}}])]},
         "messages[0].content[0].image_url"),
        ({"messages": [msg("function", "x")]}, "messages[0].role"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools"),
        ({"tools": [WEATHER], "tool_choice": {"type": "allowed_tools"}}, "tool_choice"),
    ],
)  # fmt: skip
def test_untranslatable_requests_are_bad_requests(body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as caught:
        translate(**body)
    assert caught.value.param == param and caught.value.status == 400
    assert "one choice" in caught.value.message or param != "n"


# -- responses --------------------------------------------------------------------------------
USAGE = {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 3,
         "cache_creation_input_tokens": 2}  # fmt: skip
TOOL_USE = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}


def respond(content: list[Any], stop_reason: str = "end_turn") -> tuple[Completion, dict[str, Any]]:
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
               "content": content, "stop_reason": stop_reason, "stop_sequence": None,
               "usage": USAGE}  # fmt: skip
    completion = ADAPTER.chat_response(orjson.dumps(message), MODEL)
    data = orjson.loads(orjson.dumps(completion.data))
    ChatCompletion.model_validate(data)
    return completion, data


def test_text_response_and_usage_with_cache_tokens() -> None:
    completion, data = respond([text("Hello"), text(" world")])
    assert (data["id"], data["object"], data["model"]) == ("chatcmpl-msg_1", "chat.completion",
                                                           MODEL.id)  # fmt: skip
    message = {"role": "assistant", "content": "Hello world", "refusal": None}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
    assert data["choices"] == [choice]
    assert data["usage"] == {"prompt_tokens": 15, "completion_tokens": 5, "total_tokens": 20,
                             "prompt_tokens_details": {"cached_tokens": 3}}  # fmt: skip
    assert completion.usage == Usage(15, 5, cached_tokens=3, cache_write_tokens=2)
    assert completion.output_text == "Hello world"


def test_tool_use_response() -> None:
    function = {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    completion, data = respond([TOOL_USE], "tool_use")
    message = data["choices"][0]["message"]
    assert message["content"] is None and data["choices"][0]["finish_reason"] == "tool_calls"
    assert message["tool_calls"] == [{"id": "toolu_1", "type": "function", "function": function}]
    assert completion.output_text == 'get_weather{"city":"Paris"}'  # for an estimate
    _, data = respond([text("Let me check."), TOOL_USE], "tool_use")
    assert data["choices"][0]["message"]["content"] == "Let me check."


@pytest.mark.parametrize(("stop_reason", "finish_reason"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
    ("tool_use", "tool_calls"), ("refusal", "content_filter"),
    ("model_context_window_exceeded", "length")])  # fmt: skip
def test_stop_reasons(stop_reason: str, finish_reason: str) -> None:
    assert respond([text("x")], stop_reason)[1]["choices"][0]["finish_reason"] == finish_reason


@pytest.mark.parametrize(("body", "said"), [
    (b"<html>bad gateway</html>", "anthropic sent a response that is not JSON"),
    (orjson.dumps(error_envelope("api_error", "Boo")), "anthropic failed with HTTP 500: Boo"),
    (b'{"type": "completion"}', "anthropic sent a response that is not a message")])  # fmt: skip
def test_bad_response_bodies_are_upstream_errors(body: bytes, said: str) -> None:
    with pytest.raises(UpstreamError) as caught:
        ADAPTER.chat_response(body, MODEL)
    assert caught.value.message == said


def test_error_message() -> None:
    envelope = orjson.dumps(error_envelope("overloaded_error", "Overloaded"))
    assert error_message(envelope) == "Overloaded"
    assert error_message(b"upstream connect error") == "upstream connect error"
    assert error_message(b"") is None


# -- streams ----------------------------------------------------------------------------------
START = {"type": "message_start", "message": {
    "id": "msg_s", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
    "content": [], "stop_reason": None, "stop_sequence": None,
    "usage": {"input_tokens": 10, "cache_read_input_tokens": 4, "cache_creation_input_tokens": 2,
              "output_tokens": 1}}}  # fmt: skip


def block(index: int, content_block: dict[str, Any]) -> bytes:
    data = {"type": "content_block_start", "index": index, "content_block": content_block}
    return sse("content_block_start", data)


def delta(index: int, kind: str, key: str, value: str) -> bytes:
    data = {"type": "content_block_delta", "index": index, "delta": {"type": kind, key: value}}
    return sse("content_block_delta", data)


def ending(stop_reason: str, output_tokens: int) -> bytes:
    data = {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None}}
    return sse("message_delta", {**data, "usage": {"output_tokens": output_tokens}})


TOOL_BLOCK = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
TEXT_PART = (sse("message_start", START) + block(0, text("")) + sse("ping", {"type": "ping"})
             + delta(0, "text_delta", "text", "Hel") + delta(0, "text_delta", "text", "lo")
             + sse("content_block_stop", {"type": "content_block_stop", "index": 0}))  # fmt: skip
TOOL_PART = block(1, TOOL_BLOCK) + b"".join(
    delta(1, "input_json_delta", "partial_json", p) for p in ["", '{"city":', ' "P"}']
)
LAST = ending("tool_use", 20) + sse("message_stop", {"type": "message_stop"})


def run_stream(data: bytes, size: int, include_usage: bool = False) -> tuple[AnthropicStream, Any]:
    request = chat(stream=True, stream_options={"include_usage": include_usage})
    stream = ADAPTER.chat_stream(request, MODEL)
    events: list[dict[str, Any]] = []
    for i in range(0, len(data), size):
        events += stream.feed(data[i : i + size])
    return stream, chunks(events + stream.finish())


@pytest.mark.parametrize("size", [1, 7, 64, 10000])
@pytest.mark.parametrize("include_usage", [False, True])
def test_stream_translation(size: int, include_usage: bool) -> None:
    stream, parsed = run_stream(TEXT_PART + TOOL_PART + LAST, size, include_usage)
    function = {"name": "get_weather", "arguments": ""}
    head = {"index": 0, "id": "toolu_1", "type": "function", "function": function}
    assert deltas(parsed[:7]) == [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "Hel"}, None),
        ({"content": "lo"}, None),
        ({"tool_calls": [head]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": ' "P"}'}}]}, None),
        ({}, "tool_calls"),
    ]
    assert {(c["id"], c["object"], c["model"]) for c in parsed} == {
        ("chatcmpl-msg_s", "chat.completion.chunk", MODEL.id)
    }
    assert all("usage" not in c for c in parsed[:7])
    # 10 fresh + 4 read + 2 written prompt tokens, 20 out: $0.0000100 + 0.0000004
    # + 0.0000025 + 0.0001 = $0.0001129, shown to the client as `cost`
    usage = {"prompt_tokens": 16, "completion_tokens": 20, "total_tokens": 36,
             "prompt_tokens_details": {"cached_tokens": 4}, "cost": "0.0001129"}  # fmt: skip
    assert parsed[7:] == ([{**parsed[0], "choices": [], "usage": usage}] if include_usage else [])
    state = stream.state
    assert state.usage == Usage(16, 20, cached_tokens=4, cache_write_tokens=2)
    assert (state.done, state.content_sent, state.error) == (True, True, None)
    assert state.output_text == 'Helloget_weather{"city": "P"}'


def test_second_tool_call_gets_the_next_index() -> None:
    second = block(2, {**TOOL_BLOCK, "id": "toolu_2"})
    second += delta(2, "input_json_delta", "partial_json", "{}")
    _, parsed = run_stream(TEXT_PART + TOOL_PART + second + LAST, 50)
    calls = [d["tool_calls"][0] for d, _ in deltas(parsed) if "tool_calls" in d]
    indexes = [(c["index"], c.get("id")) for c in calls]
    assert indexes == [(0, "toolu_1"), (0, None), (0, None), (1, "toolu_2"), (1, None)]


@pytest.mark.parametrize(("error_type", "expected"), [
    ("overloaded_error", UpstreamUnavailable), ("rate_limit_error", RateLimited),
    ("api_error", UpstreamError), ("invalid_request_error", BadRequest)])  # fmt: skip
def test_stream_error_event(error_type: str, expected: type[GatewayError]) -> None:
    failed = sse("error", error_envelope(error_type, "Boom"))
    stream, parsed = run_stream(TEXT_PART + failed + delta(0, "text_delta", "text", "never"), 5)
    error = stream.state.error
    assert type(error) is expected and error.message.startswith("anthropic ")
    assert error.detail is not None and error.detail.endswith(": Boom")  # for the operator
    # the client reads the upstream's words, but not about the gateway's own rate limits
    assert error.message.endswith(": Boom") == (expected is not RateLimited)
    assert deltas(parsed)[-1] == ({"content": "lo"}, None)  # nothing after the error
    assert stream.state.usage is None and not stream.state.done


def test_stream_malformed_event() -> None:
    stream, parsed = run_stream(sse("message_start", START) + b"event: x\ndata: {not json\n\n", 9)
    assert len(parsed) == 1 and isinstance(stream.state.error, UpstreamError)
    assert stream.state.error.message == "anthropic sent a malformed stream event"


def test_stream_last_event_without_blank_line_and_max_tokens() -> None:
    last = b'event: message_stop\ndata: {"type":"message_stop"}'  # flushed by finish()
    stream, parsed = run_stream(sse("message_start", START) + ending("max_tokens", 3) + last, 4)
    assert deltas(parsed)[-1] == ({}, "length")
    assert stream.state.done and stream.state.usage == Usage(16, 3, 4, cache_write_tokens=2)


# -- the fake, as the official SDK sees it ----------------------------------------------------
@pytest.fixture
async def fake(nursery: trio.Nursery) -> AsyncIterator[FakeAnthropic]:
    fake = await nursery.start(FakeAnthropic(cache_read_tokens=4, cache_creation_tokens=2).run)
    yield fake
    fake.stop()


@pytest.fixture
async def client(fake: FakeAnthropic) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(base_url=fake.url, api_key="sk-fake", max_retries=0)
    yield client
    await client.close()


SDK_TOOL: Any = {"name": "get_weather", "input_schema": PARAMS}
ASK: dict[str, Any] = {"model": "claude-haiku-4-5", "max_tokens": 64, "messages": USER_HI}
Client = anthropic.AsyncAnthropic


async def test_sdk_reads_a_plain_message(client: Client, fake: FakeAnthropic) -> None:
    message = await client.messages.create(**ASK)
    assert [b.text for b in message.content if b.type == "text"] == ["Hello from the fake Claude."]
    assert (message.id, message.stop_reason) == ("msg_fake_1", "end_turn")
    usage = message.usage
    assert (usage.input_tokens, usage.output_tokens) == (11, 6)
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (4, 2)
    assert fake.requests == [ASK]
    assert fake.headers[0]["authorization"] == "Bearer sk-fake"  # how SDK 2.x sends the key


async def test_sdk_reads_a_streamed_message(client: Client, fake: FakeAnthropic) -> None:
    async with client.messages.stream(**ASK) as stream:
        pieces = [piece async for piece in stream.text_stream]
        final = await stream.get_final_message()
    assert pieces == ["Hello", " from", " the", " fake", " Claude", "."]
    assert final.content[0].type == "text" and final.content[0].text == "".join(pieces)
    assert (final.stop_reason, final.usage.output_tokens) == ("end_turn", 6)
    assert fake.requests[0]["stream"] is True and fake.stream_ends[0].completed


async def test_sdk_reads_tool_calls(client: Client, fake: FakeAnthropic) -> None:
    message = await client.messages.create(**ASK, tools=[SDK_TOOL])
    async with client.messages.stream(**ASK, tools=[SDK_TOOL]) as stream:
        streamed = await stream.get_final_message()
    for reply in (message, streamed):
        block = reply.content[0]
        assert reply.stop_reason == "tool_use" and isinstance(block, ToolUseBlock)
        assert (block.name, block.input) == ("get_weather", {"city": "Paris"})
    turns = [*USER_HI, msg("assistant", [message.content[0].to_dict()]),
             msg("user", [result("toolu_fake_1", "sunny")])]  # fmt: skip
    answer = await client.messages.create(**{**ASK, "messages": turns}, tools=[SDK_TOOL])
    assert answer.content[0].type == "text" and answer.content[0].text == "The tool said: sunny"


async def test_sdk_sees_injected_http_errors(client: Client, fake: FakeAnthropic) -> None:
    fake.status = 529
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        await client.messages.create(**ASK)
    assert overloaded.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    fake.status, fake.retry_after = 429, "7"
    with pytest.raises(anthropic.RateLimitError) as limited:
        await client.messages.create(**ASK)
    assert limited.value.response.headers["retry-after"] == "7"
    fake.status, fake.api_key = 200, "sk-other"
    with pytest.raises(anthropic.AuthenticationError):
        await client.messages.create(**ASK)
    fake.api_key = None  # version 2026-10-21 (the SDK's) refuses sampling fields
    with pytest.raises(anthropic.BadRequestError, match="temperature: Extra inputs"):
        await client.messages.create(**ASK, extra_body={"temperature": 0.5})


# -- the adapter against the fake -------------------------------------------------------------
async def complete(fake: FakeAnthropic, **body: Any) -> Completion:
    sent = ADAPTER.chat_request(chat(**body), MODEL, "sk-test")
    async with httpx.AsyncClient() as http:
        response = await http.post(fake.url + sent.path, headers=sent.headers, content=sent.body)
    if response.status_code != 200:
        raise ADAPTER.error(response.status_code, response.content, None)
    return ADAPTER.chat_response(response.content, MODEL)


async def relay(fake: FakeAnthropic, wait: float = 5.0) -> tuple[AnthropicStream, list[Any]]:
    """Stream through the fake as the relay does; stop at an error or after `wait` seconds."""
    request = chat(stream=True, stream_options={"include_usage": True}, temperature=0.5)
    sent = ADAPTER.chat_request(request, MODEL, "sk-test")
    stream = ADAPTER.chat_stream(request, MODEL)
    events: list[dict[str, Any]] = []
    with trio.move_on_after(wait):
        async with (
            httpx.AsyncClient() as http,
            http.stream("POST", fake.url + sent.path, headers=sent.headers, content=sent.body) as r,
        ):
            raw = r.aiter_raw()
            try:
                async for piece in raw:
                    events += stream.feed(piece)
                    if stream.state.error is not None:
                        break
                events += stream.finish()
            except httpx.RemoteProtocolError:
                stream.state.error = UpstreamError("the upstream connection failed mid-stream")
            finally:
                await raw.aclose()
    return stream, chunks(events)


async def test_adapter_round_trip_through_the_fake(fake: FakeAnthropic) -> None:
    completion = await complete(fake, tools=[WEATHER], temperature=0.5)
    data = orjson.loads(orjson.dumps(completion.data))
    ChatCompletion.model_validate(data)
    function = data["choices"][0]["message"]["tool_calls"][0]["function"]
    assert function == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert completion.usage == Usage(17, 9, cached_tokens=4, cache_write_tokens=2)
    assert fake.headers[0]["x-api-key"] == "sk-test" and fake.requests[0]["temperature"] == 0.5
    fake.status = 529
    with pytest.raises(UpstreamUnavailable, match="anthropic is unavailable: fake failure 529"):
        await complete(fake)


@pytest.mark.parametrize(("knob", "value", "error", "said"), [
    (None, None, None, "Hello from the fake Claude."),
    ("stop_reason", "max_tokens", None, "Hello from the fake Claude."),
    ("error_event_after", 2, "anthropic is unavailable: Overloaded", "Hello from"),
    ("malformed_after", 2, "anthropic sent a malformed stream event", "Hello from"),
    ("reset_mid_stream_after", 3, "the upstream connection failed mid-stream", "Hello from the"),
    ("hang_mid_stream_after", 2, None, "Hello from"),
    ("hang_before_headers", True, None, "")])  # fmt: skip
async def test_streams_through_the_fake(
    fake: FakeAnthropic, knob: str | None, value: Any, error: str | None, said: str
) -> None:
    if knob:
        setattr(fake, knob, value)
    start = trio.current_time()
    stream, parsed = await relay(fake, wait=1.0)
    state = stream.state
    assert (state.error.message if state.error else None, state.output_text) == (error, said)
    finished = knob in (None, "stop_reason")
    assert state.done is finished and (trio.current_time() - start >= 1.0) is ("hang" in str(knob))
    if finished:
        finish = "length" if knob else "stop"
        assert deltas(parsed[:-1])[-1] == ({}, finish) and parsed[-1]["usage"]["total_tokens"] == 23
        assert state.usage == Usage(17, 6, 4, cache_write_tokens=2)
    if knob == "reset_mid_stream_after":
        assert (fake.stream_ends[-1].completed, fake.stream_ends[-1].chunks_sent) == (False, 3)
