"""Proof of life on a thread and a connection of its own.

A process that is alive but whose event loop is saturated (thousands of streams opening
at once) must not look dead: past the fence it would refuse paid requests, and past
`reclaim_after` other processes would reclaim its leases while it still spends them. The
loop's own heartbeat waits behind every loop iteration and the writer's queue, so the bare
"still alive" update runs here, paced by the OS clock and the GIL's switch interval
rather than by the loop. What needs the loop (reclaiming the dead, counting processes,
giving leases back) stays in `Wallets.run`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from typing import Any

import trio

from ..store import Store
from ..store import leases as store_leases

log = logging.getLogger("tokenroute.money")


class Pulse:
    def __init__(self, store: Store, owner: str, interval: float) -> None:
        self._store = store
        self._owner = owner
        self._interval = interval
        self.alive_at = -math.inf  # time.monotonic() before the last heartbeat that committed

    def committed(self, began: float) -> None:
        """A heartbeat started at `began` (monotonic) committed: alive since then."""
        self.alive_at = max(self.alive_at, began)

    def silent_for(self) -> float:
        return time.monotonic() - self.alive_at

    async def run(self) -> None:
        """Beat until cancelled; the thread notices within one interval and closes its
        connection (a beat after the owner row is gone changes nothing)."""
        stop = threading.Event()
        try:
            await trio.to_thread.run_sync(
                self._beat_until, stop, abandon_on_cancel=True, limiter=trio.CapacityLimiter(1)
            )
        finally:
            stop.set()

    def _beat_until(self, stop: threading.Event) -> None:
        conn: Any = None
        failing = False
        try:
            while not stop.wait(self._interval):
                began = time.monotonic()
                try:
                    if conn is None:
                        conn = self._store.side_connection()
                    if store_leases.touch(conn, self._owner):
                        self.committed(began)
                    failing = False
                except Exception as exc:  # the loop's heartbeat reports it too; once here
                    if not failing:
                        log.warning("heartbeat on its own connection failed: %s", exc)
                    failing = True
                    if conn is not None:
                        with contextlib.suppress(Exception):
                            conn.close()
                    conn = None
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
