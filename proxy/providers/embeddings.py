"""Embeddings adapters: OpenAI's request to each upstream's, and its answer back to OpenAI's.

No I/O. An OpenAI-compatible upstream gets the client's body with only `model`
renamed, and answers in OpenAI's shape already. Mistral takes `output_dimension`
for `dimensions`, refuses fields it does not know and token ids, and is asked for
floats (the gateway encodes base64 itself, exactly as OpenAI does). Google is in
`google_embeddings`. An adapter may split a request into several upstream calls
(an upstream that takes fewer inputs at once); the relay sends them in order and
hands every answer back together.
"""

from __future__ import annotations

import base64
import struct
from typing import Any, Protocol

from ..core.chat import Usage, token_count
from ..core.embeddings import EmbeddingRequest, EmbeddingResult
from ..core.errors import BadRequest, GatewayError, UpstreamError
from ..core.model import Model
from .base import UpstreamRequest, json_body, load_object, read_refusal, upstream_error
from .openai import fault

Vector = list[float] | str  # floats, or OpenAI's base64 of little-endian float32


class EmbeddingAdapter(Protocol):
    provider: str
    takes_tokens: bool  # whether input given as token ids can be sent

    def embeddings_requests(
        self, request: EmbeddingRequest, model: Model, api_key: str | None
    ) -> list[UpstreamRequest]: ...

    def embeddings_response(
        self, bodies: list[bytes], request: EmbeddingRequest, model: Model
    ) -> EmbeddingResult: ...

    def error(self, status: int, body: bytes, retry_after: str | None) -> GatewayError:
        """The error for an upstream's HTTP error response."""
        ...


class OpenAIEmbeddings:
    """OpenAI and the servers that copy its API: the body passes through."""

    takes_tokens = True

    def __init__(self, provider: str) -> None:
        self.provider = provider

    def embeddings_requests(
        self, request: EmbeddingRequest, model: Model, api_key: str | None
    ) -> list[UpstreamRequest]:
        body = {**request.body, "model": model.upstream_id}
        return [UpstreamRequest("/embeddings", json_headers(api_key), json_body(body))]

    def embeddings_response(
        self, bodies: list[bytes], request: EmbeddingRequest, model: Model
    ) -> EmbeddingResult:
        [body] = bodies
        return openai_result(body, request, model, self.provider)

    def error(self, status: int, body: bytes, retry_after: str | None) -> GatewayError:
        refusal = read_refusal(status, body)
        return upstream_error(refusal, retry_after, self.provider, fault(refusal))


class MistralEmbeddings(OpenAIEmbeddings):
    """Mistral's `/v1/embeddings`: OpenAI's answer, its own request fields, text only."""

    takes_tokens = False

    def embeddings_requests(
        self, request: EmbeddingRequest, model: Model, api_key: str | None
    ) -> list[UpstreamRequest]:
        refuse_tokens(request, model, self)
        body: dict[str, Any] = {"model": model.upstream_id, "input": list(request.texts)}
        if request.dimensions is not None:
            body["output_dimension"] = request.dimensions
        return [UpstreamRequest("/embeddings", json_headers(api_key), json_body(body))]


def json_headers(api_key: str | None) -> dict[str, str]:
    headers = {"content-type": "application/json", "accept-encoding": "identity"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    return headers


def refuse_tokens(request: EmbeddingRequest, model: Model, adapter: EmbeddingAdapter) -> None:
    if request.tokens and not adapter.takes_tokens:
        raise BadRequest(
            f"{model.id} takes text only: send 'input' as a string or an array of strings, "
            "not token ids",
            param="input",
        )


def openai_result(
    body: bytes, request: EmbeddingRequest, model: Model, provider: str
) -> EmbeddingResult:
    """An OpenAI `list` of embeddings, checked, in the client's encoding, with our model id."""
    data = load_object(body, provider)
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list) or len(items) != request.count:
        raise UpstreamError(
            f"{provider} sent {_how_many(items)} embeddings for {request.count} inputs"
        )
    for item in items:
        if not isinstance(item, dict):
            raise UpstreamError(f"{provider} sent an embedding that is not an object")
        item["embedding"] = encode(item.get("embedding"), request.encoding_format, provider)
    data["model"] = model.id
    return EmbeddingResult(data, input_usage(data.get("usage")))


def result(
    vectors: list[Any], request: EmbeddingRequest, model: Model, provider: str
) -> EmbeddingResult:
    """OpenAI's `list` object for vectors an upstream sent in its own shape (no usage)."""
    if len(vectors) != request.count:
        raise UpstreamError(f"{provider} sent {len(vectors)} embeddings for {request.count} inputs")
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": encode(v, request.encoding_format, provider),
        }
        for i, v in enumerate(vectors)
    ]
    return EmbeddingResult({"object": "list", "data": data, "model": model.id}, None)


def input_usage(data: Any) -> Usage | None:
    """OpenAI's embeddings `usage` (`prompt_tokens`, `total_tokens`); None when absent."""
    prompt = token_count(data.get("prompt_tokens")) if isinstance(data, dict) else None
    return None if prompt is None else Usage(prompt_tokens=prompt)


def encode(vector: Any, encoding: str, provider: str) -> Vector:
    """A vector in the encoding the client asked for, whichever the upstream sent."""
    if isinstance(vector, str):
        if encoding == "base64":
            return vector
        try:
            raw = base64.b64decode(vector, validate=True)
            return list(struct.unpack(f"<{len(raw) // 4}f", raw))  # a partial float: error
        except (ValueError, struct.error) as exc:
            raise UpstreamError(f"{provider} sent an embedding that is not base64 float32") from exc
    if not isinstance(vector, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in vector
    ):
        raise UpstreamError(f"{provider} sent an embedding that is not a list of numbers")
    if encoding == "float":
        return vector
    try:
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    except (struct.error, OverflowError) as exc:
        raise UpstreamError(f"{provider} sent an embedding outside float32's range") from exc


def _how_many(items: Any) -> str:
    return str(len(items)) if isinstance(items, list) else "no"
