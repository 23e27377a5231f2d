"""The schema, before anything serves: light enough for the worker supervisor, which
migrates once before its workers start and never builds the services itself."""

from __future__ import annotations

from pathlib import Path

from ..core.config import Settings
from ..core.errors import ConfigError
from ..store import (
    Migration,
    StoreError,
    migrate,
    open_database,
    pending_migrations,
    schema_version,
)
from ..store.lock import DatabaseLock


def migrate_database(settings: Settings) -> tuple[list[str], int]:
    """Create or upgrade the schema: (migrations applied, schema version). Blocks: call it
    before serving or in a thread. A database that cannot be opened is one line."""
    try:
        conn = open_database(database_target(settings))
        try:
            if settings.scale.database_url:  # an advisory lock in each migration
                return migrate(conn), schema_version(conn)
            with DatabaseLock(settings.db_path, exclusive=False):  # not during a restore
                return migrate(conn), schema_version(conn)
        finally:
            conn.close()
    except StoreError as exc:
        raise ConfigError(str(exc)) from exc


def pending_database_migrations(settings: Settings) -> tuple[int, list[Migration]]:
    """(the schema version, the migrations `migrate_database` would apply), the database
    left exactly as it was: an operator reads this before upgrading a live file."""
    try:
        return pending_migrations(database_target(settings))
    except StoreError as exc:
        raise ConfigError(str(exc)) from exc


def database_target(settings: Settings) -> Path | str:
    """The PostgreSQL URL when there is one (it wins over the SQLite path), else the file."""
    return settings.scale.database_url or settings.db_path
