"""The shared shape of stream translators: upstream SSE bytes in, OpenAI chunks out.

Each provider's translator decodes its upstream's events (`feed` as bytes arrive,
`finish` when the upstream closes) and returns OpenAI `chat.completion.chunk`
objects, built by `encode`; `state` gathers what billing and upstream health need:
usage, the text relayed (for an estimate), whether the upstream said it finished,
and the error that ended the stream.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..core.chat import Chunk, Usage
from ..core.errors import GatewayError, UpstreamError
from ..core.model import Price
from ..core.money import format_usd
from ..core.sse import Decoder, Event, LineTooLong


@dataclass(slots=True)
class StreamState:
    """What a stream translator learned so far."""

    usage: Usage | None = None  # once the upstream reported it
    output: list[str] = field(default_factory=list)
    done: bool = False  # the upstream said it finished
    error: GatewayError | None = None  # the upstream failed mid-stream
    content_sent: bool = False  # output reached the client

    @property
    def output_text(self) -> str:
        return "".join(self.output)


class StreamTranslator(ABC):
    def __init__(
        self, provider: str, model_id: str, include_usage: bool, price: Price | None = None
    ) -> None:
        self.state = StreamState()
        self.provider = provider
        self.model_id = model_id
        self.include_usage = include_usage  # the client asked for the usage chunk
        self.price = price  # to show the client what the usage costs
        self.chunk_id = "chatcmpl-"
        self.native = False  # relays the upstream's own events (bytes) rather than chunks
        self.created = int(time.time())
        self._decoder = Decoder()

    def feed(self, chunk: bytes) -> list[Chunk]:
        """Raw upstream bytes in; the client's chunks they complete out."""
        try:
            events = self._decoder.feed(chunk)
        except LineTooLong as exc:
            self.state.error = UpstreamError(f"{self.provider} sent a stream line too long: {exc}")
            return []
        return self._translate(events)

    def finish(self) -> list[Chunk]:
        """The upstream closed: whatever chunks remain."""
        out = self._translate(self._decoder.flush())
        return out + self._ended() if self.state.error is None else out

    def priced(self, usage_object: dict[str, Any], usage: Usage) -> dict[str, Any]:
        """OpenAI's `usage` object with `cost` (USD) added: what this usage is billed."""
        if self.price is None:
            return usage_object
        return {**usage_object, "cost": format_usd(self.price.cost(usage))}

    def encode(self, choices: list[Any], **extra: Any) -> Chunk:
        """A chunk of this stream carrying `choices` (and e.g. `usage`)."""
        return {
            "id": self.chunk_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model_id,
            "choices": choices,
            **extra,
        }

    @abstractmethod
    def _event(self, event: Event) -> list[Chunk]:
        """One upstream event; set `state.error` to end the stream."""

    def _ended(self) -> list[Chunk]:
        """Chunks owed once the upstream closed cleanly."""
        return []

    def _translate(self, events: list[Event]) -> list[Chunk]:
        out: list[Chunk] = []
        for event in events:
            if self.state.error is not None:
                break
            out.extend(self._event(event))
        return out

    def _object(self, text: str) -> dict[str, Any] | None:
        """An event's JSON object; anything else ends the stream as malformed."""
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            self.state.error = UpstreamError(f"{self.provider} sent a malformed stream event")
            return None
        return data

    def _sent(self, texts: list[str]) -> None:
        """Record output relayed to the client, for an estimate should usage never come."""
        self.state.output.extend(texts)
        self.state.content_sent = True
