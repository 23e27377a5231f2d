"""A fake OpenAI upstream: a real HTTP server on 127.0.0.1 speaking OpenAI's wire format.

It serves `POST /v1/chat/completions` and `POST /v1/embeddings` (deterministic
vectors from `embedding_vectors`, in float or base64, with the usage it bills).

Tests steer it through attributes (`status`, `chunk_delay`, `send_usage`, ...)
and read what it saw (`requests`) and when a stream it was sending was cut
(`stream_ends`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import trio
from quart import Response, request
from quart_trio import QuartTrio

from tests.fakes import embedding_vectors as vectors
from tests.fakes.serving import FakeServer

MID_STREAM_ERROR = {
    "error": {"message": "fake mid-stream failure", "type": "server_error", "code": 500}
}
WORDS = ["Hello", " from", " the", " fake", " upstream", "."]
# The request fields OpenAI's chat completions accept; with `strict`, others are refused.
KNOWN_FIELDS = frozenset(
    [
        "messages",
        "model",
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "metadata",
        "modalities",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
        "web_search_options",
    ]
)

EMBEDDING_FIELDS = frozenset(["input", "model", "dimensions", "encoding_format", "user"])


@dataclass
class StreamEnd:
    at: float  # trio clock
    completed: bool
    chunks_sent: int


@dataclass
class FakeOpenAI(FakeServer):
    """Behaviour knobs and a record of traffic."""

    status: int = 200
    error_body: dict[str, Any] | None = None
    retry_after: str | None = None
    chunk_delay: float = 0.0
    words: list[str] = field(default_factory=lambda: list(WORDS))
    send_usage: bool = True
    prompt_tokens: int = 11
    fail_mid_stream_after: int | None = None  # send an error event after N content chunks
    huge_content: int = 0  # stream one content event this many bytes long, in 4 KB writes
    hang_before_headers: bool = False  # never answer
    release: trio.Event | None = None  # streams pause after their first word until it is set
    think_seconds: float = 0.0  # wait this long before a non-streaming answer
    cancelled: list[float] = field(default_factory=list)  # trio clock, when a wait was cut
    strict: bool = False  # refuse unknown fields as OpenAI does
    tpm_limit: int | None = None  # a request body over this many bytes is "too large" (429)
    reasoning: list[str] = field(default_factory=list)  # DeepSeek-style reasoning_content deltas
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    stream_ends: list[StreamEnd] = field(default_factory=list)
    url: str = ""
    _shutdown: trio.Event = field(default_factory=trio.Event)

    def app(self) -> QuartTrio:
        app = QuartTrio("fake-openai")
        app.config["RESPONSE_TIMEOUT"] = None

        @app.post("/v1/chat/completions")
        async def chat() -> Response:
            body = orjson.loads(await request.get_data())
            self.requests.append(body)
            self.headers.append({k.lower(): v for k, v in request.headers.items()})
            try:
                if self.hang_before_headers:
                    await trio.sleep_forever()
                if not body.get("stream"):
                    await trio.sleep(self.think_seconds)
            except trio.Cancelled:
                self.cancelled.append(trio.current_time())
                raise
            refusal = self._refusal(body)
            if refusal is not None:
                return refusal
            if self.status != 200:
                headers = {"retry-after": self.retry_after} if self.retry_after else {}
                error = self.error_body or {
                    "error": {"message": f"fake failure {self.status}", "type": "server_error"}
                }
                return Response(
                    orjson.dumps(error),
                    status=self.status,
                    headers=headers,
                    content_type="application/json",
                )
            if body.get("stream") and self.huge_content:
                response = Response(self._huge(body), content_type="text/event-stream")
                response.timeout = None
                return response
            if body.get("stream"):
                response = Response(self._stream(body), content_type="text/event-stream")
                response.timeout = None
                return response
            return Response(orjson.dumps(self._completion(body)), content_type="application/json")

        @app.post("/v1/embeddings")
        async def embeddings() -> Response:
            body = orjson.loads(await request.get_data())
            self.requests.append(body)
            self.headers.append({k.lower(): v for k, v in request.headers.items()})
            try:
                await trio.sleep(self.think_seconds)
            except trio.Cancelled:
                self.cancelled.append(trio.current_time())
                raise
            if self.status != 200:
                error = self.error_body or {
                    "error": {"message": f"fake failure {self.status}", "type": "server_error"}
                }
                return _json(error, self.status)
            return self._embeddings(body)

        return app

    # -- embeddings ------------------------------------------------------------------------
    def _embeddings(self, body: dict[str, Any]) -> Response:
        """OpenAI's answer: vectors in the asked encoding, usage as it bills it."""
        unknown = sorted(set(body) - EMBEDDING_FIELDS) if self.strict else []
        if unknown:
            message = f"Unrecognized request argument supplied: {unknown[0]}"
            return _json({"error": {"message": message, "type": "invalid_request_error"}}, 400)
        items = vectors.inputs(body["input"])
        data = []
        for i, item in enumerate(items):
            values = vectors.vector(item, body.get("dimensions"))
            embedding = (
                vectors.as_base64(values) if body.get("encoding_format") == "base64" else values
            )
            data.append({"object": "embedding", "index": i, "embedding": embedding})
        answer: dict[str, Any] = {"object": "list", "data": data, "model": body["model"]}
        if self.send_usage:
            used = sum(vectors.tokens(item) for item in items)
            answer["usage"] = {"prompt_tokens": used, "total_tokens": used}
        return _json(answer, 200)

    def _refusal(self, body: dict[str, Any]) -> Response | None:
        """OpenAI's own words for an unknown field and for a request over the TPM limit."""
        unknown = sorted(set(body) - KNOWN_FIELDS) if self.strict else []
        if unknown:
            message = f"Unrecognized request argument supplied: {unknown[0]}"
            error = {"message": message, "type": "invalid_request_error", "param": None}
            return _json({"error": {**error, "code": None}}, 400)
        size = len(orjson.dumps(body))
        if self.tpm_limit is not None and size > self.tpm_limit:
            message = (
                f"Request too large for {body['model']} in organization org-FAKE0rg on tokens "
                f"per min (TPM): Limit {self.tpm_limit}, Requested {size}. The input or output "
                "tokens must be reduced in order to run successfully. Visit "
                "https://platform.openai.com/account/rate-limits to learn more."
            )
            error = {"message": message, "type": "tokens", "param": None}
            return _json({"error": {**error, "code": "rate_limit_exceeded"}}, 429)
        return None

    # -- responses -------------------------------------------------------------------------
    def _choices_count(self, body: dict[str, Any]) -> int:
        return int(body.get("n") or 1)

    def _wants_tool_call(self, body: dict[str, Any]) -> bool:
        last = body["messages"][-1]
        return bool(body.get("tools")) and last.get("role") != "tool"

    def _tool_call(self, body: dict[str, Any]) -> dict[str, Any]:
        function = body["tools"][0]["function"]
        return {
            "id": "call_fake_1",
            "type": "function",
            "function": {"name": function["name"], "arguments": '{"city": "Paris"}'},
        }

    def _reply_text(self, body: dict[str, Any]) -> str:
        last = body["messages"][-1]
        if last.get("role") == "tool":
            return f"The tool said: {last.get('content')}"
        return "".join(self.words)

    def _usage(self, completion_tokens: int) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
        }

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        choices = []
        for i in range(self._choices_count(body)):
            if self._wants_tool_call(body):
                message = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [self._tool_call(body)],
                }
                finish = "tool_calls"
            else:
                message = {
                    "role": "assistant",
                    "content": self._reply_text(body) + (f" #{i}" if i else ""),
                }
                finish = "stop"
            choices.append(
                {"index": i, "message": message, "logprobs": None, "finish_reason": finish}
            )
        data: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"] + "-2024-07-18",
            "choices": choices,
            "system_fingerprint": "fp_fake",
        }
        if self.send_usage:
            data["usage"] = self._usage(7 * len(choices))
        return data

    def _chunk(self, body: dict[str, Any], choices: list[Any], **extra: Any) -> bytes:
        data = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": body["model"] + "-2024-07-18",
            "system_fingerprint": "fp_fake",
            "choices": choices,
            **extra,
        }
        return b"data: " + orjson.dumps(data) + b"\n\n"

    async def _huge(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        """One event with `huge_content` bytes of text (an inline image's worth), in small
        writes, then a normal end."""
        delta = {"index": 0, "delta": {"content": "x" * self.huge_content}, "finish_reason": None}
        event = self._chunk(body, [delta])
        for start in range(0, len(event), 4096):
            yield event[start : start + 4096]
        yield self._chunk(body, [{"index": 0, "delta": {}, "finish_reason": "stop"}])
        yield self._chunk(body, [], usage=self._usage(3))
        yield b"data: [DONE]\n\n"

    async def _stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        usage_null = {"usage": None} if include_usage else {}
        sent = 0
        completed = False
        try:
            n = self._choices_count(body)
            yield self._chunk(
                body,
                [
                    {
                        "index": i,
                        "delta": {"role": "assistant", "content": ""},
                        "finish_reason": None,
                    }
                    for i in range(n)
                ],
                **usage_null,
            )
            if self._wants_tool_call(body):
                call = self._tool_call(body)
                head = {
                    "index": 0,
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["function"]["name"], "arguments": ""},
                }
                yield self._chunk(
                    body,
                    [{"index": 0, "delta": {"tool_calls": [head]}, "finish_reason": None}],
                    **usage_null,
                )
                for piece in ('{"city"', ': "Paris"}'):
                    await trio.sleep(self.chunk_delay)
                    yield self._chunk(
                        body,
                        [
                            {
                                "index": 0,
                                "delta": {
                                    "tool_calls": [{"index": 0, "function": {"arguments": piece}}]
                                },
                                "finish_reason": None,
                            }
                        ],
                        **usage_null,
                    )
                    sent += 1
                finish = "tool_calls"
            else:
                for thought in self.reasoning:
                    yield self._chunk(
                        body,
                        [
                            {
                                "index": i,
                                "delta": {"reasoning_content": thought},
                                "finish_reason": None,
                            }
                            for i in range(n)
                        ],
                        **usage_null,
                    )
                for word in self.words:
                    if (
                        self.fail_mid_stream_after is not None
                        and sent >= self.fail_mid_stream_after
                    ):
                        yield b"data: " + orjson.dumps(MID_STREAM_ERROR) + b"\n\n"
                        return
                    if self.release is not None and sent == 1:
                        await self.release.wait()
                    await trio.sleep(self.chunk_delay)
                    yield self._chunk(
                        body,
                        [
                            {"index": i, "delta": {"content": word}, "finish_reason": None}
                            for i in range(n)
                        ],
                        **usage_null,
                    )
                    sent += 1
                finish = "stop"
            yield self._chunk(
                body,
                [{"index": i, "delta": {}, "finish_reason": finish} for i in range(n)],
                **usage_null,
            )
            if include_usage and self.send_usage:
                yield self._chunk(body, [], usage=self._usage(sent * n))
            yield b"data: [DONE]\n\n"
            completed = True
        finally:
            self.stream_ends.append(StreamEnd(trio.current_time(), completed, sent))


def _json(data: dict[str, Any], status: int) -> Response:
    return Response(orjson.dumps(data), status=status, content_type="application/json")
