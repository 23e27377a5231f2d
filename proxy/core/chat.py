"""The chat vocabulary every layer speaks: a parsed request view, usage, stream events.

The request body stays a dict: the gateway reads only the fields it needs (`model`,
`messages`, `stream`, `stream_options`, the completion limit, `n`) and passes every
other field through unchanged. The completion limit is read here once; a budget may
lower it (`with_limit`), and every provider adapter sends `completion_limit` in its
own field.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import orjson

from .errors import BadRequest, GatewayError

# The client's completion limit, in order of precedence.
LIMIT_FIELDS = ("max_completion_tokens", "max_tokens")
Chunk = dict[str, Any]  # an OpenAI chat.completion.chunk object
MAX_TOKENS = 10**9  # more tokens than any request has: a count above it is not believed


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # part of prompt_tokens read from the provider's cache
    estimated: bool = False
    cache_write_tokens: int = 0  # part of prompt_tokens written to the provider's cache
    cache_hour_tokens: int = 0  # part of cache_write_tokens kept for an hour (dearer)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class ChatRequest:
    body: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool  # the client asked for the usage chunk
    completion_limit: int | None = None  # the limit in force; None: the provider's default
    n: int = 1  # choices asked for
    # An Anthropic Messages request (`POST /v1/messages`): its body as the client sent it,
    # which an Anthropic upstream gets unchanged but for the model (and a lower limit);
    # `body` is then its OpenAI translation, for every other upstream and for holds.
    native: dict[str, Any] | None = None
    native_headers: tuple[tuple[str, str], ...] = ()  # anthropic-version, anthropic-beta
    native_only: str | None = None  # why only an Anthropic upstream can serve it
    unsent_text: str = ""  # billed as input by Anthropic, absent from `body` (thinking)

    @property
    def messages(self) -> list[Any]:
        return self.body["messages"]  # type: ignore[no-any-return]

    @property
    def limit_field(self) -> str | None:
        """The field the client put its limit in, if any (in `LIMIT_FIELDS` order)."""
        body = self.body
        if "max_completion_tokens" in body:
            return "max_completion_tokens"
        return "max_tokens" if "max_tokens" in body else None

    def with_limit(self, limit: int | None) -> ChatRequest:
        """This request with a lower completion limit (None keeps the client's)."""
        return self if limit is None else replace(self, completion_limit=limit)


@dataclass(frozen=True, slots=True)
class Chunks:
    """Stream event: the chunks one upstream read brought, in order."""

    items: list[Chunk]


@dataclass(frozen=True, slots=True)
class StreamDone:
    """Stream event, the last: the answer is complete."""


@dataclass(frozen=True, slots=True)
class StreamFailed:
    """Stream event, the last: the upstream failed (or the gateway is shutting down)."""

    error: GatewayError


StreamEvent = Chunks | StreamDone | StreamFailed


def parse_json(data: bytes) -> Any:
    """A request body as JSON; an empty or broken one is a 400 saying so."""
    if not data:
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from exc


def parse_chat_request(body: Any) -> ChatRequest:
    """Validate what the gateway relies on; say exactly what is wrong."""
    model = required_model(body)
    messages = body.get("messages")
    if messages is None:
        raise BadRequest("missing required parameter: 'messages'", param="messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequest(
                f"'messages[{i}]' must be an object with a 'role'", param=f"messages[{i}]"
            )
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise BadRequest("'stream' must be a boolean", param="stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise BadRequest("'stream_options' must be an object", param="stream_options")
    include_usage = bool(stream and options and options.get("include_usage") is True)
    tier = body.get("service_tier")
    if tier not in (None, "auto", "default"):
        raise BadRequest(
            f"'service_tier' {tier!r} is not priced by this gateway; leave it out or send "
            "'default'",
            param="service_tier",
        )
    _refuse_file_ids(messages)
    return ChatRequest(
        body=body,
        model=model,
        stream=bool(stream),
        include_usage=include_usage,
        completion_limit=requested_limit(body),
        n=choices(body),
    )


def required_model(body: Any) -> str:
    """The model a request body names; a body that is not an object, or names none, is a 400."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    model = body.get("model")
    if model is None:
        raise BadRequest("missing required parameter: 'model'", param="model")
    if not isinstance(model, str) or not model.strip():
        raise BadRequest("'model' must be a non-empty string", param="model")
    return model


def _refuse_file_ids(messages: list[Any]) -> None:
    """Files uploaded to a provider belong to the operator's account, not to a tenant."""
    for i, message in enumerate(messages):
        content = message.get("content")
        for j, part in enumerate(content if isinstance(content, list) else ()):
            file = part.get("file") if isinstance(part, dict) else None
            if isinstance(file, dict) and file.get("file_id") is not None:
                where = f"messages[{i}].content[{j}].file"
                raise BadRequest(
                    f"'{where}.file_id': uploaded files are not supported here; send the "
                    "file's content as file_data",
                    param=where,
                )


def requested_limit(body: dict[str, Any]) -> int | None:
    """The client's completion limit (`max_completion_tokens`, else `max_tokens`)."""
    for name in LIMIT_FIELDS:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadRequest(f"'{name}' must be a positive integer", param=name)
        return value
    return None


def choices(body: dict[str, Any]) -> int:
    n = body.get("n", 1)
    if n is None:
        return 1
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 128:
        raise BadRequest("'n' must be an integer from 1 to 128", param="n")
    return n


def usage_from_openai(data: Any) -> Usage | None:
    """Read OpenAI's `usage` object; None when absent or malformed."""
    if not isinstance(data, dict):
        return None
    prompt = token_count(data.get("prompt_tokens"))
    completion = token_count(data.get("completion_tokens"))
    if prompt is None or completion is None:
        return None
    details = data.get("prompt_tokens_details")
    cached = token_count(details.get("cached_tokens") if isinstance(details, dict) else None)
    if cached is None:
        cached = token_count(data.get("prompt_cache_hit_tokens"))  # DeepSeek's spelling
    return Usage(prompt, completion, min(cached or 0, prompt))


def token_count(value: Any) -> int | None:
    """An upstream's token count, if it is one: a whole number from 0 to `MAX_TOKENS`.

    Anything else (negative, fractional, 2**63) is ignored and the usage estimated,
    so no upstream can make a usage row that cannot be written.
    """
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKENS:
        return value
    return None
