"""A fake Anthropic upstream: a real HTTP server on 127.0.0.1 speaking the Messages API.

Tests steer it through attributes (`status`, `stop_reason`, the `*_after` fault
knobs, ...) and read what it saw (`requests`, `headers`) and how each stream it
sent ended (`stream_ends`). Replies are plain text made of `words`, or a call of
the first tool when the request offers tools and does not end with a tool result.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import trio
from quart import Response, request
from quart_trio import QuartTrio

from tests.fakes.openai_upstream import StreamEnd
from tests.fakes.serving import FakeServer

WORDS = ["Hello", " from", " the", " fake", " Claude", "."]
TOOL_INPUT_PIECES = ["", '{"city"', ': "Paris"}']  # real streams open with an empty piece
API_VERSION_2023 = "2023-06-01"
SAMPLING_FIELDS = ("temperature", "top_p", "top_k")  # refused from version 2026-10-21 on
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


class FakeReset(Exception):
    """Raised inside a streaming body so the server drops the connection mid-response."""


def error_envelope(error_type: str, message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": "req_fake",
    }


def sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


@dataclass
class FakeAnthropic(FakeServer):
    """Behaviour knobs (faults all off by default) and a record of traffic."""

    words: list[str] = field(default_factory=lambda: list(WORDS))
    input_tokens: int = 11
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_hour_tokens: int = 0  # of the cache writes, those kept for an hour
    stop_reason: str | None = None  # overrides end_turn / tool_use
    api_key: str | None = None  # when set, the key sent (x-api-key or Bearer) must equal it
    status: int = 200
    error_type: str | None = None  # default: the type Anthropic sends with `status`
    error_message: str | None = None  # default: "fake failure <status>"
    retry_after: str | None = None
    hang_before_headers: bool = False
    hang_mid_stream_after: int | None = None  # go quiet after N deltas, connection open
    reset_mid_stream_after: int | None = None  # drop the connection after N deltas
    malformed_after: int | None = None  # a `data: {not json` event after N deltas
    error_event_after: int | None = None  # an overloaded_error event after N deltas
    end_early_after: int | None = None  # close the stream cleanly after N deltas, unfinished
    chunk_delay: float = 0.0
    counted_tokens: int = 1234  # what count_tokens answers
    calls_tools: bool = True  # call the first tool offered (off: always answer in words)
    tool_name: str | None = None  # call this tool instead, when it is offered ...
    tool_input: dict[str, Any] = field(default_factory=dict)  # ... with this input
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    count_requests: list[dict[str, Any]] = field(default_factory=list)
    stream_ends: list[StreamEnd] = field(default_factory=list)
    url: str = ""
    _shutdown: trio.Event = field(default_factory=trio.Event)

    def app(self) -> QuartTrio:
        app = QuartTrio("fake-anthropic")
        app.config["RESPONSE_TIMEOUT"] = None

        @app.post("/v1/messages")
        async def messages() -> Response:
            body = orjson.loads(await request.get_data())
            self.requests.append(body)
            headers = {k.lower(): v for k, v in request.headers.items()}
            self.headers.append(headers)
            if self.hang_before_headers:
                await trio.sleep_forever()
            refusal = self._refusal(body, headers)
            if refusal is not None:
                return refusal
            if self.status != 200:
                error_type = self.error_type or ERROR_TYPES.get(self.status, "api_error")
                message = self.error_message or f"fake failure {self.status}"
                return self._error(self.status, error_type, message)
            if body.get("stream"):
                response = Response(self._stream(body), content_type="text/event-stream")
                response.timeout = None
                return response
            return Response(orjson.dumps(self._message(body)), content_type="application/json")

        @app.post("/v1/messages/count_tokens")
        async def count_tokens() -> Response:
            body = orjson.loads(await request.get_data())
            self.count_requests.append(body)
            headers = {k.lower(): v for k, v in request.headers.items()}
            refusal = self._refusal(body, headers)
            if refusal is not None:
                return refusal
            if "max_tokens" in body:  # as the real endpoint says
                return self._error(
                    400, "invalid_request_error", "max_tokens: Extra inputs are not permitted"
                )
            if self.status != 200:
                error_type = self.error_type or ERROR_TYPES.get(self.status, "api_error")
                return self._error(self.status, error_type, f"fake failure {self.status}")
            answer = {"input_tokens": self.counted_tokens}
            return Response(orjson.dumps(answer), content_type="application/json")

        return app

    def _refusal(self, body: dict[str, Any], headers: dict[str, str]) -> Response | None:
        """What the real API says to a request without credentials or with removed fields."""
        bearer = headers.get("authorization", "").removeprefix("Bearer ")
        key = headers.get("x-api-key") or bearer  # SDK 2.x sends Bearer; x-api-key wins
        if not key or self.api_key not in (None, key):
            return self._error(401, "authentication_error", "invalid x-api-key")
        version = headers.get("anthropic-version")
        if not version:
            return self._error(
                400, "invalid_request_error", "anthropic-version: header is required"
            )
        removed = [f for f in SAMPLING_FIELDS if f in body and version != API_VERSION_2023]
        if removed:
            message = f"{removed[0]}: Extra inputs are not permitted"
            return self._error(400, "invalid_request_error", message)
        return None

    def _error(self, status: int, error_type: str, message: str) -> Response:
        headers = {"retry-after": self.retry_after} if self.retry_after else {}
        return Response(
            orjson.dumps(error_envelope(error_type, message)),
            status=status,
            headers=headers,
            content_type="application/json",
        )

    # -- replies ---------------------------------------------------------------------------
    def _wants_tool_call(self, body: dict[str, Any]) -> bool:
        offered = [t.get("name") for t in body.get("tools") or ()]
        wanted = offered and (self.tool_name is None or self.tool_name in offered)
        return self.calls_tools and bool(wanted) and not self._tool_results(body)

    def _tool_results(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        content = body["messages"][-1].get("content")
        blocks = content if isinstance(content, list) else []
        return [b for b in blocks if b.get("type") == "tool_result"]

    def _reply_text(self, body: dict[str, Any]) -> str:
        results = self._tool_results(body)
        if results:
            return f"The tool said: {results[-1].get('content')}"
        return "".join(self.words)

    def _usage(self, output_tokens: int) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_tokens,
            "cache_read_input_tokens": self.cache_read_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_creation_tokens - self.cache_hour_tokens,
                "ephemeral_1h_input_tokens": self.cache_hour_tokens,
            },
            "output_tokens": output_tokens,
        }

    def _tool_use(self, body: dict[str, Any], tool_input: dict[str, Any]) -> dict[str, Any]:
        if self.tool_name is not None:
            name, tool_input = self.tool_name, self.tool_input
        else:
            name = body["tools"][0]["name"]
        return {"type": "tool_use", "id": "toolu_fake_1", "name": name, "input": tool_input}

    def _message(self, body: dict[str, Any]) -> dict[str, Any]:
        if self._wants_tool_call(body):
            content = [self._tool_use(body, {"city": "Paris"})]
            stop, output = "tool_use", 9
        else:
            content = [{"type": "text", "text": self._reply_text(body)}]
            stop, output = "end_turn", len(self.words)
        return {
            "id": "msg_fake_1",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": self.stop_reason or stop,
            "stop_sequence": None,
            "usage": self._usage(output),
        }

    async def _fault(self, sent: int) -> bytes | None:
        """Once a fault's delta count is reached: hang, reset, or the event to send instead."""

        def reached(after: int | None) -> bool:
            return after is not None and sent >= after

        if reached(self.hang_mid_stream_after):
            await trio.sleep_forever()
        if reached(self.reset_mid_stream_after):
            raise FakeReset("fake connection reset")
        if reached(self.malformed_after):
            return b"event: content_block_delta\ndata: {not json\n\n"
        if reached(self.error_event_after):
            return sse("error", error_envelope("overloaded_error", "Overloaded"))
        if reached(self.end_early_after):
            return b""
        return None

    def _stream_parts(self, body: dict[str, Any]) -> tuple[dict[str, Any], list[Any], str]:
        """(the block, its deltas, the stop reason) of a streamed reply."""
        if self._wants_tool_call(body):
            pieces = TOOL_INPUT_PIECES
            if self.tool_name is not None:
                pieces = ["", orjson.dumps(self.tool_input).decode()]
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
            return self._tool_use(body, {}), deltas, "tool_use"
        words = [self._reply_text(body)] if self._tool_results(body) else self.words
        deltas = [{"type": "text_delta", "text": w} for w in words]
        return {"type": "text", "text": ""}, deltas, "end_turn"

    async def _stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        sent = 0
        completed = False
        try:
            start = {**self._message(body), "content": [], "stop_reason": None}
            start["usage"] = self._usage(1)
            yield sse("message_start", {"type": "message_start", "message": start})
            block, deltas, stop = self._stream_parts(body)
            start_block = {"type": "content_block_start", "index": 0, "content_block": block}
            yield sse("content_block_start", start_block)
            yield sse("ping", {"type": "ping"})
            for delta in deltas:
                fault = await self._fault(sent)
                if fault is not None:
                    yield fault
                    return
                await trio.sleep(self.chunk_delay)
                event = {"type": "content_block_delta", "index": 0, "delta": delta}
                yield sse("content_block_delta", event)
                sent += 1
            yield sse("content_block_stop", {"type": "content_block_stop", "index": 0})
            delta = {"stop_reason": self.stop_reason or stop, "stop_sequence": None}
            usage = {"output_tokens": sent}
            yield sse("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
            yield sse("message_stop", {"type": "message_stop"})
            completed = True
        finally:
            self.stream_ends.append(StreamEnd(trio.current_time(), completed, sent))
