"""OpenAI-compatible upstreams (OpenAI, DeepSeek, Mistral, vLLM, ...).

The body passes through untouched except `model` (the upstream's id) and, for
streams, `stream_options.include_usage` (always asked for, so every stream can
be billed; the usage chunk reaches the client only if it asked). Responses get
our `provider/model` id in their `model` field.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..catalog import Model
from ..chat import ChatRequest, usage_from_openai
from ..errors import GatewayError, UpstreamError
from ..sse import Decoder, Event, encode_data
from .base import Completion, StreamState, UpstreamRequest, upstream_error


class OpenAIAdapter:
    def __init__(self, provider: str) -> None:
        self.provider = provider
        # OpenAI's reasoning models refuse `max_tokens`; other servers may not know the new name.
        self.limit_field = "max_completion_tokens" if provider == "openai" else "max_tokens"

    def chat_request(self, chat: ChatRequest, model: Model, api_key: str | None) -> UpstreamRequest:
        body = dict(chat.body)
        body["model"] = model.upstream_id
        if chat.stream:
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        headers = {"content-type": "application/json", "accept-encoding": "identity"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        if chat.stream:
            headers["accept"] = "text/event-stream"
        return UpstreamRequest("/chat/completions", headers, orjson.dumps(body))

    def chat_response(self, body: bytes, model: Model) -> Completion:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(f"{self.provider} sent a response that is not JSON") from exc
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise UpstreamError(f"{self.provider} sent a response without choices")
        usage = usage_from_openai(data.get("usage"))
        text = "" if usage else "".join(_message_texts(data["choices"]))
        data["model"] = model.id
        return Completion(orjson.dumps(data), usage, text)

    def chat_stream(self, chat: ChatRequest, model: Model) -> OpenAIStream:
        return OpenAIStream(self.provider, model.id, chat.include_usage)

    def error_message(self, body: bytes) -> str | None:
        return error_message(body)


class OpenAIStream:
    def __init__(self, provider: str, model_id: str, include_usage: bool) -> None:
        self.state = StreamState()
        self._provider = provider
        self._model_id = model_id
        self._include_usage = include_usage
        self._decoder = Decoder()

    def feed(self, chunk: bytes) -> list[bytes]:
        return self._events(self._decoder.feed(chunk))

    def finish(self) -> list[bytes]:
        return self._events(self._decoder.flush())

    def _events(self, events: list[Event]) -> list[bytes]:
        out = []
        for event in events:
            if self.state.error is not None:
                break
            encoded = self._event(event)
            if encoded is not None:
                out.append(encoded)
        return out

    def _event(self, event: Event) -> bytes | None:
        state = self.state
        data_text = event.data.strip()
        if not data_text:
            return None
        if data_text == "[DONE]":
            state.done = True
            return None
        try:
            data = orjson.loads(data_text)
        except orjson.JSONDecodeError:
            state.error = UpstreamError(f"{self._provider} sent a malformed stream event")
            return None
        if not isinstance(data, dict):
            state.error = UpstreamError(f"{self._provider} sent a malformed stream event")
            return None
        if data.get("error"):
            state.error = _stream_error(self._provider, data["error"])
            return None
        usage = usage_from_openai(data.get("usage"))
        if usage is not None:
            state.usage = usage
        choices = data.get("choices")
        if not self._include_usage:
            data.pop("usage", None)
            if usage is not None and not choices:
                return None
        if isinstance(choices, list):
            texts = _delta_texts(choices)
            if texts:
                state.output.extend(texts)
                state.content_sent = True
        data["model"] = self._model_id
        return encode_data(orjson.dumps(data))


def error_message(body: bytes) -> str | None:
    """The message of OpenAI's error envelope, or a short excerpt of a body that is not one."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", errors="replace").strip()
        return text[:300] or None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:1000]
        if isinstance(error, str):
            return error[:1000]
        if isinstance(data.get("message"), str):
            return str(data["message"])[:1000]
    return None


def _stream_error(provider: str, error: Any) -> GatewayError:
    if isinstance(error, dict):
        message = error.get("message")
        code = error.get("code")
        status = code if isinstance(code, int) and 400 <= code < 600 else 502
        return upstream_error(status, str(message) if message else None, None, provider)
    return upstream_error(502, str(error), None, provider)


def _message_texts(choices: list[Any]) -> list[str]:
    texts: list[str] = []
    for choice in choices:
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict):
            texts.extend(_content_texts(message))
    return texts


def _delta_texts(choices: list[Any]) -> list[str]:
    texts: list[str] = []
    for choice in choices:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict):
            texts.extend(_content_texts(delta))
    return texts


def _content_texts(message: dict[str, Any]) -> list[str]:
    texts = [
        value
        for key in ("content", "reasoning_content", "refusal")
        if isinstance(value := message.get(key), str) and value
    ]
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            texts.extend(
                v for v in (function.get("name"), function.get("arguments")) if isinstance(v, str)
            )
    return texts
