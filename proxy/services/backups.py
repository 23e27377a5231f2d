"""Backups and restores of the database file, for `tokenroute backup` and `tokenroute restore`.

Both block (they copy a file, in pages, and verify it): the CLI calls them in its own
process, beside a running server, never on a server's event loop. The server keeps
serving during a backup: it reads one WAL snapshot, which no writer waits for. Backup
checks the copy's books with the same check `tokenroute admin check` runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..core.config import Settings
from ..store import StoreError
from ..store import backup as copies
from ..store.backup import BackupError, NotTrusted, Verified
from ..store.lock import DatabaseInUse

__all__ = ["BackupError", "DatabaseInUse", "Done", "NotTrusted", "StoreError", "Verified",
           "backup", "restore"]  # fmt: skip


def _refuse_postgres(settings: Settings) -> None:
    if settings.scale.database_url:
        raise BackupError(
            "the database is PostgreSQL (TOKENROUTE_DATABASE_URL): back it up and restore it "
            "with pg_dump and pg_restore; tokenroute backup and restore copy a SQLite file"
        )


@dataclass(frozen=True, slots=True)
class Done:
    verified: Verified  # what the file now holds
    seconds: float
    replaced: Path | None = None  # restore: where the database it replaced is kept


def backup(
    settings: Settings, target: Path, *, force: bool = False, step_pages: int = copies.STEP_PAGES
) -> Done:
    """A verified online copy of the configured database at `target`."""
    if step_pages < 1:
        raise BackupError("--step-pages: expected at least 1")
    _refuse_postgres(settings)
    started = time.monotonic()
    verified = copies.backup(settings.db_path, target, force=force, step_pages=step_pages)
    return Done(verified, time.monotonic() - started)


def restore(settings: Settings, source: Path, *, force: bool = False) -> Done:
    """Replace the configured database with a verified copy of `source`; refused while a
    tokenroute process (or any other SQLite connection) has the database open."""
    _refuse_postgres(settings)
    started = time.monotonic()
    verified, replaced = copies.restore(source, settings.db_path, force=force)
    return Done(verified, time.monotonic() - started, replaced)
