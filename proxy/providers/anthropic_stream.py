"""Anthropic's streamed Messages events as OpenAI `chat.completion.chunk` events.

Anthropic streams named events (message_start, content_block_*, message_delta,
message_stop, ping, error); OpenAI clients expect one choice's deltas. Text
deltas become `content`, a tool_use block becomes a `tool_calls` entry whose
`arguments` grow with each input_json_delta, and the stop reason becomes the
last chunk's `finish_reason`. Usage is only final at message_delta, so
`state.usage` is set there: a stream cut earlier is billed by estimate.

For a Messages client (`native`), the events are read the same way (for usage,
output and errors) but relayed as the upstream sent them, as SSE bytes; an
`error` event is not: it ends the stream, which the surface reports in its own words.
"""

from __future__ import annotations

from typing import Any

from ..core.chat import Usage, token_count
from ..core.errors import Fault, GatewayError, UpstreamError
from ..core.model import Price
from ..core.sse import Event
from .base import Refusal, common_fault, refusal_from, upstream_error
from .stream import Chunk, StreamTranslator

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# The HTTP status each error type is sent with, so stream errors map like HTTP ones.
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
# Anthropic's documented answer (HTTP 400) when the operator's account is out of credit.
CREDIT_TOO_LOW = (
    "Your credit balance is too low to access the Anthropic API. "
    "Please go to Plans & Billing to upgrade or purchase credits."
)
HOUR_WRITES = "ephemeral_1h_input_tokens"  # of cache_creation: writes kept for an hour
USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)


def finish_reason(stop_reason: Any) -> str:
    """OpenAI's finish_reason for Anthropic's stop_reason (unknown ones read as a stop)."""
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def usage_from_counts(counts: dict[str, int]) -> Usage:
    """Anthropic counts cached input apart from `input_tokens`; OpenAI's prompt includes it."""
    read = counts.get("cache_read_input_tokens", 0)
    written = counts.get("cache_creation_input_tokens", 0)
    prompt = counts.get("input_tokens", 0) + read + written
    hour = counts.get(HOUR_WRITES, 0)
    output = counts.get("output_tokens", 0)
    return Usage(prompt, output, read, cache_write_tokens=written, cache_hour_tokens=hour)


def read_counts(data: Any, into: dict[str, int] | None = None) -> dict[str, int]:
    """The integer token counts of an Anthropic `usage` object, over earlier ones."""
    counts = dict(into or {})
    if isinstance(data, dict):
        for name in USAGE_FIELDS:
            value = token_count(data.get(name))
            if value is not None:
                counts[name] = value
        written = data.get("cache_creation")
        hour = token_count(written.get(HOUR_WRITES)) if isinstance(written, dict) else None
        if hour is not None:
            counts[HOUR_WRITES] = hour
    return counts


def openai_usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


def fault(refusal: Refusal) -> Fault:
    """Whose fault an Anthropic error is: `billing_error`, or the whole of Anthropic's
    credit message (never a word of it that a request could get echoed), is the
    operator's account."""
    if refusal.type == "billing_error" or (refusal.message or "").strip() == CREDIT_TOO_LOW:
        return Fault.ACCOUNT
    return common_fault(refusal)


def error_from_anthropic(provider: str, error: Any) -> GatewayError:
    """Map an error object ({"type", "message"}) as if it came with its usual HTTP status."""
    error = error if isinstance(error, dict) else {}
    refusal = refusal_from(ERROR_STATUS.get(error.get("type"), 502), error)
    return upstream_error(refusal, None, provider, fault(refusal))


class AnthropicStream(StreamTranslator):
    """Feed Anthropic's SSE bytes; get OpenAI chunks back."""

    def __init__(
        self,
        provider: str,
        model_id: str,
        include_usage: bool,
        price: Price | None = None,
        *,
        native: bool = False,
    ) -> None:
        super().__init__(provider, model_id, include_usage, price)
        self.native = native
        self._counts: dict[str, int] = {}
        self._tool_index: dict[int, int] = {}  # Anthropic block index -> OpenAI tool_calls index
        self._finished = False  # the finish_reason chunk went out

    def _event(self, event: Event) -> list[Any]:
        chunks = self._translated(event)
        if not self.native or self.state.error is not None:
            return chunks
        name = (event.event or "message").encode()
        return [b"event: " + name + b"\ndata: " + event.data.encode() + b"\n\n"]

    def _translated(self, event: Event) -> list[Chunk]:
        text = event.data.strip()
        if event.event == "ping" or not text:
            return []
        data = self._object(text)
        if data is None:
            return []
        kind = data.get("type") or event.event
        if kind == "error":
            self.state.error = error_from_anthropic(self.provider, data.get("error"))
            return []
        if kind == "message_start":
            return self._message_start(_dict(data.get("message")))
        if kind == "content_block_start":
            return self._block_start(data.get("index"), _dict(data.get("content_block")))
        if kind == "content_block_delta":
            return self._block_delta(data.get("index"), _dict(data.get("delta")))
        if kind == "message_delta":
            return self._message_delta(_dict(data.get("delta")), data.get("usage"))
        if kind == "message_stop":
            return self._message_stop()
        return []  # content_block_stop, ping, and event types added later

    def _message_start(self, message: dict[str, Any]) -> list[Chunk]:
        self.chunk_id = f"chatcmpl-{message.get('id') or ''}"
        self._counts = read_counts(message.get("usage"))
        return [self._chunk({"role": "assistant", "content": ""})]

    def _block_start(self, index: Any, block: dict[str, Any]) -> list[Chunk]:
        if block.get("type") == "text":
            return self._text(block.get("text"))
        if block.get("type") != "tool_use" or not isinstance(index, int):
            return []  # thinking and server-tool blocks have no OpenAI counterpart
        position = self._tool_index[index] = len(self._tool_index)
        name = str(block.get("name") or "")
        call = {
            "index": position,
            "id": str(block.get("id") or ""),
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        self._sent([name])
        return [self._chunk({"tool_calls": [call]})]

    def _block_delta(self, index: Any, delta: dict[str, Any]) -> list[Chunk]:
        kind = delta.get("type")
        if kind == "text_delta":
            return self._text(delta.get("text"))
        if kind != "input_json_delta" or index not in self._tool_index:
            return []  # thinking, signature and citation deltas are not relayed
        piece = delta.get("partial_json")
        if not isinstance(piece, str) or not piece:
            return []
        self._sent([piece])
        call = {"index": self._tool_index[index], "function": {"arguments": piece}}
        return [self._chunk({"tool_calls": [call]})]

    def _message_delta(self, delta: dict[str, Any], usage: Any) -> list[Chunk]:
        self._counts = read_counts(usage, self._counts)
        if "output_tokens" in self._counts:  # else it is estimated from what was relayed
            self.state.usage = usage_from_counts(self._counts)
        stop_reason = delta.get("stop_reason")
        if stop_reason is None or self._finished:
            return []
        self._finished = True
        return [self._chunk({}, finish_reason(stop_reason))]

    def _ended(self) -> list[Chunk]:
        """A stream that closed before `message_stop` is an answer cut short, not a whole one."""
        if not self.state.done:
            self.state.error = UpstreamError(f"{self.provider} ended the stream mid-answer")
        return []

    def _message_stop(self) -> list[Chunk]:
        self.state.done = True
        if not self.include_usage or self.state.usage is None:
            return []
        usage = self.state.usage
        return [self.encode([], usage=self.priced(openai_usage(usage), usage))]

    def _text(self, text: Any) -> list[Chunk]:
        if not isinstance(text, str) or not text:
            return []
        self._sent([text])
        return [self._chunk({"content": text})]

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> Chunk:
        return self.encode(
            [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
