"""What every provider adapter offers, and how upstream failures become our errors.

Adapters do no I/O: they turn a client's chat request into the bytes to send
upstream, and the upstream's bytes (a body, or stream chunks as they arrive) into
OpenAI `chat.completion` objects (the gateway's chat vocabulary) plus the usage to
bill. Surfaces render those objects in their own wire format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from ..core.chat import ChatRequest, Usage
from ..core.errors import (
    BadRequest,
    GatewayError,
    PayloadTooLarge,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from ..core.model import Model
from .stream import StreamTranslator

MESSAGE_CHARS = 1000  # of an upstream's error message
EXCERPT_CHARS = 300  # of a body that is not an error envelope


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    path: str  # appended to the provider's base URL
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class Completion:
    data: dict[str, Any]  # an OpenAI `chat.completion` object, `model` set to our id
    usage: Usage | None  # None: the upstream reported none
    output_text: str  # the generated text, for an estimate when usage is None


class Adapter(Protocol):
    provider: str

    def chat_request(
        self, chat: ChatRequest, model: Model, api_key: str | None
    ) -> UpstreamRequest: ...

    def chat_response(self, body: bytes, model: Model) -> Completion: ...

    def chat_stream(self, chat: ChatRequest, model: Model) -> StreamTranslator: ...

    def error_message(self, body: bytes) -> str | None: ...


def error_message(body: bytes) -> str | None:
    """The message of an upstream's error body, whichever provider's envelope it is in.

    OpenAI, Anthropic and Google all say `{"error": {"message": ...}}` (Google's
    streaming endpoint wraps it in a one-element array); some servers say
    `{"error": "..."}` or `{"message": ...}`. Anything else gives a short excerpt.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:MESSAGE_CHARS]
        if isinstance(error, str):
            return error[:MESSAGE_CHARS]
        if isinstance(data.get("message"), str):
            return str(data["message"])[:MESSAGE_CHARS]
    return body.decode("utf-8", errors="replace").strip()[:EXCERPT_CHARS] or None


def not_json(provider: str) -> UpstreamError:
    return UpstreamError(f"{provider} sent a response that is not JSON")


def load_object(body: bytes, provider: str) -> Any:
    """An upstream's response body as JSON; one that is not JSON is the upstream's fault."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise not_json(provider) from exc


def upstream_error(
    status: int, message: str | None, retry_after: str | None, provider: str
) -> GatewayError:
    """Map an upstream's HTTP error to what our client sees.

    Errors caused by the request itself keep their message; errors about the
    gateway's own provider account never reveal it.
    """
    said = f": {message}" if message else ""
    if status in (400, 422):
        return BadRequest(f"{provider} rejected the request{said}", upstream_status=status)
    if status == 413:
        return PayloadTooLarge(
            f"{provider} rejected the request as too large{said}", upstream_status=status
        )
    if status in (401, 403):
        return UpstreamError(
            f"{provider} refused the gateway's credentials; tell the operator",
            upstream_status=status,
        )
    if status == 404:
        return UpstreamError(f"{provider} does not serve this model{said}", upstream_status=status)
    if status == 429:
        return RateLimited(
            f"{provider} is rate limiting requests{said}",
            headers={"Retry-After": retry_after} if retry_after else None,
            upstream_status=status,
        )
    if status in (503, 529):
        return UpstreamUnavailable(f"{provider} is unavailable{said}", upstream_status=status)
    if status == 504:
        return UpstreamTimeout(f"{provider} timed out{said}", upstream_status=status)
    return UpstreamError(f"{provider} failed with HTTP {status}{said}", upstream_status=status)
