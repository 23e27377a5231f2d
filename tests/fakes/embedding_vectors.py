"""The vectors and token counts every fake embeddings upstream answers with.

Deterministic, so a test computes what the gateway must relay; every value is a
multiple of 1/128 in [-1, 1), exact in float32, so base64 (float32) and float
answers are equal to the last bit.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

DIMENSIONS = 8  # the fakes' own vector length when none is asked for


def vector(item: str | list[int], dimensions: int | None = None) -> list[float]:
    """The vector of one input (a text or a token array)."""
    seed = sum(item.encode()) if isinstance(item, str) else sum(item) + len(item)
    return [((seed + 37 * k) % 256 - 128) / 128 for k in range(dimensions or DIMENSIONS)]


def tokens(item: str | list[int]) -> int:
    """What a fake bills for one input: its words, or its token ids."""
    return len(item.split()) if isinstance(item, str) else len(item)


def inputs(value: Any) -> list[str | list[int]]:
    """OpenAI's `input` as a list of inputs."""
    if isinstance(value, str):
        return [value]
    if value and isinstance(value[0], int):
        return [value]
    return list(value)


def as_base64(values: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def from_base64(text: str) -> list[float]:
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))
