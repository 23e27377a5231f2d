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
    Fault,
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


def json_body(obj: Any) -> bytes:
    """`obj` as a request body: a compact copy of what orjson wrote. orjson's bytes keep
    the buffer it wrote into (4 KB for a small body, all of it resident), and a body lives
    as long as its request: 10,000 open streams held 40 MB of it."""
    return memoryview(orjson.dumps(obj)).tobytes()


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
    native: bytes | None = None  # an Anthropic upstream's own body, for a Messages client


@dataclass(frozen=True, slots=True)
class Refusal:
    """What an upstream said when it refused a request: the parts of its error envelope."""

    status: int
    message: str | None = None
    type: str | None = None  # error.type (OpenAI, Anthropic); error.status (Google)
    code: str | None = None  # error.code (OpenAI-compatible servers)
    reasons: tuple[str, ...] = ()  # Google's ErrorInfo reasons (e.g. API_KEY_INVALID)


class Adapter(Protocol):
    provider: str

    def chat_request(
        self, chat: ChatRequest, model: Model, api_key: str | None
    ) -> UpstreamRequest: ...

    def chat_response(self, body: bytes, model: Model) -> Completion: ...

    def chat_stream(self, chat: ChatRequest, model: Model) -> StreamTranslator: ...

    def error(self, status: int, body: bytes, retry_after: str | None) -> GatewayError:
        """The error for an upstream's HTTP error response."""
        ...


def read_refusal(status: int, body: bytes) -> Refusal:
    """An upstream's error body, whichever provider's envelope it is in.

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
        if isinstance(error, dict):
            return refusal_from(status, error)
        if isinstance(error, str):
            return Refusal(status, error[:MESSAGE_CHARS])
        if isinstance(data.get("message"), str):
            return Refusal(status, str(data["message"])[:MESSAGE_CHARS])
    excerpt = body.decode("utf-8", errors="replace").strip()[:EXCERPT_CHARS]
    return Refusal(status, excerpt or None)


def refusal_from(status: int, error: dict[str, Any]) -> Refusal:
    """A refusal from an error object already decoded (an envelope's, or a stream event's)."""
    message, code = error.get("message"), error.get("code")
    kind = error.get("type") if isinstance(error.get("type"), str) else error.get("status")
    details = error.get("details")
    reasons = tuple(
        str(d["reason"])
        for d in (details if isinstance(details, list) else ())
        if isinstance(d, dict) and isinstance(d.get("reason"), str)
    )
    return Refusal(
        status,
        str(message)[:MESSAGE_CHARS] if message else None,
        kind if isinstance(kind, str) else None,
        code if isinstance(code, str) else None,
        reasons,
    )


def error_message(body: bytes) -> str | None:
    """The message of an upstream's error body (see `read_refusal`)."""
    return read_refusal(0, body).message


def common_fault(refusal: Refusal) -> Fault:
    """Whose fault an HTTP error is, by status alone (each adapter refines it first)."""
    status = refusal.status
    if status in (401, 402, 403):
        return Fault.ACCOUNT  # the gateway's key or the operator's account
    if status == 404 or status == 429 or status >= 500:
        return Fault.UPSTREAM  # the model the catalog names is not served; busy; broken
    return Fault.REQUEST


def not_json(provider: str) -> UpstreamError:
    return UpstreamError(f"{provider} sent a response that is not JSON")


def load_object(body: bytes, provider: str) -> Any:
    """An upstream's response body as JSON; one that is not JSON is the upstream's fault."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise not_json(provider) from exc


def upstream_error(
    refusal: Refusal, retry_after: str | None, provider: str, fault: Fault
) -> GatewayError:
    """Map an upstream's refusal to what our client sees.

    The upstream's own words always go to `detail`, for the operator. The client reads
    them only when they are about its own request or a plain outage: about the
    gateway's account or its rate limits (organisation ids, limits, credit) it reads a
    neutral sentence.
    """
    status = refusal.status
    said = f": {refusal.message}" if refusal.message else ""
    detail = (
        f"HTTP {status}"
        + (f" {refusal.code or refusal.type}" if refusal.code or refusal.type else "")
        + said
    )
    common = {"upstream_status": status, "fault": fault, "detail": detail}
    if fault is Fault.ACCOUNT:
        return UpstreamError(
            f"{provider} refused the gateway's account or credentials; tell the operator",
            **common,
        )
    if status == 429 and fault is Fault.REQUEST:
        return PayloadTooLarge(
            f"the request is over {provider}'s per-minute token limit for the gateway: "
            "send less input or ask for fewer completion tokens",
            **common,
        )
    if status == 429:
        return RateLimited(
            f"{provider} is rate limiting the gateway; retry later",
            headers={"Retry-After": retry_after} if retry_after else None,
            **common,
        )
    if status in (400, 422):
        return BadRequest(f"{provider} rejected the request{said}", **common)
    if status == 413:
        return PayloadTooLarge(f"{provider} rejected the request as too large{said}", **common)
    if status == 404:
        return UpstreamError(f"{provider} does not serve this model{said}", **common)
    if status in (503, 529):
        return UpstreamUnavailable(f"{provider} is unavailable{said}", **common)
    if status == 504:
        return UpstreamTimeout(f"{provider} timed out{said}", **common)
    return UpstreamError(f"{provider} failed with HTTP {status}{said}", **common)
