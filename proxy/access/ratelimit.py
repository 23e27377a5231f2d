"""Per-key request limits: GCRA for requests, a cap on concurrent streams.

A key's limits are its own overrides (`tokenroute admin set-limits`) over its
tier's (`[tiers.NAME]` in the config): `burst` requests at once, then `rps`. Every
`/v1` response carries OpenAI's `x-ratelimit-*` headers (limit: the burst; remaining;
reset: until the whole burst is free again) so that clients can pace themselves before
they hit a 429. Where the counts live is the `LimitStore` that `limit_store` picks from
the settings: this process, the workers' shared table on this machine, or Redis.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import trio

from ..core.config import Settings
from ..core.errors import ConfigError, RateLimited, ServiceUnavailable
from ..store import KeyRecord
from .limit_store import LimitStore, MemoryLimits
from .machine_limits import MachineLimits
from .shared_state import SharedState


@dataclass(frozen=True, slots=True)
class Limits:
    rps: float
    burst: int
    max_streams: int

    @property
    def interval(self) -> float:
        """Seconds between requests at the sustained rate."""
        return 1.0 / self.rps


def limit_store(settings: Settings) -> LimitStore:
    """Where this process keeps keys' limits and shares cooldowns: Redis when configured
    (gateways on several machines), else the supervisor's table when this process is one
    of its workers, else this process's memory."""
    scale = settings.scale
    if scale.redis_url:
        from .redis_limits import RedisLimits  # redis-py is imported only by who uses it

        return RedisLimits(
            scale.redis_url, reclaim_after=scale.reclaim_after, heartbeat=scale.heartbeat
        )
    if settings.worker is not None:
        worker = settings.worker
        try:
            state = SharedState.open(worker.shared_state, worker.index)
        except (OSError, ValueError) as exc:  # the supervisor makes it before its workers
            raise ConfigError(f"the workers' shared table {worker.shared_state}: {exc}") from exc
        return MachineLimits(state)
    return MemoryLimits()


class RateLimiter:
    def __init__(
        self,
        settings: Settings,
        store: LimitStore | None = None,
        *,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self._settings = settings
        self._store = store if store is not None else MemoryLimits(clock)
        self._streams: dict[str, int] = {}  # this process's, for the metrics

    def limits(self, key: KeyRecord) -> Limits:
        tier = self._settings.tier(key.tier)
        return Limits(
            rps=key.rps if key.rps is not None else tier.rps,
            burst=max(1, key.burst if key.burst is not None else tier.burst),
            max_streams=key.max_streams if key.max_streams is not None else tier.max_streams,
        )

    async def take(self, key: KeyRecord) -> dict[str, str]:
        """Count one request; its rate-limit headers, or raise 429 carrying them (503 when
        the store that holds the limits cannot be reached)."""
        limits = self.limits(key)
        admission = await self._store.admit(key.id, limits.interval, limits.burst)
        headers = _headers(limits, admission.ahead)
        if admission.admitted:
            return headers
        wait = max(0.0, admission.ahead + limits.interval - limits.burst * limits.interval)
        headers["retry-after"] = str(max(1, math.ceil(wait)))
        raise RateLimited(
            f"rate limit reached for this key: {limits.burst} requests at once, then "
            f"{limits.rps:g} per second; retry in {_duration(wait)}",
            headers=headers,
        )

    async def peek(self, key: KeyRecord) -> dict[str, str]:
        """The headers without counting a request; none when the store cannot be reached
        (they are advice, and an answer that does not count a request needs no store)."""
        limits = self.limits(key)
        try:
            return _headers(limits, await self._store.ahead(key.id))
        except ServiceUnavailable:
            return {}

    async def open_stream(self, key: KeyRecord) -> None:
        """Count a stream in; raise 429 at the key's cap. Pair with `close_stream`."""
        cap = self.limits(key).max_streams
        opened, open_now = await self._store.open_stream(key.id, cap)
        if not opened:
            raise RateLimited(
                f"this key already has {open_now} streams open (its limit is {cap}); "
                "wait for one to finish",
                headers={"retry-after": "1"},
            )
        self._streams[key.id] = self._streams.get(key.id, 0) + 1

    @property
    def open_streams(self) -> int:
        """Streams open now in this process, all keys together (read when metrics are
        scraped)."""
        return sum(self._streams.values())

    def close_stream(self, key: KeyRecord) -> None:
        """Never waits: it runs in cancelled and shielded cleanup."""
        left = self._streams.get(key.id, 0) - 1
        if left < 0:
            return
        if left:
            self._streams[key.id] = left
        else:
            del self._streams[key.id]
        self._store.close_stream(key.id)


def _headers(limits: Limits, ahead: float) -> dict[str, str]:
    """`ahead`: seconds the key's TAT is ahead of now (0: its whole burst is free)."""
    ahead = max(0.0, ahead)
    free = (limits.burst * limits.interval - ahead) / limits.interval
    return {
        "x-ratelimit-limit-requests": str(limits.burst),
        "x-ratelimit-remaining-requests": str(max(0, min(limits.burst, math.floor(free + 1e-9)))),
        "x-ratelimit-reset-requests": _duration(ahead),
    }


def _duration(seconds: float) -> str:
    """OpenAI's spelling: "20ms", "1.5s", "2m30s"."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    if seconds < 60:
        return f"{math.ceil(seconds * 10) / 10:g}s"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s"
