"""Token estimates (tiktoken, o200k_base) for when an upstream reports no usage.

The BPE ranks ship with the package, so nothing is fetched at run time. The
encoder loads in a worker thread before the gateway serves (~0.3 s, ~50 MB),
and large texts are counted in a worker thread so the event loop stays free.
"""

from __future__ import annotations

import base64
import functools
import gzip
from importlib import resources
from typing import Any

import tiktoken
import trio

from ..core.embeddings import EmbeddingRequest
from .prompt import IMAGE_TOKENS, TOKENS_PER_MESSAGE, TOKENS_PER_REPLY, shape

__all__ = ["IMAGE_TOKENS", "TOKENS_PER_MESSAGE", "TokenCounter", "load_o200k", "prompt_ceiling"]

INLINE_CHARS = 8_000  # below this, counting inline is cheaper than a thread hop

_O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)


@functools.cache  # immutable once built: one copy per process, however many apps
def load_o200k() -> tiktoken.Encoding:
    data = resources.files("proxy.data").joinpath("o200k_base.tiktoken.gz").read_bytes()
    ranks = {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in gzip.decompress(data).splitlines() if line)
    }
    encoding = tiktoken.Encoding(
        name="o200k_base",
        pat_str=_O200K_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    )
    # The encoder holds its own copy of the ranks; the Python dict is kept only to pickle
    # the encoding, which we never do, and weighs ~27 MB in every gateway process.
    encoding._mergeable_ranks = {}
    return encoding


def message_text(messages: list[Any]) -> tuple[str, int]:
    """The text of a conversation and its count of messages (images and audio count 0)."""
    parts: list[str] = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        parts.append(str(message.get("role", "")))
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(
                p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
            )
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                parts.append(str(function.get("name", "")))
                parts.append(str(function.get("arguments", "")))
        if isinstance(message.get("name"), str):
            parts.append(message["name"])
    return "\n".join(parts), len(messages)


def prompt_ceiling(body: dict[str, Any]) -> int:
    """A cheap upper bound on a chat body's prompt tokens: no tokenizer needed."""
    return shape(body).ceiling()


class TokenCounter:
    def __init__(self) -> None:
        self._encoding: tiktoken.Encoding | None = None
        self._lock = trio.Lock()

    async def load(self) -> None:
        """Load the encoder now, before serving: building it holds the GIL for ~0.3 s, which
        mid-traffic stalls every request of the process (p99 at c=1 went from 3 to 80-130
        ms), and a gateway meets its first estimate (a client that left) within minutes."""
        await self._encoder()

    async def _encoder(self) -> tiktoken.Encoding:
        if self._encoding is None:
            async with self._lock:
                if self._encoding is None:
                    self._encoding = await trio.to_thread.run_sync(load_o200k)
        return self._encoding

    async def count(self, text: str) -> int:
        if not text:
            return 0
        encoding = await self._encoder()
        if len(text) <= INLINE_CHARS:
            return len(encoding.encode_ordinary(text))
        return await trio.to_thread.run_sync(lambda: len(encoding.encode_ordinary(text)))

    async def count_request(self, body: dict[str, Any]) -> int:
        """A closer bound on a chat body's prompt tokens: its texts counted (see `prompt`)."""
        prompt = shape(body)
        if prompt.unbounded:
            return prompt.ceiling()
        return prompt.ceiling(await self.count(prompt.text.decode()))

    async def count_inputs(self, request: EmbeddingRequest) -> int:
        """An embeddings request's input tokens: its token ids, or its texts counted one by one
        (the whole batch in one worker thread when it is large)."""
        if request.tokens:
            return request.size()
        encoding = await self._encoder()
        texts = request.texts

        def count() -> int:
            return sum(len(encoding.encode_ordinary(text)) for text in texts)

        if sum(len(text) for text in texts) <= INLINE_CHARS:
            return count()
        return await trio.to_thread.run_sync(count)

    async def count_prompt(self, messages: list[Any]) -> int:
        text, n = message_text(messages)
        return await self.count(text) + n * TOKENS_PER_MESSAGE + TOKENS_PER_REPLY
