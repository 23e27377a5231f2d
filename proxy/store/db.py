"""Opening the SQLite file and applying the numbered migrations.

Every connection gets the same pragmas (WAL, synchronous=NORMAL, foreign keys,
a busy timeout) so the server and `tokenroute admin` can share the file.
The schema version is `PRAGMA user_version`, set in the same transaction as the
migration it records; `schema_migrations` keeps names and times for people.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

BUSY_TIMEOUT_MS = 5000
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class StoreError(Exception):
    """The database cannot be opened or migrated; the message is one line."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def summary(self) -> str:
        """The first sentence of the file's opening comment: what `migrate --check` shows
        an operator deciding whether to upgrade now."""
        words = []
        for line in self.sql.splitlines():
            if not line.startswith("--"):
                break
            words.append(line.removeprefix("--").strip())
        text = " ".join(w for w in words if w)
        first, dot, _ = text.partition(". ")
        return first + "." if dot else text


def connect(
    path: Path | str, *, readonly: bool = False, wal_autocheckpoint: int | None = None
) -> sqlite3.Connection:
    """A connection in autocommit mode: transactions are explicit BEGIN/COMMIT.

    `wal_autocheckpoint` (pages; 0: never) overrides SQLite's 1000 for this connection:
    beside Litestream the gateway leaves checkpoints to it.
    """
    target = Path(path)
    if not readonly and target.parent and not target.parent.exists():
        raise StoreError(f"database directory does not exist: {target.parent}")
    try:
        if readonly:
            conn = sqlite3.connect(
                f"file:{target}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
            )
        else:
            conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not readonly:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"database {target}: cannot switch to WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        if wal_autocheckpoint is not None:
            conn.execute(f"PRAGMA wal_autocheckpoint = {int(wal_autocheckpoint)}")
    except sqlite3.Error as exc:
        raise StoreError(f"database {target}: {exc}") from exc
    conn.row_factory = sqlite3.Row
    return conn


def migrations() -> list[Migration]:
    found = []
    for entry in resources.files("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise StoreError(f"migrations are not numbered 1..N without gaps: {versions}")
    return found


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def pending_migrations(path: Path | str) -> tuple[int, list[Migration]]:
    """The schema version of the file at `path` (0: no file yet) and the migrations it
    lacks, read without writing a byte.

    `migrate --check` runs as whoever types it, often root. A read-only connection still
    creates the -wal and -shm files beside the database, owned by that user, and the
    service, another user, could then no longer open its own database. With no -wal file
    everything is in the main file, so it is opened immutable (nothing is created); with
    one, a gateway has the file open (or stopped uncleanly) and its files are used as
    they are.
    """
    target = Path(path)
    known = migrations()
    if not target.exists():
        return 0, known
    immutable = "" if Path(f"{target}-wal").exists() else "&immutable=1"
    try:
        conn = sqlite3.connect(f"{target.absolute().as_uri()}?mode=ro{immutable}", uri=True)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # is it a database?
            current = schema_version(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreError(f"database {target}: {exc}") from exc
    refuse_newer(current, len(known))
    return current, known[current:]


def refuse_newer(current: int, latest: int) -> None:
    if current > latest:
        raise StoreError(
            f"the database is at schema version {current}, newer than this tokenroute "
            f"({latest}); upgrade tokenroute"
        )


def migrate(conn: sqlite3.Connection, *, until: int | None = None) -> list[str]:
    """Apply pending migrations in order, each in one transaction; return their names.

    `until` stops at that version: the upgrade tests build the schema an older release had.
    """
    applied = []
    known = migrations()
    current = schema_version(conn)
    refuse_newer(current, len(known))
    for migration in known[current:until]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if schema_version(conn) >= migration.version:  # another process got here first
                conn.execute("ROLLBACK")
                continue
            for statement in split_statements(migration.sql):
                conn.execute(statement)
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
            )
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, int(time.time() * 1000)),
            )
            conn.execute(f"PRAGMA user_version = {migration.version}")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise StoreError(f"migration {migration.name} failed: {exc}") from exc
        applied.append(migration.name)
    return applied


def split_statements(sql: str) -> list[str]:
    """Split a script into complete statements (comments and blank lines dropped)."""
    statements, current = [], ""
    for line in sql.splitlines(keepends=True):
        if not current and (not line.strip() or line.lstrip().startswith("--")):
            continue
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        raise StoreError(f"incomplete SQL statement at the end of a migration: {current[:60]!r}")
    return statements
