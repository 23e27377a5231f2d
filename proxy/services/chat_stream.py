"""A chat answer as it streams: its owner, its typed events, and how it ends.

`ChatService.open_stream` returns an `OpenChatStream`; `async with` it to start the
stream (hold, route, the upstream's first byte) and get a `ChatStream` of typed
events (`core.chat`): `Chunks` (the OpenAI chunks one upstream read brought), then
exactly one of `StreamDone` or `StreamFailed`. Leaving the block releases everything the stream
holds (its settlement, the upstream socket and verdict, the key's stream slot),
whether the stream was read to the end, failed, was abandoned by its client, or was
never read at all. The owners are plain classes, not generators: nothing depends on
a generator having been started or closed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import trio

from ..access.ratelimit import RateLimiter
from ..core.chat import StreamEvent
from ..core.errors import GatewayError
from ..money.metering import CLIENT_CLOSED, Meter, Outcome
from ..upstream.failover import OpenStream
from ..upstream.stream import UpstreamStream

GONE = "the client went away"


class ChatStream:
    """Iterate once for the events; `headers` belong on the response that carries them."""

    __slots__ = ("_upstream", "headers")

    def __init__(self, upstream: UpstreamStream, headers: dict[str, str]) -> None:
        self.headers = headers
        self._upstream = upstream

    @property
    def native(self) -> bool:
        """Whether the events carry the upstream's own SSE bytes (a Messages request
        answered by an Anthropic upstream) rather than OpenAI chunks."""
        return self._upstream.translator.native

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._upstream  # the events come straight from the upstream's reads


class Unanswered:
    """Around the steps before an upstream answers: a failure there, or the client leaving,
    is the request's end and is recorded as its usage row (a refusal before the hold, such
    as a 402, is not a request that ran, and leaves none)."""

    __slots__ = ("_meter", "_outcome")

    def __init__(self, meter: Meter, outcome: Outcome) -> None:
        self._meter = meter
        self._outcome = outcome

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        outcome = self._outcome
        if isinstance(exc, GatewayError) and outcome.hold is not None:
            outcome.status, outcome.error = exc.status, exc.message
            await self._meter.record(outcome)
        elif isinstance(exc, trio.Cancelled):
            outcome.status, outcome.error = CLIENT_CLOSED, GONE
            await self._meter.record(outcome)


class OpenChatStream:
    """What `ChatService.open_stream` returns: the owner of one stream, for `async with`."""

    def __init__(
        self,
        outcome: Outcome,
        limiter: RateLimiter,
        meter: Meter,
        start: Callable[[], Awaitable[tuple[OpenStream, dict[str, str]]]],
    ) -> None:
        self._outcome = outcome
        self._limiter = limiter
        self._meter = meter
        self._start = start  # hold, route, open the upstream: (its stream, response headers)
        self._opened: OpenStream | None = None

    async def __aenter__(self) -> ChatStream:
        key = self._outcome.key
        await self._limiter.open_stream(key)  # 429 at the key's cap, before anything is held
        try:
            async with Unanswered(self._meter, self._outcome):
                opened, headers = await self._start()
        except BaseException:
            self._limiter.close_stream(key)
            raise
        self._opened = opened  # no checkpoint since it opened: nothing can leak in between
        self._outcome.model = opened.model
        return ChatStream(opened.stream, headers)

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        opened = self._opened
        assert opened is not None, "left a stream that never opened"
        try:
            await settle_stream(self._meter, self._outcome, opened.stream, exc)
        finally:
            try:
                await opened.__aexit__(exc_type, exc, tb)
            finally:
                self._limiter.close_stream(self._outcome.key)


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
