"""Google's `batchEmbedContents`, spoken to OpenAI embeddings clients.

Each input becomes one `EmbedContentRequest` (`outputDimensionality` for
`dimensions`); Google takes at most `BATCH` of them per call, so a larger request
is split into several calls whose answers are joined in order. Its answer
(`{"embeddings": [{"values": [...]}]}`) carries no token counts: the gateway counts
the input itself. Token ids cannot be sent: Gemini takes text only.
"""

from __future__ import annotations

from typing import Any

from ..core.embeddings import EmbeddingRequest, EmbeddingResult
from ..core.errors import GatewayError, UpstreamError
from ..core.model import Model
from .base import UpstreamRequest, json_body, load_object, read_refusal, upstream_error
from .embeddings import refuse_tokens, result
from .google_stream import error_from_google, fault

BATCH = 100  # "at most 100 requests can be in one batch"


class GoogleEmbeddings:
    takes_tokens = False

    def __init__(self, provider: str) -> None:
        self.provider = provider

    def embeddings_requests(
        self, request: EmbeddingRequest, model: Model, api_key: str | None
    ) -> list[UpstreamRequest]:
        refuse_tokens(request, model, self)
        headers = {"content-type": "application/json", "accept-encoding": "identity"}
        if api_key:
            headers["x-goog-api-key"] = api_key
        path = f"/v1beta/models/{model.upstream_id}:batchEmbedContents"
        name = f"models/{model.upstream_id}"
        items: list[dict[str, Any]] = []
        for text in request.texts:
            item: dict[str, Any] = {"model": name, "content": {"parts": [{"text": text}]}}
            if request.dimensions is not None:
                item["outputDimensionality"] = request.dimensions
            items.append(item)
        return [
            UpstreamRequest(path, headers, json_body({"requests": items[i : i + BATCH]}))
            for i in range(0, len(items), BATCH)
        ]

    def embeddings_response(
        self, bodies: list[bytes], request: EmbeddingRequest, model: Model
    ) -> EmbeddingResult:
        vectors: list[Any] = []
        for body in bodies:
            data = load_object(body, self.provider)
            if isinstance(data, dict) and "error" in data:
                raise error_from_google(self.provider, data["error"])
            embeddings = data.get("embeddings") if isinstance(data, dict) else None
            if not isinstance(embeddings, list):
                raise UpstreamError(f"{self.provider} sent a response without embeddings")
            vectors += [e.get("values") if isinstance(e, dict) else None for e in embeddings]
        return result(vectors, request, model, self.provider)

    def error(self, status: int, body: bytes, retry_after: str | None) -> GatewayError:
        refusal = read_refusal(status, body)
        return upstream_error(refusal, retry_after, self.provider, fault(refusal))
