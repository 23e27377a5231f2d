"""RetentionService: raw usage rows older than `[retention] usage_days` out, a day at a time.

Why it cannot hold up requests: each UTC day is first checked on a reader connection
(its raw rows must be exactly what the daily rollups hold, or nothing of it is deleted),
then the horizon moves past it and the writer deletes its rows in small batches, each its
own short job between the requests' batches, with a pause and (unless Litestream owns
checkpoints) a passive checkpoint between two batches, so the WAL stays small.

The ledger is never touched. What still answers for deleted days: `usage --days`,
`/api/v1/usage` and the admin charts read the rollups; the books check reads the rollups
and the ledger's debits (`store.retention`). A generation looked up by id is gone with
its row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from ..core.config import Settings
from ..store import Store
from ..store import retention as rt

log = logging.getLogger("tokenroute.retention")
FIRST_PASS_AFTER = 60.0  # seconds after start (or the interval, if shorter)


@dataclass(frozen=True, slots=True)
class PruneReport:
    usage_days: int  # 0: retention is off, nothing was looked at
    cutoff_ms: int  # rows created before this UTC midnight were to go
    horizon_ms: int  # how far deletion has gone (0: never)
    deleted: int
    batches: int
    seconds: float
    not_rolled_up: list[str] = field(default_factory=list)  # days kept: rollups disagree


class RetentionService:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        pause: float = 0.02,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._settings = settings
        self._pause = pause  # between two delete batches: the requests' writes go first
        self._clock = clock
        self._lock = trio.Lock()  # one pass at a time
        self._scope = trio.CancelScope()

    async def run(self) -> None:
        """(In the app's nursery.) A pass soon after start, then one every interval."""
        interval = self._settings.retention_interval
        if self._settings.usage_days == 0:
            return
        with self._scope:
            await trio.sleep(min(interval, FIRST_PASS_AFTER))
            while True:
                try:
                    report = await self.prune()
                except Exception:  # the database refused: the next pass tries again
                    log.exception("usage retention failed; trying again in %.0f s", interval)
                else:
                    if report.deleted or report.not_rolled_up:
                        log.info("usage retention deleted %d rows older than %d days in %.1f s",
                                 report.deleted, report.usage_days, report.seconds)  # fmt: skip
                await trio.sleep(interval)

    def stop(self) -> None:
        self._scope.cancel()

    async def prune(self, usage_days: int | None = None, *, now_ms: int | None = None
                    ) -> PruneReport:  # fmt: skip
        """Delete the raw usage rows older than `usage_days` (default: the setting)."""
        days = self._settings.usage_days if usage_days is None else usage_days
        started = trio.current_time()
        if days <= 0:
            return PruneReport(0, 0, await self._store.read(rt.horizon), 0, 0, 0.0)
        now = int(self._clock() * 1000) if now_ms is None else now_ms
        cutoff = rt.cutoff_for(now, days)
        async with self._lock:
            horizon = await self._store.read(rt.horizon)
            deleted = batches = 0
            left = await self._store.read(rt.oldest_usage)
            if horizon and left is not None and left < horizon:  # a pass was interrupted
                deleted, batches = await self._delete_below_horizon()
            refused: list[str] = []
            while True:
                oldest = await self._store.read(rt.oldest_usage, horizon)
                if oldest is None or oldest >= cutoff:
                    break
                day_start = oldest - oldest % rt.DAY_MS
                day_end = min(day_start + rt.DAY_MS, cutoff)
                refused = await self._store.read(rt.days_not_rolled_up, day_start, day_end)
                if refused:
                    log.error(
                        "usage retention stops at %s: its usage rows disagree with the daily "
                        "rollups (see `tokenroute admin check`)",
                        refused[0],
                    )
                    break
                horizon = await self._store.write(rt.advance_horizon, day_end)
                more, steps = await self._delete_below_horizon()
                deleted, batches = deleted + more, batches + steps
        return PruneReport(days, cutoff, horizon, deleted, batches,
                           trio.current_time() - started, refused)  # fmt: skip

    async def _delete_below_horizon(self) -> tuple[int, int]:
        """Batches of the writer until no row is left below the horizon: (rows, batches)."""
        limit = self._settings.retention_batch
        deleted = batches = 0
        while True:
            count = await self._store.write(rt.delete_batch, limit)
            deleted, batches = deleted + count, batches + 1
            if count < limit:
                return deleted, batches
            if self._settings.wal_autocheckpoint:  # 0: Litestream checkpoints, not us
                await self._store.read(rt.checkpoint)
            await trio.sleep(self._pause)
