"""The limits of workers on one machine: the shared table, and this process's memory for
what finds no room in it.

A key whose stripe of the table is full is limited in this process alone (its limit then
holds per worker, not for the key as a whole) and one warning says so, at most once a
minute; the same goes for an upstream cooldown with no room. A stream is closed where it
was opened. Every call is a few microseconds under a lock, made on the event loop.
"""

from __future__ import annotations

import hashlib
import logging
import time

import trio

from .limit_store import Admission, MemoryLimits, Throttled
from .shared_state import SharedState

log = logging.getLogger("tokenroute.limits")


class MachineLimits:
    """A `LimitStore` on this machine's `SharedState`, as worker `state.worker`."""

    def __init__(self, state: SharedState) -> None:
        self._state = state
        self._local = MemoryLimits(time.monotonic)  # keys the table has no room for
        self._local_cooling: dict[str, float] = {}
        self._warn_keys = Throttled(log)
        self._warn_upstreams = Throttled(log)

    @property
    def cooldowns(self) -> MachineLimits:
        return self

    async def admit(self, key_id: str, interval: float, burst: int) -> Admission:
        shared = None if self._state.closed else self._state.admit(key_id, interval, burst)
        if shared is None:
            self._full(key_id)
            return self._local.admit_now(key_id, interval, burst)
        return Admission(*shared)

    async def ahead(self, key_id: str) -> float:
        if self._state.closed:
            return self._local.ahead_now(key_id)
        return max(self._state.ahead(key_id), self._local.ahead_now(key_id))

    async def open_stream(self, key_id: str, cap: int) -> tuple[bool, int]:
        shared = None if self._state.closed else self._state.open_stream(key_id, cap)
        if shared is None:
            self._full(key_id)
            return self._local.open_now(key_id, cap)
        return shared

    def close_stream(self, key_id: str) -> None:
        if self._local.streams(key_id) > 0:
            self._local.close_stream(key_id)
        elif not self._state.closed:
            self._state.close_stream(key_id)

    # -- cooldown verdicts -----------------------------------------------------------------
    def cooling_until(self, upstream: str) -> float:
        if upstream in self._local_cooling or self._state.closed:
            return self._local_cooling.get(upstream, 0.0)
        return self._state.cooling_until(upstream)

    def cool(self, upstream: str, until: float) -> None:
        if not self._state.closed and self._state.cool(upstream, until):
            self._local_cooling.pop(upstream, None)
            return
        self._local_cooling[upstream] = until
        self._warn_upstreams(
            "the shared table of upstream cooldowns is full: %s cools down in this worker only",
            upstream,
        )

    def clear(self, upstream: str) -> None:
        if self._local_cooling.pop(upstream, None) is None and not self._state.closed:
            self._state.clear_cooling(upstream)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self._local.run(task_status=task_status)
        finally:
            self._state.close()

    async def aclose(self) -> None:
        return None  # every change is already in the table

    def _full(self, key_id: str) -> None:
        self._warn_keys(
            "the shared limits table has no room for key %s: it is limited per worker for now; "
            "give the table a larger capacity",
            hashlib.blake2b(key_id.encode(), digest_size=6).hexdigest(),
        )
