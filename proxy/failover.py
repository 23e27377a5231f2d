"""Trying a request's models in order until one answers, minding upstream health.

A model whose upstream is cooling down is skipped; a failure that is the
upstream's moves on to the next model and counts against its health; a failure
caused by the request is returned at once. Only failures before the response
starts move on: once a stream has begun, its end is reported to `ended`.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .catalog import Model
from .chat import ChatRequest
from .cooldown import Cooldowns
from .errors import GatewayError, UpstreamUnavailable
from .providers.base import Completion
from .relay import Relay, UpstreamStream
from .routing import judge, next_candidates

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Served(Generic[T]):
    model: Model
    result: T
    attempts: list[dict[str, object]]  # the failed attempts before it, in order


class Failover:
    def __init__(self, relay: Relay, cooldowns: Cooldowns) -> None:
        self._relay = relay
        self.cooldowns = cooldowns

    async def complete(
        self, models: list[Model], prepare: Callable[[Model], ChatRequest]
    ) -> Served[Completion]:
        served = await self._route(models, lambda m: self._relay.complete(prepare(m), m))
        self.cooldowns.succeeded(served.model.id)
        return served

    async def open_stream(
        self, models: list[Model], prepare: Callable[[Model], ChatRequest]
    ) -> Served[UpstreamStream]:
        return await self._route(models, lambda m: self._relay.open_stream(prepare(m), m))

    def ended(self, model: Model, error: GatewayError | None, abandoned: bool = False) -> None:
        """A stream that began has ended: its outcome is a verdict on the upstream."""
        if error is None and not abandoned:
            self.cooldowns.succeeded(model.id)
        elif error is not None and judge(error).cool:
            self.cooldowns.failed(model.id, error.message)
        else:
            self.cooldowns.release(model.id)

    async def _route(self, models: list[Model], call: Callable[[Model], Awaitable[T]]) -> Served[T]:
        attempts: list[dict[str, object]] = []
        queue, cooling = list(models), []
        last: GatewayError | None = None
        while queue:
            model = queue.pop(0)
            if not self.cooldowns.available(model.id):
                cooling.append(model)
                continue
            try:
                result = await call(model)
            except GatewayError as error:
                verdict = judge(error)
                attempts.append({"model": model.id, "status": error.status, "error": error.message})
                if verdict.cool:
                    self.cooldowns.failed(
                        model.id,
                        error.message,
                        retry_after=verdict.retry_after,
                        account_problem=verdict.account,
                    )
                else:
                    self.cooldowns.release(model.id)
                error.attempts = attempts
                if not verdict.move_on:
                    raise
                last = error
                queue = [m for m in next_candidates(models, model, verdict) if m in queue]
                continue
            except BaseException:
                self.cooldowns.release(model.id)
                raise
            return Served(model, result, attempts)
        if last is not None:
            raise last
        wait = min(self.cooldowns.retry_in(m.id) for m in cooling)
        error = UpstreamUnavailable(
            f"every upstream for {models[0].id} is cooling down after failures; "
            f"retry in {math.ceil(wait)} s",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
        error.attempts = attempts
        raise error
