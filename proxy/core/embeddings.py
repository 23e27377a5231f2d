"""The embeddings vocabulary: a request in OpenAI's shape, validated once, and an answer.

OpenAI's `input` is a string, an array of strings, one array of token ids, or an
array of token arrays; the gateway reads it once into texts or token arrays, with
exact messages for what it refuses, so every adapter and the money code see one
shape. The body stays a dict: fields the gateway does not read pass through to
OpenAI-compatible upstreams unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .chat import Usage, required_model
from .errors import BadRequest

MAX_INPUTS = 2048  # OpenAI's limit on the items of one request
MAX_TOKEN_ID = 2**31 - 1
ENCODINGS = ("float", "base64")
INPUT_SHAPES = (
    "'input' must be a string, an array of strings, an array of token ids or an array of "
    "token arrays"
)


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    body: dict[str, Any]  # the client's body, our routing fields taken out
    model: str
    texts: tuple[str, ...]  # the inputs as text; empty when they came as token ids
    tokens: tuple[tuple[int, ...], ...]  # the inputs as token ids; empty when they came as text
    dimensions: int | None  # the vector length asked for; None: the model's own
    encoding_format: str  # what the client gets: "float" lists or "base64" float32 bytes

    @property
    def count(self) -> int:
        """How many vectors the answer must carry."""
        return len(self.texts) or len(self.tokens)

    def size(self) -> int:
        """The input's UTF-8 bytes, or its token ids: a bound on its tokens for any
        byte-level tokenizer (a token covers at least one byte), before special tokens."""
        if self.tokens:
            return sum(len(t) for t in self.tokens)
        return sum(len(t.encode()) for t in self.texts)


@dataclass(slots=True)
class EmbeddingResult:
    data: dict[str, Any]  # OpenAI's `list` object, `model` our id, vectors in the client's encoding
    usage: Usage | None  # None: the upstream reported none (the input is counted instead)


def parse_embedding_request(body: Any) -> EmbeddingRequest:
    """Validate what the gateway relies on; say exactly what is wrong."""
    model = required_model(body)
    if body.get("input") is None:
        raise BadRequest("missing required parameter: 'input'", param="input")
    texts, tokens = _inputs(body["input"])
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ENCODINGS:
        raise BadRequest("'encoding_format' must be 'float' or 'base64'", param="encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None and (
        isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1
    ):
        raise BadRequest("'dimensions' must be a positive integer", param="dimensions")
    return EmbeddingRequest(
        body=body,
        model=model,
        texts=texts,
        tokens=tokens,
        dimensions=dimensions,
        encoding_format=encoding or "float",
    )


def _inputs(value: Any) -> tuple[tuple[str, ...], tuple[tuple[int, ...], ...]]:
    """(texts, token arrays): exactly one of them is non-empty."""
    if isinstance(value, str):
        if not value:
            raise BadRequest("'input' must not be an empty string", param="input")
        return (value,), ()
    if not isinstance(value, list):
        raise BadRequest(INPUT_SHAPES, param="input")
    if not value:
        raise BadRequest("'input' must not be an empty array", param="input")
    first = value[0]
    if isinstance(first, int | float) and not isinstance(first, bool):  # one input, as token ids
        return (), (_token_array(value, "input"),)
    if len(value) > MAX_INPUTS:
        raise BadRequest(
            f"'input' has {len(value)} items; at most {MAX_INPUTS} can be embedded in one request",
            param="input",
        )
    if isinstance(first, str):
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise BadRequest(f"'input[{i}]' must be a string, as 'input[0]' is", param="input")
            if not item:
                raise BadRequest(f"'input[{i}]' must not be an empty string", param="input")
        return tuple(value), ()
    if isinstance(first, list):
        arrays = []
        for i, item in enumerate(value):
            if not isinstance(item, list):
                raise BadRequest(
                    f"'input[{i}]' must be an array of token ids, as 'input[0]' is", param="input"
                )
            arrays.append(_token_array(item, f"input[{i}]"))
        return (), tuple(arrays)
    raise BadRequest(INPUT_SHAPES, param="input")


def _token_array(items: list[Any], where: str) -> tuple[int, ...]:
    if not items:
        raise BadRequest(f"'{where}' must not be an empty token array", param="input")
    for j, token in enumerate(items):
        if not _is_token(token):
            raise BadRequest(
                f"'{where}[{j}]' must be a token id: an integer from 0 to {MAX_TOKEN_ID}",
                param="input",
            )
    return tuple(items)


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKEN_ID
