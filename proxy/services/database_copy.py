"""Moving to PostgreSQL: `tokenroute migrate-to-postgres --from FILE --to URL`.

Blocks (it copies every row and checks both sides): the CLI calls it in its own process.
Refusals (no file, an unreachable server, a wrong password, a database that is not empty)
are one `ConfigError` line without the password; problems found after the copy are in
the report, one line each.
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import ConfigError
from ..store import StoreError
from ..store.pg_copy import CopyReport, copy_to_postgres

__all__ = ["CopyReport", "copy_sqlite_to_postgres"]


def copy_sqlite_to_postgres(source: Path, url: str) -> CopyReport:
    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError("--to: expected a postgresql:// URL")
    try:
        return copy_to_postgres(source, url)
    except StoreError as exc:
        raise ConfigError(str(exc)) from None
