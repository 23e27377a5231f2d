"""OpenAI-compatible upstreams (OpenAI, DeepSeek, Mistral, vLLM, ...).

The body passes through untouched except `model` (the upstream's id), the completion
limit when a budget lowered it, and, for streams, `stream_options.include_usage`
(always asked for, so every stream can be billed; the usage chunk reaches the client
only if it asked). Responses get our `provider/model` id in their `model` field.
"""

from __future__ import annotations

from typing import Any

from ..core.chat import ChatRequest, usage_from_openai
from ..core.errors import Fault, GatewayError, UpstreamError
from ..core.model import Model
from ..core.sse import Event
from .base import (
    Completion,
    Refusal,
    UpstreamRequest,
    common_fault,
    json_body,
    load_object,
    read_refusal,
    refusal_from,
    upstream_error,
)
from .stream import Chunk, StreamTranslator

# OpenAI's 429 for a request that is by itself over the organisation's per-minute token limit.
REQUEST_TOO_LARGE = "Request too large for "


class OpenAIAdapter:
    def __init__(self, provider: str) -> None:
        self.provider = provider
        # OpenAI's reasoning models refuse `max_tokens`; other servers may not know the new name.
        self.limit_field = "max_completion_tokens" if provider == "openai" else "max_tokens"

    def chat_request(self, chat: ChatRequest, model: Model, api_key: str | None) -> UpstreamRequest:
        body = dict(chat.body)
        body["model"] = model.upstream_id
        if chat.completion_limit is not None:
            body[chat.limit_field or self.limit_field] = chat.completion_limit
        if chat.stream:
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        headers = {"content-type": "application/json", "accept-encoding": "identity"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        if chat.stream:
            headers["accept"] = "text/event-stream"
        return UpstreamRequest("/chat/completions", headers, json_body(body))

    def chat_response(self, body: bytes, model: Model) -> Completion:
        data = load_object(body, self.provider)
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise UpstreamError(f"{self.provider} sent a response without choices")
        usage = usage_from_openai(data.get("usage"))
        text = "" if usage else "".join(_message_texts(data["choices"]))
        data["model"] = model.id
        return Completion(data, usage, text)

    def chat_stream(self, chat: ChatRequest, model: Model) -> OpenAIStream:
        return OpenAIStream(self.provider, model.id, chat.include_usage, model.price)

    def error(self, status: int, body: bytes, retry_after: str | None) -> GatewayError:
        refusal = read_refusal(status, body)
        return upstream_error(refusal, retry_after, self.provider, fault(refusal))


def fault(refusal: Refusal) -> Fault:
    """Whose fault an OpenAI-compatible error is, by OpenAI's documented codes.

    `insufficient_quota` is the operator's account; a 429 whose message starts with
    OpenAI's "Request too large for" is the request's own size, not the upstream's
    load. The start of a message is the provider's template: a client cannot put it
    there, so no tenant can make one upstream look broken to the others.
    """
    if "insufficient_quota" in (refusal.code, refusal.type):
        return Fault.ACCOUNT
    if refusal.status == 429 and (refusal.message or "").startswith(REQUEST_TOO_LARGE):
        return Fault.REQUEST
    return common_fault(refusal)


class OpenAIStream(StreamTranslator):
    """The upstream's own chunks, with our model id; its usage chunk only if asked for."""

    def _event(self, event: Event) -> list[Chunk]:
        state = self.state
        data_text = event.data.strip()
        if not data_text:
            return []
        if data_text == "[DONE]":
            state.done = True
            return []
        data = self._object(data_text)
        if data is None:
            return []
        if data.get("error"):
            state.error = _stream_error(self.provider, data["error"])
            return []
        usage = usage_from_openai(data.get("usage"))
        if usage is not None:
            state.usage = usage
        choices = data.get("choices")
        if not self.include_usage:
            data.pop("usage", None)
            if usage is not None and not choices:
                return []
        elif usage is not None:
            data["usage"] = self.priced(data["usage"], usage)
        if isinstance(choices, list):
            texts = _delta_texts(choices)
            if texts:
                self._sent(texts)
        data["model"] = self.model_id
        return [data]


def _stream_error(provider: str, error: Any) -> GatewayError:
    if isinstance(error, dict):
        code = error.get("code")
        status = code if isinstance(code, int) and 400 <= code < 600 else 502
        refusal = refusal_from(status, error)
    else:
        refusal = Refusal(502, str(error))
    return upstream_error(refusal, None, provider, fault(refusal))


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
