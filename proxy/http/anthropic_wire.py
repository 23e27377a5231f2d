"""Anthropic's wire format for `/v1/messages`: errors, messages, stream events, models.

An answer from an Anthropic upstream is relayed as it came; one from any other
upstream arrives as OpenAI `chat.completion` objects and chunks (what every adapter
produces) and is rendered here as a Message and as Anthropic's named events:
`message_start`, `ping`, `content_block_start` / `_delta` / `_stop` per text or
tool_use block, then `message_delta` (stop reason, usage) and `message_stop`.
Errors are `{"type": "error", "error": {"type", "message"}, "request_id"}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ..core.errors import GatewayError
from ..services import Chunks, StreamDone, StreamEvent, StreamFailed, stop_reason
from .openai_wire import JSON, client_message

STREAM_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
STREAM_HEADERS["x-accel-buffering"] = "no"
PING = b'event: ping\ndata: {"type": "ping"}\n\n'
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
}
CREATED_AT = "1970-01-01T00:00:00Z"  # the catalog keeps no release dates


def error_body(error: GatewayError, request_id: str | None = None) -> dict[str, Any]:
    kind = ERROR_TYPES.get(error.status, "api_error")
    body: dict[str, Any] = {"type": "error", "error": {"type": kind}}
    body["error"]["message"] = client_message(error, request_id)
    if request_id:
        body["request_id"] = request_id
    return body


def render_error(
    error: GatewayError, context: Mapping[str, str] | None = None, request_id: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of an error, as `openai_wire.render_error` but Anthropic's."""
    headers = {**(context or {}), **error.headers, "content-type": JSON}
    return error.status, headers, orjson.dumps(error_body(error, request_id))


def sse(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


# -- answers from other providers ------------------------------------------------------------
def anthropic_usage(usage: Any) -> dict[str, int]:
    """OpenAI's usage object as Anthropic's: cached input is counted apart from input."""
    usage = usage if isinstance(usage, dict) else {}
    prompt, output = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
    details = usage.get("prompt_tokens_details")
    cached = (details.get("cached_tokens") if isinstance(details, dict) else 0) or 0
    return {
        "input_tokens": max(0, prompt - cached),
        "output_tokens": output,
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
    }


def message_id(openai_id: Any) -> str:
    return "msg_" + str(openai_id or "").removeprefix("chatcmpl-")


def message(completion: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI `chat.completion` as an Anthropic Message."""
    choice = (completion.get("choices") or [{}])[0]
    said = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if isinstance(said.get("content"), str) and said["content"]:
        content.append({"type": "text", "text": said["content"]})
    for call in said.get("tool_calls") or ():
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or "",
                "name": function.get("name") or "",
                "input": _arguments(function.get("arguments")),
            }
        )
    return {
        "id": message_id(completion.get("id")),
        "type": "message",
        "role": "assistant",
        "model": completion.get("model"),
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason")),
        "stop_sequence": None,
        "usage": anthropic_usage(completion.get("usage")),
    }


def _arguments(text: Any) -> Any:
    try:
        value = orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


class MessagesStream:
    """Renders one stream's events for a Messages client (`native`: Anthropic's own)."""

    def __init__(self, model_id: str, native: bool) -> None:
        self._model_id = model_id
        self._native = native
        self._started = False
        self._open: int | None = None  # the content block being streamed
        self._blocks = 0
        self._tools: dict[Any, int] = {}  # OpenAI tool_calls index -> block index
        self._stop: str | None = None
        self._usage: Any = None

    def render(self, event: StreamEvent) -> bytes:
        if type(event) is Chunks:
            if self._native:  # the upstream's own events, as bytes
                return b"".join(event.items)  # type: ignore[arg-type]
            return b"".join([part for chunk in event.items for part in self._chunk(chunk)])
        if isinstance(event, StreamFailed):
            return sse("error", error_body(event.error))
        assert isinstance(event, StreamDone)
        return b"" if self._native else b"".join(self._end())

    def _chunk(self, chunk: dict[str, Any]) -> list[bytes]:
        out = [] if self._started else self._start(chunk)
        if chunk.get("usage") is not None:
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                out += self._text(text)
            for call in delta.get("tool_calls") or ():
                out += self._tool(call)
            if choice.get("finish_reason"):
                self._stop = stop_reason(choice["finish_reason"])
        return out

    def _start(self, chunk: dict[str, Any]) -> list[bytes]:
        self._started = True
        started: dict[str, Any] = {
            "id": message_id(chunk.get("id")),
            "type": "message",
            "role": "assistant",
            "model": chunk.get("model") or self._model_id,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [sse("message_start", {"type": "message_start", "message": started}), PING]

    def _text(self, text: str) -> list[bytes]:
        out: list[bytes] = []
        if self._open is None or self._open in self._tools.values():
            out += self._close()
            out.append(self._open_block({"type": "text", "text": ""}))
        delta = {"type": "text_delta", "text": text}
        out.append(self._delta(delta))
        return out

    def _tool(self, call: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        position = call.get("index", 0)
        function = call.get("function") or {}
        if position not in self._tools:
            out += self._close()
            block = {"type": "tool_use", "id": call.get("id") or "", "name": function.get("name")}
            out.append(self._open_block({**block, "input": {}}))
            self._tools[position] = self._open  # type: ignore[assignment]
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            delta = {"type": "input_json_delta", "partial_json": arguments}
            event = {"type": "content_block_delta", "index": self._tools[position], "delta": delta}
            out.append(sse("content_block_delta", event))
        return out

    def _open_block(self, block: dict[str, Any]) -> bytes:
        self._open = self._blocks
        self._blocks += 1
        start = {"type": "content_block_start", "index": self._open, "content_block": block}
        return sse("content_block_start", start)

    def _delta(self, delta: dict[str, Any]) -> bytes:
        event = {"type": "content_block_delta", "index": self._open, "delta": delta}
        return sse("content_block_delta", event)

    def _close(self) -> list[bytes]:
        if self._open is None:
            return []
        index, self._open = self._open, None
        return [sse("content_block_stop", {"type": "content_block_stop", "index": index})]

    def _end(self) -> list[bytes]:
        out = [] if self._started else self._start({})
        out += self._close()
        delta = {"stop_reason": self._stop or "end_turn", "stop_sequence": None}
        usage = anthropic_usage(self._usage)
        out.append(sse("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
        out.append(sse("message_stop", {"type": "message_stop"}))
        return out


# -- models ----------------------------------------------------------------------------------
def model_object(model_id: str) -> dict[str, Any]:
    return {"type": "model", "id": model_id, "display_name": model_id, "created_at": CREATED_AT}


def models_page(
    ids: list[str], limit: int, after_id: str | None, before_id: str | None
) -> dict[str, Any]:
    """One page of model ids in Anthropic's list shape (`has_more`, `first_id`, `last_id`)."""
    if after_id is not None:
        ids = ids[ids.index(after_id) + 1 :] if after_id in ids else []
        page, more = ids[:limit], len(ids) > limit
    elif before_id is not None:
        ids = ids[: ids.index(before_id)] if before_id in ids else []
        page, more = ids[-limit:], len(ids) > limit
    else:
        page, more = ids[:limit], len(ids) > limit
    return {
        "data": [model_object(i) for i in page],
        "has_more": more,
        "first_id": page[0] if page else None,
        "last_id": page[-1] if page else None,
    }
