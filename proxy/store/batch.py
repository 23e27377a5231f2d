"""Committing one writer batch: all its jobs in one transaction, each job's failure its own.

Run in the writer's thread. A job that fails for its own reasons (a duplicate, a
value SQLite cannot store) is rolled back alone under a savepoint and reported to its
submitter; the rest commit. A failure of the database itself (full disk, I/O error,
a lock held elsewhere past the busy timeout) rolls the whole batch back and raises
`DatabaseFailing`: the writer keeps the batch and commits it, once, when it can. On
PostgreSQL the same holds for the server's errors (a lost connection, a full disk, a
read-only server); a serialization failure or a deadlock with another gateway is a
`Conflict`: the batch is simply run again.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from . import pg
from .dialect import DATABASE_ERRORS

log = logging.getLogger("tokenroute.store")

# SQLite's primary result codes that are about the database, not about a job.
_DATABASE_CODES = {
    5,  # SQLITE_BUSY: a lock held elsewhere past the busy timeout
    6,  # SQLITE_LOCKED
    8,  # SQLITE_READONLY: the file cannot be written
    10,  # SQLITE_IOERR
    11,  # SQLITE_CORRUPT
    13,  # SQLITE_FULL
    14,  # SQLITE_CANTOPEN
    15,  # SQLITE_PROTOCOL
}


class DatabaseFailing(Exception):
    """The database cannot commit right now; nothing of the batch was kept."""


class Conflict(DatabaseFailing):
    """Another gateway's transaction won a race with the batch (PostgreSQL): run it again."""


class LostConnection(DatabaseFailing):
    """The server dropped the writer's connection (PostgreSQL): try once more at once."""


class Job(Protocol):
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    done: Any
    result: Any
    error: BaseException | None


def about_the_database(exc: BaseException) -> bool:
    if pg.about_the_server(exc):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(exc, sqlite3.OperationalError) and code is None:
        return True  # e.g. "database is locked" from an old SQLite: not a job's own error
    return isinstance(exc, sqlite3.Error) and code is not None and code & 0xFF in _DATABASE_CODES


def commit_batch(conn: sqlite3.Connection, batch: Sequence[Job]) -> int:
    """Commit the batch; how many of its jobs failed on their own. Raises `DatabaseFailing`."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:  # fast path: the whole batch in one go
            for job in batch:
                job.result, job.error = job.fn(conn, *job.args), None
        except Exception as exc:
            if about_the_database(exc):
                raise
            conn.execute("ROLLBACK")  # redo it job by job, each under a savepoint
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                _run_isolated(conn, job)
        conn.execute("COMMIT")
    except Exception as exc:
        _roll_back(conn)
        for job in batch:
            job.result, job.error = None, None
        if pg.is_conflict(exc):
            raise Conflict(str(exc)) from exc
        if pg.lost_connection(exc, getattr(conn, "raw", None)):
            raise LostConnection(" ".join(str(exc).split())) from exc
        if isinstance(exc, DATABASE_ERRORS):
            raise DatabaseFailing(" ".join(str(exc).split()) or type(exc).__name__) from exc
        raise
    return sum(1 for job in batch if job.error is not None)


def _run_isolated(conn: sqlite3.Connection, job: Job) -> None:
    conn.execute("SAVEPOINT job")
    try:
        job.result, job.error = job.fn(conn, *job.args), None
        conn.execute("RELEASE job")
    except Exception as exc:
        if about_the_database(exc):
            raise
        conn.execute("ROLLBACK TO job")
        conn.execute("RELEASE job")
        job.result, job.error = None, exc
        if job.done is None:
            log.error("write %s failed: %s", getattr(job.fn, "__name__", job.fn), exc)


def _roll_back(conn: sqlite3.Connection) -> None:
    """Roll back whatever is open; a failing database may refuse even that."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except DATABASE_ERRORS as exc:
            log.warning("rollback failed (SQLite rolls back itself on the next BEGIN): %s", exc)
