"""A chat answer as it streams: typed events for the surface to render, and how it ends.

Events: `Chunks` (the OpenAI chunks one upstream read brought), then exactly one
of `StreamDone` or `StreamFailed`. However the stream ends, `settle_stream` turns
what happened into the request's usage row and settlement.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from ..core.errors import GatewayError
from ..money.metering import Meter, Outcome
from ..providers.stream import Chunk
from ..upstream.stream import UpstreamStream

CLIENT_CLOSED = 499  # nginx's status for a request the client abandoned
GONE = "the client went away"


@dataclass(frozen=True, slots=True)
class Chunks:
    items: list[Chunk]  # OpenAI chat.completion.chunk objects, in order


@dataclass(frozen=True, slots=True)
class StreamDone:
    """The answer is complete."""


@dataclass(frozen=True, slots=True)
class StreamFailed:
    error: GatewayError  # the upstream failed (or the gateway is shutting down) mid-stream


StreamEvent = Chunks | StreamDone | StreamFailed


class ChatStream:
    """Iterate once for the events; `headers` belong on the response that carries them."""

    def __init__(self, upstream: UpstreamStream, headers: dict[str, str]) -> None:
        self.headers = headers
        self._upstream = upstream
        self._over = False

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> StreamEvent:
        if self._over:
            raise StopAsyncIteration
        try:
            return Chunks(await self._upstream.__anext__())
        except StopAsyncIteration:
            self._over = True
            error = self._upstream.state.error
            return StreamDone() if error is None else StreamFailed(error)


async def settle_stream(
    meter: Meter, outcome: Outcome, upstream: UpstreamStream, failure: BaseException | None
) -> None:
    """Record how a stream ended: safe to await inside a cancelled scope."""
    state = upstream.state
    if isinstance(failure, trio.Cancelled):
        outcome.status, outcome.error = CLIENT_CLOSED, GONE
    elif failure is not None:
        outcome.status, outcome.error = 500, repr(failure)
    elif state.error is not None:
        outcome.status, outcome.error = state.error.status, state.error.message
    elif not upstream.finished:  # the surface stopped reading: its client went away
        outcome.status, outcome.error = CLIENT_CLOSED, GONE
    outcome.usage, outcome.output_text = state.usage, state.output_text
    outcome.first_byte_at = upstream.first_byte_at
    await meter.record(outcome)
