"""Online backups and restores of the SQLite file, each verified before it is trusted.

A backup copies the live database with SQLite's backup API, a step of pages at a time,
from inside one read transaction on the source. That transaction is what makes it both
consistent and finite: WAL lets the server's writer keep committing beside a reader (it
is never blocked), and the copy is the snapshot the transaction began on. Without it,
every commit by the server restarts a stepped backup from page one, and under steady
traffic it never ends. The row counts of every table are read in the same snapshot, so
the copy must hold exactly those rows.

A copy is trusted only after it is reopened from disk and passes `PRAGMA integrity_check`,
those row counts, and the same books check `tokenroute admin check` runs. It is written
under a temporary name and renamed into place, so PATH is either the old file or a whole,
verified backup.

A restore takes `<db>.lock` exclusively (every tokenroute process that has the database
open holds it shared: `lock.py`), verifies the backup on a copy beside the database,
makes sure no other SQLite connection keeps the old database's WAL open, keeps the old
file under a `.replaced-<time>` name, and renames the copy into place.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import leases, ledger
from .db import StoreError, connect, migrate, migrations, schema_version
from .lock import DatabaseInUse, DatabaseLock

STEP_PAGES = 1024  # 4 MiB of 4 KiB pages per backup step


class BackupError(StoreError):
    """The copy cannot be made (or put in place); the message is one line."""


class NotTrusted(BackupError):
    """A copy was made but fails its verification: it is not kept."""


@dataclass(frozen=True, slots=True)
class Verified:
    """What a database file holds, checked: integrity, rows, books."""

    path: Path
    schema_version: int
    bytes: int
    rows: dict[str, int]  # table -> rows
    problems: list[str]  # the books check (`admin check`); empty when they balance
    open_holds: int
    notes: list[str] = field(default_factory=list)


def backup(
    source: Path,
    target: Path,
    *,
    force: bool = False,
    step_pages: int = STEP_PAGES,
    on_step: Callable[[int, int], None] | None = None,
) -> Verified:
    """Copy the live database at `source` to `target`, verified; raises `BackupError`.

    `on_step(remaining, total)` runs after each step (tests write to the source there).
    """
    if not source.is_file():
        raise BackupError(f"no database at {source}")
    if target.exists() and not force:
        raise BackupError(f"{target} exists: give --force to replace it")
    if not target.parent.is_dir():
        raise BackupError(f"directory does not exist: {target.parent}")
    if target.exists() and target.resolve() == source.resolve():
        raise BackupError("the backup cannot replace the database it copies")
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        rows = _copy(source, partial, step_pages, on_step)
        verified = verify(partial, expected_rows=rows)
        _fsync(partial)
        os.replace(partial, target)
        _fsync(target.parent)
    finally:
        _remove(partial)
    return replace(verified, path=target)


def _copy(
    source: Path, partial: Path, step_pages: int, on_step: Callable[[int, int], None] | None
) -> dict[str, int]:
    """The copy, in steps from one read snapshot of `source`; the snapshot's row counts."""
    src = connect(source, readonly=True)
    try:
        src.execute("BEGIN")  # the snapshot: counts and every step read the same database
        rows = _row_counts(src)
        dst = sqlite3.connect(partial, isolation_level=None)
        try:
            progress = (lambda _status, left, total: on_step(left, total)) if on_step else None
            src.backup(dst, pages=max(1, step_pages), progress=progress)
            # one self-contained file: the copy's header says WAL, as the source's does
            dst.execute("PRAGMA journal_mode = DELETE")
        finally:
            dst.close()
        src.execute("COMMIT")
    except sqlite3.Error as exc:
        raise BackupError(f"copying {source}: {exc}") from exc
    finally:
        src.close()
    return rows


def verify(
    path: Path, *, expected_rows: dict[str, int] | None = None, name: Path | None = None
) -> Verified:
    """Reopen `path` read-only and check it: integrity, row counts, the books. Errors name
    `name` (the file the operator gave) rather than a staging copy."""
    shown = name or path
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise NotTrusted(f"cannot open {shown}: {exc}") from exc
    try:
        found = [row[0] for row in conn.execute("PRAGMA integrity_check(10)")]
        if found != ["ok"]:
            raise NotTrusted(f"{shown} fails the integrity check: {'; '.join(found)}")
        rows = _row_counts(conn)
        if expected_rows is not None and rows != expected_rows:
            differ = sorted(t for t in rows.keys() | expected_rows.keys()
                            if rows.get(t) != expected_rows.get(t))  # fmt: skip
            raise NotTrusted(
                f"{shown} holds other rows than the database it copies: "
                + ", ".join(f"{t} {rows.get(t)} (not {expected_rows.get(t)})" for t in differ)
            )
        version, known = schema_version(conn), len(migrations())
        if version > known:
            raise BackupError(f"{shown} is at schema version {version}, newer than this "
                              f"tokenroute ({known}): upgrade tokenroute")  # fmt: skip
        problems, holds, notes = [], 0, []
        if version == known:
            problems, holds = ledger.check(conn), ledger.open_holds(conn)
            problems += _foreign_key_problems(conn)
        else:
            notes.append(
                f"schema version {version} is older than this tokenroute's ({known}): "
                "the books are checked after `tokenroute migrate`"
            )
    except sqlite3.Error as exc:
        raise NotTrusted(f"{shown} fails verification: {exc}") from exc
    finally:
        conn.close()
    return Verified(path, version, path.stat().st_size, rows, problems, holds, notes)


def restore(
    backup_path: Path, db_path: Path, *, force: bool = False
) -> tuple[Verified, Path | None]:
    """Put a verified copy of `backup_path` in place of `db_path`: (what it holds, where the
    replaced database is kept). Refuses while any process has the database open, or a
    backup whose books do not balance unless `force`."""
    if not backup_path.is_file():
        raise BackupError(f"no backup at {backup_path}")
    if not db_path.parent.is_dir():
        raise BackupError(f"directory does not exist: {db_path.parent}")
    if db_path.exists() and backup_path.resolve() == db_path.resolve():
        raise BackupError("the backup is the database itself")
    staged = db_path.with_name(f".{db_path.name}.restore-{os.getpid()}")
    with DatabaseLock(db_path, exclusive=True):  # no server, no admin command, until done
        try:
            verified = _stage(backup_path, staged)
            if verified.problems and not force:
                raise BackupError(f"the backup's books do not balance ({verified.problems[0]}; "
                                  f"{len(verified.problems)} in all): give --force to restore "
                                  "it anyway")  # fmt: skip
            kept = None
            if db_path.exists():
                _ensure_closed(db_path)
                stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
                kept = db_path.with_name(f"{db_path.name}.replaced-{stamp}")
                os.link(db_path, kept)  # the old file stays whole under a new name
            os.replace(staged, db_path)
            for suffix in ("-wal", "-shm"):  # nobody has them open: `_ensure_closed`
                _remove(Path(f"{db_path}{suffix}"))
            _fsync(db_path.parent)
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                _remove(Path(f"{staged}{suffix}"))
    return replace(verified, path=db_path), kept


def _stage(backup_path: Path, staged: Path) -> Verified:
    """A migrated, single-file copy of the backup beside the database, verified."""
    shutil.copyfile(backup_path, staged)
    if Path(f"{backup_path}-wal").exists():  # a copy of a live file: its WAL belongs to it
        shutil.copyfile(f"{backup_path}-wal", f"{staged}-wal")
    try:
        conn = sqlite3.connect(staged, isolation_level=None)
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            migrate(conn)  # what the server would do at its next start
            # No process has the restored file open yet: what the processes that had the
            # copy open leased and held goes back to the keys.
            conn.execute("BEGIN IMMEDIATE")
            leases.reclaim(conn, stale_before=2**62)
            conn.execute("COMMIT")
            conn.execute("PRAGMA journal_mode = DELETE")
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise NotTrusted(f"{backup_path} is not a usable database: {exc}") from exc
    except StoreError as exc:
        raise BackupError(f"{backup_path}: {exc}") from exc
    verified = verify(staged, name=backup_path)
    _fsync(staged)
    return verified


def _ensure_closed(db_path: Path) -> None:
    """Fold the WAL into the database and see it removed: SQLite removes it when the last
    connection closes, so a WAL still there means another process (one that holds no
    tokenroute lock: Litestream, a `sqlite3` shell) has the database open."""
    try:
        conn = sqlite3.connect(db_path, isolation_level=None)
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise BackupError(f"{db_path}: {exc}") from exc
    if Path(f"{db_path}-wal").exists():
        raise DatabaseInUse(
            f"another process has {db_path} open (its WAL stays after the last connection "
            "closed): stop it (Litestream? a sqlite3 shell?) first"
        )


def _row_counts(conn: sqlite3.Connection) -> dict[str, int]:
    tables = [row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name"
    )]  # fmt: skip
    return {t: int(conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]) for t in tables}


def _foreign_key_problems(conn: sqlite3.Connection) -> list[str]:
    return [f"{table} row {rowid}: no {parent} row it refers to"
            for table, rowid, parent, _ in conn.execute("PRAGMA foreign_key_check")]  # fmt: skip


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
