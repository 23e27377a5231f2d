"""An open upstream stream, read batch by batch, and the shutdown cut for all of them.

`UpstreamStream` is a plain async iterator, not a generator: it holds no cleanup of
its own. Whoever opened it closes it (`aclose`, see `Failover.stream`), whether it
was read to the end, cut short, or never read at all.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx2 as httpx
import trio

from ..core.chat import Chunk, Chunks, StreamDone, StreamEvent, StreamFailed
from ..core.errors import Fault, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from ..providers.stream import StreamTranslator


class StreamCutter:
    """Ends every open stream cleanly on demand (graceful shutdown past its grace period).

    Only the wait for the next upstream chunk is cancellable: a stream that is cut
    still sends its client an error event and records its usage.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self._scopes: set[trio.CancelScope] = set()

    def cut(self, reason: str) -> None:
        self.reason = reason
        for scope in self._scopes:
            scope.cancel()

    @property
    def open_reads(self) -> int:
        return len(self._scopes)

    def scope(self, timeout: float) -> trio.CancelScope:
        """A cancel scope for one wait on the upstream; `release` it afterwards."""
        scope = trio.CancelScope(deadline=trio.current_time() + timeout)
        if self.reason is not None:
            scope.cancel()
        self._scopes.add(scope)
        return scope

    def release(self, scope: trio.CancelScope) -> None:
        self._scopes.discard(scope)


class UpstreamStream:
    """The stream's events as upstream reads bring them: `Chunks`, then `StreamDone` or
    `StreamFailed`; `state` says what the stream carried and how it ended.

    Events already buffered from one upstream read come out as one batch, and one
    cancel scope (shutdown cut + idle deadline) covers each batch: under load this,
    not parsing, is what a relayed chunk costs.
    """

    def __init__(
        self,
        response: httpx.Response,
        translator: StreamTranslator,
        idle_timeout: float,
        cutter: StreamCutter,
    ) -> None:
        self.translator = translator
        self.state = translator.state
        self.first_byte_at: float | None = None
        self._response = response
        self._raw = response.aiter_raw()
        self._more_buffered = _buffered_probe(response)
        self._idle = idle_timeout
        self._cutter = cutter
        self._upstream_closed = False
        self._ending: list[StreamEvent] | None = None  # the last events, once the reading is over
        self._finished = False  # the upstream closed cleanly and every chunk came out

    @property
    def finished(self) -> bool:
        return self._finished

    def __aiter__(self) -> UpstreamStream:
        return self

    async def __anext__(self) -> StreamEvent:
        state = self.state
        while not self._upstream_closed and state.error is None:
            batch = await self._read()
            if batch:
                if self.first_byte_at is None:
                    self.first_byte_at = trio.current_time()
                return Chunks(batch)
        ending = self._ending
        if ending is None:
            ending = self._ending = []
            tail = self.translator.finish() if state.error is None else []
            if tail:
                ending.append(Chunks(tail))
            self._finished = state.error is None
            ending.append(StreamDone() if state.error is None else StreamFailed(state.error))
        if ending:
            return ending.pop(0)
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Close the upstream response (and its socket); call it shielded."""
        await self._raw.aclose()  # type: ignore[attr-defined]
        await self._response.aclose()

    async def _read(self) -> list[Chunk]:
        """Chunks from one or more upstream reads: stops at the first read that completes
        events and leaves nothing more buffered, at the end, or at an error."""
        state, feed, more_buffered = self.state, self.translator.feed, self._more_buffered
        pending: list[Chunk] = []
        scope = self._cutter.scope(self._idle)
        try:
            with scope:
                while True:
                    try:
                        chunk = await self._raw.__anext__()
                    except StopAsyncIteration:
                        self._upstream_closed = True
                        break
                    pending += feed(chunk)
                    if state.error is not None or (pending and not more_buffered()):
                        break
        except httpx.HTTPError as exc:
            state.error = UpstreamError(f"the upstream connection failed mid-stream: {why(exc)}")
        finally:
            self._cutter.release(scope)
        if scope.cancelled_caught:
            reason = self._cutter.reason
            state.error = (
                UpstreamUnavailable(reason, fault=Fault.GATEWAY)
                if reason
                else UpstreamTimeout(f"the upstream sent nothing for {self._idle:g} s mid-stream")
            )
        return pending


def why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _buffered_probe(response: httpx.Response) -> Callable[[], bool]:
    """Whether the upstream connection already holds the next complete event.

    httpcore hands out one HTTP chunk per iteration even when many arrived in one
    read; peeking at its h11 buffer lets all of them go to the client in one write.
    """
    try:
        h11_state = response.stream._httpcore_stream._stream._connection._h11_state  # type: ignore[attr-defined]
        buffer = h11_state._receive_buffer
    except AttributeError:
        return lambda: False
    return lambda: len(buffer) > 0 and (b"\n\n" in buffer._data or b"\r\n\r\n" in buffer._data)
