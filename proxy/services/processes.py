"""Start-up and restart work the worker supervisor does once, on the database (the file,
or PostgreSQL when `TOKENROUTE_DATABASE_URL` is set).

Blocking calls (the supervisor runs them in a thread): before workers start, and between
a worker's death and its replacement.
"""

from __future__ import annotations

from ..core.config import Settings
from ..core.errors import ConfigError
from ..store import StoreError, open_database
from ..store import leases as store_leases
from ..store.ledger import transaction


def startup_reclaim(settings: Settings) -> tuple[int, int]:
    """Release holds and leases left by this host's dead processes: (holds, money)."""
    return _reclaim(settings, store_leases.reclaim_dead_here)


def reclaim_worker(settings: Settings, pid: int) -> tuple[int, int]:
    """A worker exited: give its leases back now rather than after `reclaim_after`."""
    return _reclaim(settings, lambda conn: store_leases.reclaim_pid(conn, pid))


def _reclaim(settings: Settings, how: object) -> tuple[int, int]:
    try:
        conn = open_database(settings.scale.database_url or settings.db_path)
        try:
            with transaction(conn):
                found = how(conn)  # type: ignore[operator]
        finally:
            conn.close()
    except StoreError as exc:
        raise ConfigError(str(exc)) from exc
    return sum(r.holds for r in found), sum(r.leases for r in found)
