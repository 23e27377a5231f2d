"""Where a key's rate-limit time and open streams live, behind one small protocol.

A key's rate is limited with GCRA: one number per key, its theoretical arrival time
(TAT). A request at `now` moves the TAT to `max(tat, now) + interval` if that stays
within `burst` intervals of `now`; the same bucket as before (a burst, then `rps`), but a
single value that a shared store can change in one step. Three stores keep it: this
process's memory (`MemoryLimits`, the default, on trio's clock so tests run on a
MockClock), this machine's shared table (`machine_limits.MachineLimits`) and Redis
(`redis_limits.RedisLimits`). `ratelimit.limit_store` picks one; nothing else knows which.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import trio

IDLE_FORGET = 600.0  # seconds between sweeps of keys whose limits are back to full
EPSILON = 1e-9  # float slack: the burst-th request of a full bucket is never refused


@dataclass(frozen=True, slots=True)
class Admission:
    admitted: bool
    ahead: float  # seconds the key's TAT is ahead of now, after this request if admitted


class SharedCooldowns(Protocol):
    """Upstream cooldown verdicts shared by processes, in `time.monotonic()` seconds."""

    def cooling_until(self, upstream: str) -> float: ...  # 0.0: healthy
    def cool(self, upstream: str, until: float) -> None: ...
    def clear(self, upstream: str) -> None: ...


class LimitStore(Protocol):
    """A key's GCRA time and its open streams; `cooldowns` when verdicts are shared."""

    @property
    def cooldowns(self) -> SharedCooldowns | None: ...

    async def admit(self, key_id: str, interval: float, burst: int) -> Admission: ...

    async def ahead(self, key_id: str) -> float: ...

    async def open_stream(self, key_id: str, cap: int) -> tuple[bool, int]:
        """(opened, streams open for the key now, all processes together)."""
        ...

    def close_stream(self, key_id: str) -> None:
        """Never waits: it runs in cancelled and shielded cleanup."""
        ...

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Background work (sweeps, heartbeats, queued writes) until cancelled."""
        ...

    async def aclose(self) -> None:
        """Before `run` is cancelled: hand over what is queued, bounded in time."""
        ...


def gcra(tat: float, now: float, interval: float, burst: int) -> tuple[bool, float]:
    """(admitted, the key's TAT afterwards): one request at `now`."""
    tat = max(tat, now)
    after = tat + interval
    if after - now > burst * interval + EPSILON:
        return False, tat
    return True, after


class Throttled:
    """A warning logged at most once per `every` seconds (a full table, Redis down)."""

    def __init__(self, log: logging.Logger, every: float = 60.0) -> None:
        self._log = log
        self._every = every
        self._last = -every

    def __call__(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            self._log.warning(message, *args)


class MemoryLimits:
    """One process's limits: the default store, and a shared store's fallback for a key
    that found no room in it."""

    cooldowns: SharedCooldowns | None = None

    def __init__(self, clock: Callable[[], float] = trio.current_time) -> None:
        self._clock = clock
        self._tats: dict[str, float] = {}
        self._streams: dict[str, int] = {}

    def admit_now(self, key_id: str, interval: float, burst: int) -> Admission:
        now = self._clock()
        admitted, tat = gcra(self._tats.get(key_id, now), now, interval, burst)
        if admitted:
            self._tats[key_id] = tat
        return Admission(admitted, tat - now)

    def ahead_now(self, key_id: str) -> float:
        return max(0.0, self._tats.get(key_id, 0.0) - self._clock())

    def open_now(self, key_id: str, cap: int) -> tuple[bool, int]:
        open_now = self._streams.get(key_id, 0)
        if open_now >= cap:
            return False, open_now
        self._streams[key_id] = open_now + 1
        return True, open_now + 1

    def streams(self, key_id: str) -> int:
        return self._streams.get(key_id, 0)

    async def admit(self, key_id: str, interval: float, burst: int) -> Admission:
        return self.admit_now(key_id, interval, burst)

    async def ahead(self, key_id: str) -> float:
        return self.ahead_now(key_id)

    async def open_stream(self, key_id: str, cap: int) -> tuple[bool, int]:
        return self.open_now(key_id, cap)

    def close_stream(self, key_id: str) -> None:
        left = self._streams.get(key_id, 0) - 1
        if left > 0:
            self._streams[key_id] = left
        else:
            self._streams.pop(key_id, None)

    def forget_idle(self) -> int:
        """Drop keys whose limits are full again (their TAT is past); how many went."""
        now = self._clock()
        stale = [key_id for key_id, tat in self._tats.items() if tat <= now]
        for key_id in stale:
            del self._tats[key_id]
        return len(stale)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(IDLE_FORGET / 2)
            self.forget_idle()

    async def aclose(self) -> None:
        return None
