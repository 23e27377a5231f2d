"""Trying a request's models in order until one answers, minding upstream health.

A model whose upstream is cooling down is skipped; a failure that is the
upstream's moves on to the next model and counts against its health; a failure
caused by the request is returned at once (`health.judge` decides which is which).
Only failures before the response starts move on. A stream that started is an
`OpenStream`, owned by the `async with` around it: leaving it closes the upstream
socket and reports how the stream ended, however it ended.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from ..core.chat import ChatRequest
from ..core.embeddings import EmbeddingRequest, EmbeddingResult
from ..core.errors import GatewayError, UpstreamUnavailable
from ..core.model import Model
from ..providers.base import Completion
from ..providers.embeddings import EmbeddingAdapter
from ..routing.plan import next_candidates
from .health import UpstreamHealth
from .relay import Relay
from .stream import UpstreamStream

T = TypeVar("T")
Attempts = list[dict[str, object]]  # the failed attempts, in order: {"model", "status", "error"}


class OpenStream:
    """An upstream stream that has started, owned by the `async with` block around it.

    Leaving the block closes the upstream socket and gives the upstream its verdict,
    whether the stream was read to the end, failed, or was left unread.
    """

    __slots__ = ("_health", "model", "stream")

    def __init__(self, model: Model, stream: UpstreamStream, health: UpstreamHealth) -> None:
        self.model = model
        self.stream = stream
        self._health = health

    async def __aenter__(self) -> OpenStream:
        return self

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        finished = exc is None and self.stream.finished
        with trio.CancelScope(shield=True):
            await self.stream.aclose()
        self._health.ended(self.model.id, self.stream.state.error, finished=finished)


class Failover:
    def __init__(
        self,
        relay: Relay,
        health: UpstreamHealth,
        on_fallback: Callable[[str, GatewayError], None] | None = None,
    ) -> None:
        self._relay = relay
        self.health = health
        self._on_fallback = on_fallback  # the metrics: (the model left behind, why)

    async def complete(
        self, models: list[Model], prepare: Callable[[Model], ChatRequest], attempts: Attempts
    ) -> tuple[Model, Completion]:
        """The first model that answers and its answer; failed attempts go into `attempts`."""
        model, completion = await self._route(
            models, lambda m: self._relay.complete(prepare(m), m), attempts
        )
        self.health.succeeded(model.id)
        return model, completion

    async def open_stream(
        self, models: list[Model], prepare: Callable[[Model], ChatRequest], attempts: Attempts
    ) -> OpenStream:
        """The first model whose stream starts, and that stream; `async with` it at once."""
        model, stream = await self._route(
            models, lambda m: self._relay.open_stream(prepare(m), m), attempts
        )
        return OpenStream(model, stream, self.health)

    async def count_tokens(self, model: Model, chat: ChatRequest) -> Any:
        """The upstream's own count of a Messages request's input tokens."""
        return await self._relay.count_tokens(chat, model)

    async def embed(
        self,
        models: list[Model],
        prepare: Callable[[Model], tuple[EmbeddingAdapter, EmbeddingRequest]],
        attempts: Attempts,
    ) -> tuple[Model, EmbeddingResult]:
        """The first model that embeds the input, and its answer, as `complete` does."""

        async def call(model: Model) -> EmbeddingResult:
            adapter, request = prepare(model)
            return await self._relay.embed(adapter, request, model)

        model, result = await self._route(models, call, attempts)
        self.health.succeeded(model.id)
        return model, result

    async def _route(
        self, models: list[Model], call: Callable[[Model], Awaitable[T]], attempts: Attempts
    ) -> tuple[Model, T]:
        queue, cooling = list(models), []
        last: GatewayError | None = None
        while queue:
            model = queue.pop(0)
            if not self.health.available(model.id):
                cooling.append(model)
                continue
            try:
                result = await call(model)
            except GatewayError as error:
                attempts.append({"model": model.id, "status": error.status, "error": error.message})
                verdict = self.health.failed(model.id, error)
                if not verdict.move_on:
                    raise
                last = error
                rest = next_candidates(models, model, larger_window=verdict.context)
                queue = [m for m in rest if m in queue]
                if queue and self._on_fallback is not None:
                    self._on_fallback(model.id, error)
                continue
            except BaseException:
                self.health.released(model.id)
                raise
            return model, result
        if last is not None:
            raise last
        wait = min(self.health.cooldowns.retry_in(m.id) for m in cooling)
        raise UpstreamUnavailable(
            f"every upstream for {models[0].id} is cooling down after failures; "
            f"retry in {math.ceil(wait)} s",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
