"""What every provider adapter offers, and how upstream failures become our errors.

Adapters do no I/O: they turn a client's chat request into the bytes to send
upstream, and the upstream's bytes (a body, or stream chunks as they arrive)
into what the client receives plus the usage to bill.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ..catalog import Model
from ..chat import ChatRequest, Usage
from ..errors import (
    BadRequest,
    GatewayError,
    PayloadTooLarge,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    path: str  # appended to the provider's base URL
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class Completion:
    body: bytes  # what the client receives
    usage: Usage | None  # None: the upstream reported none
    output_text: str  # the generated text, for an estimate when usage is None


@dataclass(slots=True)
class StreamState:
    """What a stream translator learned so far."""

    usage: Usage | None = None
    output: list[str] = field(default_factory=list)
    done: bool = False  # the upstream said it finished
    error: GatewayError | None = None  # the upstream failed mid-stream
    content_sent: bool = False  # output reached the client

    @property
    def output_text(self) -> str:
        return "".join(self.output)


class StreamTranslator(Protocol):
    state: StreamState

    def feed(self, chunk: bytes) -> list[bytes]:
        """Raw upstream bytes in; complete client SSE events out."""
        ...

    def finish(self) -> list[bytes]:
        """The upstream closed: whatever events remain."""
        ...


class Adapter(Protocol):
    # where a completion limit goes when the client set none
    limit_field: str

    def chat_request(
        self, chat: ChatRequest, model: Model, api_key: str | None
    ) -> UpstreamRequest: ...

    def chat_response(self, body: bytes, model: Model) -> Completion: ...

    def chat_stream(self, chat: ChatRequest, model: Model) -> StreamTranslator: ...

    def error_message(self, body: bytes) -> str | None: ...


def upstream_error(
    status: int, message: str | None, retry_after: str | None, provider: str
) -> GatewayError:
    """Map an upstream's HTTP error to what our client sees.

    Errors caused by the request itself keep their message; errors about the
    gateway's own provider account never reveal it.
    """
    error = _mapped(status, f": {message}" if message else "", retry_after, provider)
    error.upstream_status = status  # what judges the upstream's health and the route
    return error


def _mapped(status: int, said: str, retry_after: str | None, provider: str) -> GatewayError:
    if status in (400, 422):
        return BadRequest(f"{provider} rejected the request{said}")
    if status == 413:
        return PayloadTooLarge(f"{provider} rejected the request as too large{said}")
    if status in (401, 403):
        return UpstreamError(f"{provider} refused the gateway's credentials; tell the operator")
    if status == 404:
        return UpstreamError(f"{provider} does not serve this model{said}")
    if status == 429:
        headers = {"Retry-After": retry_after} if retry_after else {}
        return RateLimited(f"{provider} is rate limiting requests{said}", headers=headers)
    if status in (503, 529):
        return UpstreamUnavailable(f"{provider} is unavailable{said}")
    if status == 504:
        return UpstreamTimeout(f"{provider} timed out{said}")
    return UpstreamError(f"{provider} failed with HTTP {status}{said}")
