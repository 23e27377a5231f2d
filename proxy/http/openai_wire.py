"""OpenAI's wire format: the one renderer of errors, completions, stream events and models.

Every `/v1` error is OpenAI's envelope `{"error": {"message", "type", "code"}}`,
`code` being the HTTP status as the seeds' table shows; a stream that fails ends
with that envelope as its last event, one that succeeds with `data: [DONE]`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ..core.errors import Fault, GatewayError
from ..core.model import AUTO_MODEL, CHAT, Model
from ..core.sse import DONE, encode_data
from ..services import ChatService, Chunks, StreamEvent, StreamFailed

JSON = "application/json"
STREAM_HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
}


def client_message(error: GatewayError, request_id: str | None = None) -> str:
    """What a client reads of an error; of one about the operator's account, the id to quote."""
    if request_id and error.fault is Fault.ACCOUNT:  # the operator finds the details by it
        return f"{error.message}; quote request id {request_id}"
    return error.message


def error_body(error: GatewayError, request_id: str | None = None) -> dict[str, object]:
    message = client_message(error, request_id)
    body: dict[str, object] = {"message": message, "type": error.type, "code": error.status}
    if error.param is not None:
        body["param"] = error.param
    return {"error": body}


def render_error(
    error: GatewayError, context: Mapping[str, str] | None = None, request_id: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of an error; `context` headers (rate limits, route) go under
    the error's own."""
    headers = {**(context or {}), **error.headers, "content-type": JSON}
    return error.status, headers, orjson.dumps(error_body(error, request_id))


def render_event(event: StreamEvent) -> bytes:
    """One stream event as SSE bytes."""
    dumps = orjson.dumps
    if type(event) is Chunks:  # the hot path: one `data:` event per chunk
        return b"".join([b"data: " + dumps(item) + b"\n\n" for item in event.items])
    if isinstance(event, StreamFailed):
        return encode_data(orjson.dumps(error_body(event.error)))
    return DONE


def model_entry(model: Model) -> dict[str, object]:
    return {
        "id": model.id,
        "object": "model",
        "created": 0,
        "owned_by": model.provider,
        "pricing": model.pricing(),
        "context_length": model.context_length,
        "kind": model.kind,  # "chat" (/v1/chat/completions) or "embedding" (/v1/embeddings)
    }


def auto_entry(model_id: str, tiers: Mapping[str, list[Model]]) -> dict[str, object]:
    """tokenroute/auto as GET /v1/models lists it: what each tier is served by."""
    windows = [m.context_length for models in tiers.values() for m in models if m.context_length]
    return {
        "id": model_id,
        "object": "model",
        "created": 0,
        "owned_by": "tokenroute",
        "pricing": None,  # the served model's price applies
        "context_length": max(windows, default=None),
        "kind": CHAT,
        "tiers": {tier: [m.id for m in models] for tier, models in tiers.items()},
    }


def models_json(chat: ChatService) -> dict[str, Any]:
    """GET /v1/models: tokenroute/auto (when it routes anywhere), then every listed model."""
    tiers = chat.auto_tiers()
    entries = [model_entry(m) for m in chat.models()]
    if tiers is not None:
        entries.insert(0, auto_entry(AUTO_MODEL, tiers))
    return {"object": "list", "data": entries}
