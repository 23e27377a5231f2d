"""Who has the database open: an advisory lock on `<db>.lock` beside the database file.

Every tokenroute process that opens the database for its lifetime (the server, an
`admin` command) holds a shared `flock` on the lock file; `tokenroute restore` takes it
exclusively, without waiting, so it refuses while any of them runs and no server can
start while it swaps the file. The kernel drops a `flock` when its process dies, even
by SIGKILL, so a crashed server never leaves the database looking busy. A live `-wal`
file alone proves nothing (a crash leaves one too); `restore` also checks that no other
SQLite connection (Litestream, a `sqlite3` shell) keeps the WAL open.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .db import StoreError


class DatabaseInUse(StoreError):
    """Another process holds the database's lock in a conflicting way."""


def lock_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".lock")


class DatabaseLock:
    """A held lock on `<db>.lock`; `release()` (or the process ending) lets go."""

    def __init__(self, db_path: Path, *, exclusive: bool) -> None:
        self.path = lock_path(db_path)
        self.exclusive = exclusive
        try:
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open the lock file {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(self._fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self.release()
            if exclusive:
                raise DatabaseInUse(
                    f"the database {db_path} is open in a running tokenroute (a server or an "
                    "admin command): stop it first"
                ) from exc
            raise DatabaseInUse(
                f"the database {db_path} is being restored; start again when that is done"
            ) from exc

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> DatabaseLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
