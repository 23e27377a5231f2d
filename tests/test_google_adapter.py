"""The Gemini adapter: OpenAI chat in, Gemini's wire format out, and back.

Translation is held to both vocabularies: request pieces must validate as the
google-genai SDK's types (which forbid unknown fields), replies as openai's
ChatCompletion / ChatCompletionChunk. The fake upstream is held to the real
format by the SDK's GenerateContentResponse and by the SDK's own client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2 as httpx
import orjson
import pytest
import trio
from google import genai
from google.genai import types as gtypes
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from proxy.core.chat import Usage, parse_chat_request
from proxy.core.errors import BadRequest, GatewayError, RateLimited, UpstreamError
from proxy.core.model import Model, Price, Rates
from proxy.core.sse import Decoder
from proxy.providers.base import error_message
from proxy.providers.google import SKIP_SIGNATURE, GoogleAdapter
from proxy.providers.stream import StreamState
from tests.fakes.gemini_upstream import SIGNATURE, FakeGemini
from tests.wire import wire

MODEL = Model("google/gemini-2.5-flash", "google", "gemini-2.5-flash", Price(Rates()), None)
ADAPTER = GoogleAdapter("google")
HI = [{"role": "user", "content": "hi"}]
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}
Chunks = list[ChatCompletionChunk]


def fcall(name: str, args: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"functionCall": {"name": name, "args": args}, **extra}


def cand(*parts: dict[str, Any], finish: str | None = None, index: int = 0) -> dict[str, Any]:
    found: dict[str, Any] = {"content": {"role": "model", "parts": list(parts)}, "index": index}
    return found | ({"finishReason": finish} if finish else {})


def chat(messages: list[Any], stream: bool = False, usage: bool = False, **extra: Any) -> Any:
    options = {"stream_options": {"include_usage": True}} if usage else {}
    body = {"model": MODEL.id, "messages": messages, "stream": stream, **options, **extra}
    return parse_chat_request(body)


def gemini_request(messages: list[Any], **extra: Any) -> dict[str, Any]:
    """The adapter's request body, each piece validated as the SDK's types."""
    body: dict[str, Any] = orjson.loads(
        ADAPTER.chat_request(chat(messages, **extra), MODEL, "k").body
    )
    for content in [*body["contents"], body.get("systemInstruction", {})]:
        gtypes.Content.model_validate(content)
    for tool in body.get("tools", ()):
        gtypes.Tool.model_validate(tool)
    gtypes.ToolConfig.model_validate(body.get("toolConfig", {}))
    gtypes.GenerationConfig.model_validate(body.get("generationConfig", {}))
    assert set(body) <= {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig"}
    return body


def completion(body: bytes) -> tuple[ChatCompletion, Usage | None, str]:
    done = ADAPTER.chat_response(body, MODEL)
    parsed = ChatCompletion.model_validate(orjson.loads(orjson.dumps(done.data)))
    assert parsed.model == MODEL.id and parsed.object == "chat.completion"
    return parsed, done.usage, done.output_text


def response(*parts: dict[str, Any], finish: str = "STOP", **extra: Any) -> bytes:
    return orjson.dumps({"candidates": [cand(*parts, finish=finish)], "responseId": "r1", **extra})


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(e) + b"\r\n\r\n" for e in events)


def decode(translated: list[dict[str, Any]]) -> Chunks:
    """Client events, each one whole `data:` event and a valid OpenAI chunk."""
    out = wire(translated)
    events = [e for piece in out for e in Decoder().feed(piece)]
    assert len(events) == len(out) and all(piece.endswith(b"\n\n") for piece in out)
    chunks = [ChatCompletionChunk.model_validate(orjson.loads(e.data)) for e in events]
    assert all(c.model == MODEL.id and c.object == "chat.completion.chunk" for c in chunks)
    return chunks


def translate(raw: bytes, include_usage: bool = False, size: int = 0) -> tuple[Chunks, StreamState]:
    """Feed raw SSE in `size`-byte pieces (0: all at once)."""
    stream = ADAPTER.chat_stream(chat(HI, stream=True, usage=include_usage), MODEL)
    size = size or len(raw)
    out = [e for start in range(0, len(raw), size) for e in stream.feed(raw[start : start + size])]
    if stream.state.error is None:
        out += stream.finish()
    return decode(out), stream.state


def texts(chunks: Chunks) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# -- requests --------------------------------------------------------------------------------


def test_request_path_headers_and_key() -> None:
    sent = ADAPTER.chat_request(chat(HI), MODEL, "secret")
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == "secret"
    assert sent.headers["accept-encoding"] == "identity"
    assert sent.headers["content-type"] == "application/json"
    keyless = ADAPTER.chat_request(chat(HI, stream=True), MODEL, None)
    assert keyless.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert "x-goog-api-key" not in keyless.headers
    lowered = ADAPTER.chat_request(chat(HI).with_limit(100), MODEL, None)  # a budget's limit
    assert orjson.loads(lowered.body)["generationConfig"]["maxOutputTokens"] == 100


def test_system_messages_and_merged_turns() -> None:
    body = gemini_request(
        [
            {"role": "system", "content": "Be terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
            {"role": "user", "content": "one"},
            {"role": "user", "content": [{"type": "text", "text": "two"}]},
            {"role": "assistant", "content": "un deux"},
            {"role": "assistant", "content": [{"type": "text", "text": "trois"}]},
            {"role": "user", "content": "four"},
        ]
    )
    assert body["systemInstruction"] == {"parts": [{"text": "Be terse."}, {"text": "Use French."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "one"}, {"text": "two"}]},
        {"role": "model", "parts": [{"text": "un deux"}, {"text": "trois"}]},
        {"role": "user", "parts": [{"text": "four"}]},
    ]


def inline(mime: str, data: str) -> dict[str, Any]:
    return {"inlineData": {"mimeType": mime, "data": data}}


def image(url: Any) -> dict[str, Any]:
    return {"type": "image_url", "image_url": url}


def linked(mime: str, uri: str) -> dict[str, Any]:
    return {"fileData": {"mimeType": mime, "fileUri": uri}}


AUDIO = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "mp3"}}
PDF = {"type": "file", "file": {"file_data": "JVBERi0=", "filename": "a.pdf"}}


@pytest.mark.parametrize(
    ("part", "expected"),
    [
        (image({"url": "data:image/png;base64,iVBORw0K"}), inline("image/png", "iVBORw0K")),
        (image({"url": "data:text/plain,hi%20there"}), inline("text/plain", "aGkgdGhlcmU=")),
        (
            image({"url": "https://x.test/a.WEBP?s=1"}),
            linked("image/webp", "https://x.test/a.WEBP?s=1"),
        ),
        (image("https://x.test/picture"), linked("image/jpeg", "https://x.test/picture")),
        (AUDIO, inline("audio/mp3", "UklGRg==")),
        (PDF, inline("application/pdf", "JVBERi0=")),
    ],
)
def test_media_parts(part: dict[str, Any], expected: dict[str, Any]) -> None:
    body = gemini_request([{"role": "user", "content": [{"type": "text", "text": "see"}, part]}])
    assert body["contents"] == [{"role": "user", "parts": [{"text": "see"}, expected]}]


def tool_call(call_id: str, name: str, arguments: str, **extra: Any) -> dict[str, Any]:
    function = {"name": name, "arguments": arguments}
    return {"id": call_id, "type": "function", "function": function, **extra}


def test_function_call_round_trip_resolves_names_from_ids() -> None:
    signed = {"extra_content": {"google": {"thought_signature": SIGNATURE}}}
    body = gemini_request(
        [
            {"role": "user", "content": "weather and time?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    tool_call("call_a", "get_weather", '{"city": "Paris"}', **signed),
                    tool_call("call_b", "get_time", ""),
                ],
            },
            {"role": "tool", "tool_call_id": "call_b", "content": "noon"},
            {"role": "tool", "tool_call_id": "call_a", "content": '{"temp": 21}'},
            {"role": "assistant", "tool_calls": [tool_call("call_c", "get_time", "{}")]},
            {"role": "tool", "tool_call_id": "call_c", "content": [{"type": "text", "text": "1"}]},
        ],
        tools=[WEATHER],
    )

    def answer(name: str, content: Any) -> dict[str, Any]:
        return {"functionResponse": {"name": name, "response": {"content": content}}}

    paris = fcall("get_weather", {"city": "Paris"}, thoughtSignature=SIGNATURE)
    unsigned = fcall("get_time", {}, thoughtSignature=SKIP_SIGNATURE)
    assert body["contents"][1:] == [
        {"role": "model", "parts": [paris, fcall("get_time", {})]},
        {
            "role": "user",
            "parts": [answer("get_time", "noon"), answer("get_weather", {"temp": 21})],
        },
        {"role": "model", "parts": [unsigned]},
        {"role": "user", "parts": [answer("get_time", 1)]},
    ]
    declarations = body["tools"][0]["functionDeclarations"]
    assert declarations == [{"name": "get_weather", "parametersJsonSchema": SCHEMA}]


@pytest.mark.parametrize(
    ("message", "param"),
    [
        (
            {"role": "assistant", "tool_calls": [tool_call("c", "f", "{nope")]},
            "messages[0].tool_calls[0].function.arguments",
        ),
        ({"role": "tool", "tool_call_id": "missing", "content": "x"}, "messages[0].tool_call_id"),
        ({"role": "user", "content": [{"type": "video", "video": {}}]}, "messages[0].content[0]"),
        ({"role": "user", "content": [image("ftp://x/a.png")]}, "messages[0].content[0]"),
    ],
)
def test_bad_requests_name_the_field(message: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as caught:
        gemini_request([message])
    assert caught.value.param == param


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
    ],
)
def test_tool_choice(choice: Any, config: dict[str, Any]) -> None:
    body = gemini_request(HI, tools=[WEATHER], tool_choice=choice)
    assert body["toolConfig"] == {"functionCallingConfig": config}


@pytest.mark.parametrize(
    ("options", "config"),
    [
        ({"user": "u", "logit_bias": {"1": 2}, "parallel_tool_calls": True}, None),
        (
            {"temperature": 0.2, "top_p": 0.9, "seed": 7, "n": 2, "max_tokens": 50},
            {
                "temperature": 0.2,
                "topP": 0.9,
                "seed": 7,
                "candidateCount": 2,
                "maxOutputTokens": 50,
            },
        ),
        ({"max_completion_tokens": 30, "max_tokens": 99}, {"maxOutputTokens": 30}),
        ({"stop": "END"}, {"stopSequences": ["END"]}),
        ({"stop": ["a", "b"]}, {"stopSequences": ["a", "b"]}),
        ({"presence_penalty": 0.5, "frequency_penalty": 0}, {"presencePenalty": 0.5}),
        ({"response_format": {"type": "text"}}, None),
        ({"response_format": {"type": "json_object"}}, {"responseMimeType": "application/json"}),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "w", "schema": SCHEMA},
                }
            },
            {"responseMimeType": "application/json", "responseJsonSchema": SCHEMA},
        ),
    ],
)
def test_generation_config(options: dict[str, Any], config: dict[str, Any] | None) -> None:
    assert gemini_request(HI, **options).get("generationConfig") == config


# -- responses -------------------------------------------------------------------------------


def test_text_response_and_usage_with_thoughts_and_cache() -> None:
    meta = {"promptTokenCount": 100, "candidatesTokenCount": 7, "thoughtsTokenCount": 30}
    meta |= {"cachedContentTokenCount": 64, "totalTokenCount": 137}
    thought = {"text": "planning", "thought": True}
    parsed, usage, text = completion(
        response(thought, {"text": "Hi"}, {"text": " you"}, usageMetadata=meta)
    )
    choice = parsed.choices[0]
    assert parsed.id == "chatcmpl-r1" and choice.message.content == "Hi you" and text == "Hi you"
    assert choice.finish_reason == "stop" and choice.message.tool_calls is None
    assert usage == Usage(100, 37, cached_tokens=64)
    assert parsed.usage is not None and parsed.usage.total_tokens == 137
    assert parsed.usage.prompt_tokens_details.cached_tokens == 64  # type: ignore[union-attr]
    assert parsed.usage.completion_tokens_details.reasoning_tokens == 30  # type: ignore[union-attr]


def test_function_call_response() -> None:
    parts = [
        fcall("get_weather", {"city": "Paris"}, thoughtSignature="c2ln"),
        fcall("get_time", {}),
    ]
    parts[1]["functionCall"]["id"] = "fc-9"
    parsed, usage, _ = completion(response(*parts))
    message = parsed.choices[0].message
    assert message.content is None and parsed.choices[0].finish_reason == "tool_calls"
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or []] == [  # type: ignore[union-attr]
        ("call_0", "get_weather", '{"city":"Paris"}'),
        ("fc-9", "get_time", "{}"),
    ]
    signature = (message.tool_calls or [])[0].model_extra
    assert signature == {"extra_content": {"google": {"thought_signature": "c2ln"}}}
    assert usage is None


@pytest.mark.parametrize(
    ("reason", "expected"),
    [("STOP", "stop"), ("MAX_TOKENS", "length"), ("OTHER", "stop")]
    + [
        (r, "content_filter")
        for r in ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII")
    ],
)
def test_finish_reasons(reason: str, expected: str) -> None:
    parsed, _, _ = completion(response({"text": "x"}, finish=reason))
    assert parsed.choices[0].finish_reason == expected


@pytest.mark.parametrize(
    ("body", "error", "words"),
    [
        (
            b'{"promptFeedback": {"blockReason": "SAFETY"}}',
            BadRequest,
            "google blocked the prompt (SAFETY)",
        ),
        (b"<html>502</html>", UpstreamError, "google sent a response that is not JSON"),
        (
            b'{"error": {"code": 500, "message": "boom", "status": "INTERNAL"}}',
            UpstreamError,
            "boom",
        ),
        (b'{"candidates": []}', UpstreamError, "without candidates"),
    ],
)
def test_failed_responses(body: bytes, error: type[GatewayError], words: str) -> None:
    with pytest.raises(error) as caught:
        ADAPTER.chat_response(body, MODEL)
    assert type(caught.value) is error and words in caught.value.message


def test_error_message() -> None:
    envelope = {"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}
    assert error_message(orjson.dumps(envelope)) == "Quota exceeded"
    assert error_message(orjson.dumps([envelope])) == "Quota exceeded"
    assert error_message(b"  upstream exploded  ") == "upstream exploded"
    assert error_message(b"") is None


# -- streams ---------------------------------------------------------------------------------

META = {"promptTokenCount": 9, "candidatesTokenCount": 4, "thoughtsTokenCount": 2}
RECORDED = (  # as Gemini sends it: CRLF framing, partial usage on every event
    b'data: {"candidates": [{"content": {"parts": [{"text": "Bon"}],"role": "model"},"index": 0}],'
    b'"usageMetadata": {"promptTokenCount": 9,"totalTokenCount": 9},'
    b'"modelVersion": "gemini-2.5-flash","responseId": "abc"}\r\n\r\n'
    b'data: {"candidates": [{"content": {"parts": [{"text": "jour \xc3\xa0 "},{"text": "tous"}],'
    b'"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 9,"totalTokenCount": 9},'
    b'"modelVersion": "gemini-2.5-flash","responseId": "abc"}\r\n\r\n'
    + sse({"candidates": [cand({"text": "!"}, finish="STOP")], "usageMetadata": META})
)


@pytest.mark.parametrize("size", [0, 1, 7, 64])
@pytest.mark.parametrize("include_usage", [False, True])
def test_stream_text(size: int, include_usage: bool) -> None:
    chunks, state = translate(RECORDED, include_usage, size)
    assert (chunks[0].choices[0].delta.role, chunks[0].choices[0].delta.content) == (
        "assistant",
        "",
    )
    assert texts(chunks) == "Bonjour à tous!" and {c.id for c in chunks} == {"chatcmpl-abc"}
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert usage_chunks == ([chunks[-1]] if include_usage else [])
    if include_usage:
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (9, 6)
    assert state.usage == Usage(9, 6) and state.done and state.content_sent and state.error is None
    assert state.output_text == "Bonjour à tous!"


def test_stream_function_calls() -> None:
    call = fcall("get_weather", {"city": "Paris"}, thoughtSignature="c2ln")
    raw = sse(
        {"candidates": [cand(call, fcall("get_time", {}))]}, {"candidates": [cand(finish="STOP")]}
    )
    chunks, state = translate(raw)
    calls = [t for c in chunks for t in c.choices[0].delta.tool_calls or []]
    assert [(t.index, t.id, t.type, t.function.name, t.function.arguments) for t in calls] == [  # type: ignore[union-attr]
        (0, "call_0", "function", "get_weather", '{"city":"Paris"}'),
        (1, "call_1", "function", "get_time", "{}"),
    ]
    assert calls[0].model_extra == {"extra_content": {"google": {"thought_signature": "c2ln"}}}
    assert chunks[-1].choices[0].finish_reason == "tool_calls" and state.done and state.content_sent


def test_stream_several_candidates() -> None:
    both = [cand({"text": f"c{i}"}, finish="MAX_TOKENS", index=i) for i in (0, 1)]
    chunks, _ = translate(sse({"candidates": both}))
    for i in (0, 1):
        choices = [c.choices[0] for c in chunks if c.choices[0].index == i]
        assert choices[0].delta.role == "assistant" and choices[-1].finish_reason == "length"
        assert "".join(c.delta.content or "" for c in choices) == f"c{i}"


@pytest.mark.parametrize(
    ("bad", "error", "words"),
    [
        (b'data: {"candidates": [{"content": \r\n\r\n', UpstreamError, "google sent a malformed"),
        (b'data: ["not", "an", "object"]\r\n\r\n', UpstreamError, "google sent a malformed"),
        (
            sse({"error": {"code": 500, "message": "oops"}}),
            UpstreamError,
            "google failed with HTTP 500: oops",
        ),
        (sse({"error": {"status": "RESOURCE_EXHAUSTED"}}), RateLimited, "google is rate limiting"),
        (
            sse({"promptFeedback": {"blockReason": "SPII"}}),
            BadRequest,
            "google blocked the prompt (SPII)",
        ),
    ],
)
def test_stream_failures_stop_the_stream(bad: bytes, error: type[GatewayError], words: str) -> None:
    first = sse({"candidates": [cand({"text": "Hi"})]})
    chunks, state = translate(first + bad + first, include_usage=True)
    assert [c.choices[0].delta.content for c in chunks] == ["", "Hi"]  # nothing after the failure
    assert type(state.error) is error and words in state.error.message
    assert not state.done and state.output_text == "Hi"


# -- the fake speaks real Gemini -------------------------------------------------------------


@pytest.fixture
async def fake(nursery: trio.Nursery) -> AsyncIterator[FakeGemini]:
    fake = await nursery.start(FakeGemini(thoughts_tokens=3, cached_tokens=4).run)
    yield fake
    fake.stop()


def url(fake: FakeGemini, method: str) -> str:
    return f"{fake.url}/v1beta/models/gemini-2.5-flash:{method}"


async def post(fake: FakeGemini, method: str, body: Any, key: str | None = "k") -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as client:
        return await client.post(
            url(fake, method), json=body, headers={"x-goog-api-key": key or ""}
        )


def sdk(body: bytes) -> gtypes.GenerateContentResponse:
    return gtypes.GenerateContentResponse.model_validate(orjson.loads(body))


async def test_fake_generate_and_stream_validate_as_sdk_types(fake: FakeGemini) -> None:
    body = gemini_request(HI)
    reply = sdk((await post(fake, "generateContent", body)).content)
    assert reply.text == "Hello from the fake Gemini." and reply.response_id == "fake-response-1"
    assert reply.candidates and reply.candidates[0].finish_reason == gtypes.FinishReason.STOP
    meta = reply.usage_metadata
    assert meta and (meta.prompt_token_count, meta.candidates_token_count) == (11, 6)
    assert (meta.thoughts_token_count, meta.cached_content_token_count) == (3, 4)
    raw = (await post(fake, "streamGenerateContent?alt=sse", body)).content
    assert raw.endswith(b"}\r\n\r\n")
    events = [sdk(e.data.encode()) for e in Decoder().feed(raw)]
    assert len(events) == 6 and "".join(e.text or "" for e in events) == reply.text
    finishes = [e.candidates[0].finish_reason for e in events if e.candidates]
    assert finishes == [None] * 5 + [gtypes.FinishReason.STOP]
    assert events[-1].usage_metadata == meta
    methods = ("generateContent", "streamGenerateContent?alt=sse")
    assert fake.paths == [f"/v1beta/models/gemini-2.5-flash:{m}" for m in methods]
    assert fake.requests == [body, body] and fake.headers[0]["x-goog-api-key"] == "k"


async def test_fake_function_call_round_trip_through_the_adapter(fake: FakeGemini) -> None:
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    first = gemini_request(ask, tools=[WEATHER])
    raw = (await post(fake, "generateContent", first)).content
    calls = sdk(raw).function_calls
    assert calls and (calls[0].name, calls[0].args) == ("get_weather", {"city": "Paris"})
    streamed = (await post(fake, "streamGenerateContent?alt=sse", first)).content
    assert [sdk(e.data.encode()).function_calls for e in Decoder().feed(streamed)] == [calls]
    functions = [
        t.function for c in translate(streamed)[0] for t in c.choices[0].delta.tool_calls or []
    ]
    assert [(f.name, f.arguments) for f in functions] == [("get_weather", '{"city":"Paris"}')]  # type: ignore[union-attr]
    message = ADAPTER.chat_response(raw, MODEL).data["choices"][0]["message"]
    call_id = message["tool_calls"][0]["id"]
    result = {"role": "tool", "tool_call_id": call_id, "content": '{"c": 21}'}
    follow_up = gemini_request([*ask, message, result], tools=[WEATHER])
    reply = sdk((await post(fake, "generateContent", follow_up)).content)
    assert reply.text == 'The tool said: {"content":{"c":21}}'
    assert fake.requests[-1]["contents"][1]["parts"][0]["thoughtSignature"] == SIGNATURE


async def test_official_sdk_client_reads_the_fake(fake: FakeGemini) -> None:
    def talk() -> tuple[str, list[str], genai.errors.APIError]:
        options = {"base_url": fake.url, "api_version": "v1beta", "retry_options": {"attempts": 1}}
        with genai.Client(api_key="k", http_options=options) as client:  # type: ignore[arg-type]
            text = client.models.generate_content(model="gemini-2.5-flash", contents="hi").text
            stream = client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi")
            pieces = [chunk.text or "" for chunk in stream]
            fake.status = 429
            with pytest.raises(genai.errors.APIError) as caught:
                client.models.generate_content(model="gemini-2.5-flash", contents="hi")
        return text or "", pieces, caught.value

    text, pieces, error = await trio.to_thread.run_sync(talk)
    assert text == "".join(pieces) == "Hello from the fake Gemini." and len(pieces) == 6
    assert (error.code, error.status) == (429, "RESOURCE_EXHAUSTED")


@pytest.mark.parametrize(("status", "key"), [(429, "k"), (503, "k"), (200, None)])
async def test_fake_errors_use_googles_envelope(
    fake: FakeGemini, status: int, key: str | None
) -> None:
    fake.status, fake.retry_after = status, "7"
    reply = await post(fake, "generateContent", gemini_request(HI), key)
    error, code = reply.json()["error"], status if key else 401
    assert reply.status_code == error["code"] == code and error["message"]
    names = {429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE", 401: "UNAUTHENTICATED"}
    assert error["status"] == names[code] and error_message(reply.content) == error["message"]
    gateway = ADAPTER.error(code, reply.content, reply.headers.get("retry-after"))
    if code == 429:
        assert isinstance(gateway, RateLimited) and gateway.headers == {"Retry-After": "7"}
    # the operator's key and quota stay private; the operator reads the words in the detail
    assert (error["message"] in gateway.message) == (code == 503)
    assert gateway.detail is not None and error["message"] in gateway.detail


async def stream_through(fake: FakeGemini, wait: float = 5) -> tuple[Chunks, StreamState, str]:
    """The adapter's stream request to the fake, raw bytes fed to its translator."""
    request = chat(HI, stream=True, usage=True)
    sent = ADAPTER.chat_request(request, MODEL, "k")
    translator = ADAPTER.chat_stream(request, MODEL)
    out: list[dict[str, Any]] = []
    ended = "done"
    async with httpx.AsyncClient(timeout=wait) as client:
        try:
            async with client.stream(
                "POST", fake.url + sent.path, content=sent.body, headers=sent.headers
            ) as reply:
                async for piece in reply.aiter_raw():
                    out += translator.feed(piece)
            out += translator.finish()
        except httpx.HTTPError as exc:
            ended = type(exc).__name__
    return decode(out), translator.state, ended


@pytest.mark.parametrize(
    ("knobs", "words", "finish", "ended"),
    [
        ({}, "Hello from the fake Gemini.", "stop", "done"),
        (
            {"finish_reason": "MAX_TOKENS", "chunk_delay": 0.01},
            "Hello from the fake Gemini.",
            "length",
            "done",
        ),
        ({"malformed_after": 2}, "Hello from", None, "done"),
        ({"reset_mid_stream_after": 3}, "Hello from the", None, "RemoteProtocolError"),
        ({"hang_mid_stream_after": 1}, "Hello", None, "ReadTimeout"),
        ({"hang_before_headers": True}, "", None, "ReadTimeout"),
    ],
)
async def test_adapter_streams_from_the_fake(
    fake: FakeGemini, knobs: dict[str, Any], words: str, finish: str | None, ended: str
) -> None:
    for name, value in knobs.items():
        setattr(fake, name, value)
    chunks, state, how = await stream_through(fake, wait=0.5)
    assert (texts(chunks), how) == (words, ended)
    last = [c.choices[0].finish_reason for c in chunks if c.choices][-1:]
    assert last == ([finish] if finish else [None] if words else [])
    assert (state.error is not None) == ("malformed_after" in knobs)
    if finish:
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6 + 3
        assert fake.stream_ends[-1].completed and fake.stream_ends[-1].chunks_sent == 6
