"""Opening and migrating either engine: a file path is SQLite, a postgresql:// URL PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import db, pg, pg_schema
from .dialect import is_postgres


def open_database(target: Path | str) -> Any:
    """A connection to the SQLite file or the PostgreSQL URL (autocommit, explicit BEGIN)."""
    if isinstance(target, str) and target.startswith(("postgresql://", "postgres://")):
        return pg.connect(target)
    return db.connect(target)


def migrate(conn: Any, *, until: int | None = None) -> list[str]:
    """Apply pending migrations in order, each in one transaction; return their names."""
    if is_postgres(conn):
        return pg_schema.migrate(conn, until=until)
    return db.migrate(conn, until=until)


def schema_version(conn: Any) -> int:
    if is_postgres(conn):
        return pg_schema.schema_version(conn)
    return db.schema_version(conn)


def pending_migrations(target: Path | str) -> tuple[int, list[db.Migration]]:
    """The schema version and the migrations it lacks, changing nothing."""
    if not (isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))):
        return db.pending_migrations(target)
    known = db.migrations()
    with pg.connect(target) as conn:
        current = pg_schema.schema_version(conn)
    db.refuse_newer(current, len(known))
    return current, known[current:]
