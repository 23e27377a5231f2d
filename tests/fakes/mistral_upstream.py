"""A fake Mistral upstream: the fake OpenAI one with Mistral's embeddings API.

Mistral's `POST /v1/embeddings` takes `output_dimension` (not `dimensions`), text
only (no token ids), answers floats with OpenAI's `list` shape and usage, and
refuses fields it does not know with a 422, as Mistral's validation does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quart import Response

from tests.fakes import embedding_vectors as vectors
from tests.fakes.openai_upstream import FakeOpenAI, _json

FIELDS = frozenset(["model", "input", "output_dimension", "output_dtype", "encoding_format"])


def invalid(location: str, kind: str, message: str) -> Response:
    """Mistral's 422: its validator's detail, inside its error envelope."""
    detail = [{"type": kind, "loc": ["body", location], "msg": message}]
    error = {"object": "error", "message": {"detail": detail}, "type": "invalid_request_error"}
    return _json({**error, "param": None, "code": None}, 422)


@dataclass
class FakeMistral(FakeOpenAI):
    def _embeddings(self, body: dict[str, Any]) -> Response:
        unknown = sorted(set(body) - FIELDS)
        if unknown:
            return invalid(unknown[0], "extra_forbidden", "Extra inputs are not permitted")
        items = vectors.inputs(body["input"])
        if not all(isinstance(item, str) for item in items):
            return invalid("input", "string_type", "Input should be a valid string")
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": vectors.vector(item, body.get("output_dimension")),
            }
            for i, item in enumerate(items)
        ]
        used = sum(vectors.tokens(item) for item in items)
        usage = {"prompt_tokens": used, "total_tokens": used, "completion_tokens": 0}
        answer = {"id": "embd-fake", "object": "list", "data": data, "model": body["model"]}
        return _json({**answer, "usage": usage}, 200)
