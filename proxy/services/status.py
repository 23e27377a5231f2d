"""StatusService: whether the gateway can do its job right now, for `/readyz` and the operator."""

from __future__ import annotations

import trio

from ..access.internal import internal_secret_matches
from ..core.config import Settings
from ..routing.catalog import Catalog
from ..store import Store
from ..store.writer import StoreStats
from ..upstream.health import UpstreamHealth

READY_DEADLINE = 2.0  # seconds for the database to take a write


class StatusService:
    def __init__(
        self, settings: Settings, store: Store, catalog: Catalog, health: UpstreamHealth
    ) -> None:
        self._settings = settings
        self._store = store
        self._catalog = catalog
        self._health = health

    def store_stats(self) -> StoreStats:
        """The store's counters (writes committed, reads, batches): for tests and metrics."""
        return self._store.stats

    async def readiness(self, internal_secret: str | None = None) -> tuple[bool, dict[str, object]]:
        """(ready, report): the database takes a write and at least one provider is enabled.

        Everyone may see the states; the upstreams' last errors (which can name the
        operator's provider account) only a caller with the internal secret.
        """
        details = internal_secret_matches(self._settings.internal_secret, internal_secret)
        database = "ok"
        if self._store.failing is not None:  # the writer is holding writes back: do not queue
            database = f"not writable: {self._store.failing}"
        with trio.move_on_after(READY_DEADLINE if database == "ok" else 0) as scope:
            try:
                await self._store.ping()
            except Exception as exc:
                database = f"not writable: {exc}"
        if scope.cancelled_caught and database == "ok":
            database = f"not writable within {READY_DEADLINE:g} s"
        providers = [p.name for p in self._settings.providers]
        ready = database == "ok" and bool(providers)
        report: dict[str, object] = {
            "status": "ready" if ready else "not ready",
            "database": database,
            "providers": providers,
            "models": len(self._catalog),
            "upstreams": self._health.states(details=details),
            "queued_writes": self._store.queued,
        }
        if not providers:
            report["reason"] = "no provider is enabled: set OPENAI_API_KEY or add [providers.*]"
        return ready, report
