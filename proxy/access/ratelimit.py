"""Per-key request limits: a token bucket for requests, a cap on concurrent streams.

A key's limits are its own overrides (`tokenroute admin set-limits`) over its
tier's (`[tiers.NAME]` in the config). The bucket holds `burst` requests and
refills at `rps`; every `/v1` response carries OpenAI's `x-ratelimit-*` headers
so that clients can pace themselves before they hit a 429.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import trio

from ..core.config import Settings
from ..core.errors import RateLimited
from ..store import KeyRecord

IDLE_FORGET = 600.0  # seconds: a full bucket idle this long is dropped


@dataclass(frozen=True, slots=True)
class Limits:
    rps: float
    burst: int
    max_streams: int


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, settings: Settings, clock: Callable[[], float] = trio.current_time):
        self._settings = settings
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._streams: dict[str, int] = {}

    def limits(self, key: KeyRecord) -> Limits:
        tier = self._settings.tier(key.tier)
        return Limits(
            rps=key.rps if key.rps is not None else tier.rps,
            burst=key.burst if key.burst is not None else tier.burst,
            max_streams=key.max_streams if key.max_streams is not None else tier.max_streams,
        )

    def take(self, key: KeyRecord) -> dict[str, str]:
        """Count one request; its rate-limit headers, or raise 429 carrying them."""
        limits = self.limits(key)
        bucket = self._refill(key.id, limits)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return _headers(limits, bucket)
        wait = (1 - bucket.tokens) / limits.rps
        headers = _headers(limits, bucket)
        headers["retry-after"] = str(max(1, math.ceil(wait)))
        raise RateLimited(
            f"rate limit reached for this key: {limits.burst} requests at once, then "
            f"{limits.rps:g} per second; retry in {_duration(wait)}",
            headers=headers,
        )

    def peek(self, key: KeyRecord) -> dict[str, str]:
        """The headers without counting a request."""
        limits = self.limits(key)
        return _headers(limits, self._refill(key.id, limits))

    def open_stream(self, key: KeyRecord) -> None:
        """Count a stream in; raise 429 at the key's cap. Pair with `close_stream`."""
        cap = self.limits(key).max_streams
        open_now = self._streams.get(key.id, 0)
        if open_now >= cap:
            raise RateLimited(
                f"this key already has {open_now} streams open (its limit is {cap}); "
                "wait for one to finish",
                headers={"retry-after": "1"},
            )
        self._streams[key.id] = open_now + 1

    @property
    def open_streams(self) -> int:
        """Streams open now, all keys together (read when metrics are scraped)."""
        return sum(self._streams.values())

    def close_stream(self, key: KeyRecord) -> None:
        left = self._streams.get(key.id, 0) - 1
        if left > 0:
            self._streams[key.id] = left
        else:
            self._streams.pop(key.id, None)

    def forget_idle(self) -> int:
        """Drop buckets that are full and idle; how many went."""
        now = self._clock()
        stale = [k for k, b in self._buckets.items() if now - b.at > IDLE_FORGET]
        for key_id in stale:
            del self._buckets[key_id]
        return len(stale)

    async def housekeeping(self) -> None:
        while True:
            await trio.sleep(IDLE_FORGET / 2)
            self.forget_idle()

    def _refill(self, key_id: str, limits: Limits) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = _Bucket(float(limits.burst), now)
        else:
            bucket.tokens = min(limits.burst, bucket.tokens + (now - bucket.at) * limits.rps)
            bucket.at = now
        return bucket


def _headers(limits: Limits, bucket: _Bucket) -> dict[str, str]:
    return {
        "x-ratelimit-limit-requests": str(limits.burst),
        "x-ratelimit-remaining-requests": str(max(0, math.floor(bucket.tokens))),
        "x-ratelimit-reset-requests": _duration((limits.burst - bucket.tokens) / limits.rps),
    }


def _duration(seconds: float) -> str:
    """OpenAI's spelling: "20ms", "1.5s", "2m30s"."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    if seconds < 60:
        return f"{math.ceil(seconds * 10) / 10:g}s"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s"
