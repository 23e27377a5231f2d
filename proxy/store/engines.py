"""The two engines under the `Store`: where its connections come from, and how it hears of
another process's commits. Every method runs in a worker thread.

SQLite: one writer connection for the store's life, a few reader connections, the
shared `<db>.lock`, and `PRAGMA data_version` (it changes when another connection
commits). PostgreSQL: psycopg's sync `ConnectionPool`s (its async API is asyncio-only),
one connection for the writer and a few for readers, so a connection the server dropped
is replaced, and one connection that LISTENs: every commit through the store's adapter
that wrote something NOTIFYs (`pg.PgConnection`), with this store's token, so another
gateway's commits are heard and our own are not.
"""

from __future__ import annotations

import logging
import queue
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from . import db, pg, pg_schema
from .lock import DatabaseLock

T = TypeVar("T")
log = logging.getLogger("tokenroute.store")
WAIT_FOR_CONNECTION = 5.0  # seconds a write or read waits for a pooled connection
# A row or table lock held elsewhere for longer than this fails the batch (kept and
# retried, `failing` meanwhile), as SQLite's busy timeout does; a writer never hangs.
LOCK_TIMEOUT_MS = 5000
RECONNECT_EVERY = 2.0  # seconds between attempts to listen again after losing the server


class Engine(Protocol):
    label: str

    def open(self) -> list[str]: ...
    @contextmanager
    def writer(self) -> Iterator[Any]: ...
    def changed(self) -> bool: ...
    def side_connection(self) -> Any: ...
    def read(self, fn: Callable[..., T], *args: Any) -> T: ...
    def close(self) -> None: ...


class SqliteEngine:
    def __init__(self, path: Path, readers: int, wal_autocheckpoint: int | None) -> None:
        self.label = str(path)
        self._path = path
        self._readers_wanted = readers
        self._autocheckpoint = wal_autocheckpoint
        self._lock: DatabaseLock | None = None  # shared: `tokenroute restore` waits for us
        self._writer: sqlite3.Connection | None = None
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all_readers: list[sqlite3.Connection] = []
        self._data_version: int | None = None

    def _connect(self) -> sqlite3.Connection:
        return db.connect(self._path, wal_autocheckpoint=self._autocheckpoint)

    def open(self) -> list[str]:
        conn = self._connect()  # first: it names a missing directory in one line
        try:
            self._lock = DatabaseLock(self._path, exclusive=False)
            applied = db.migrate(conn)
        except BaseException:
            conn.close()
            if self._lock is not None:
                self._lock.release()
            raise
        self._data_version = conn.execute("PRAGMA data_version").fetchone()[0]
        self._writer = conn
        for _ in range(self._readers_wanted):
            reader = self._connect()
            self._all_readers.append(reader)
            self._readers.put(reader)
        return applied

    @contextmanager
    def writer(self) -> Iterator[sqlite3.Connection]:
        assert self._writer is not None
        yield self._writer

    def side_connection(self) -> sqlite3.Connection:
        return self._connect()

    def changed(self) -> bool:
        assert self._writer is not None
        version = self._writer.execute("PRAGMA data_version").fetchone()[0]
        changed = version != self._data_version
        self._data_version = version
        return bool(changed)

    def read(self, fn: Callable[..., T], *args: Any) -> T:
        conn = self._readers.get_nowait()  # the store's limiter keeps one free for us
        try:
            return fn(conn, *args)
        finally:
            self._readers.put(conn)

    def close(self) -> None:
        for conn in self._all_readers:
            conn.close()
        if self._writer is not None:
            self._writer.close()
        if self._lock is not None:
            self._lock.release()


class PostgresEngine:
    def __init__(self, url: str, readers: int) -> None:
        self.label = pg.redact(url)
        self._url = url
        self._token = secrets.token_hex(8)  # our own notices carry it; we ignore them
        options = {"autocommit": True, "connect_timeout": pg.CONNECT_TIMEOUT,
                   "options": f"-c lock_timeout={LOCK_TIMEOUT_MS}"}  # fmt: skip
        # `check`: a connection the server dropped while idle is replaced, not handed out
        self._writers = ConnectionPool(url, min_size=1, max_size=1, open=False, kwargs=options,
                                       configure=pg.configure, name="tokenroute-writer",
                                       check=ConnectionPool.check_connection,
                                       timeout=WAIT_FOR_CONNECTION)  # fmt: skip
        self._readers = ConnectionPool(url, min_size=1, max_size=max(1, readers), open=False,
                                       kwargs=options, configure=pg.configure,
                                       check=ConnectionPool.check_connection,
                                       name="tokenroute-readers",
                                       timeout=WAIT_FOR_CONNECTION)  # fmt: skip
        self._listener: psycopg.Connection[Any] | None = None
        self._next_attempt = 0.0
        self._heard = False

    def open(self) -> list[str]:
        with pg.connect(self._url) as conn:  # first: a refused URL is one clear line
            applied = pg_schema.migrate(conn)
        for pool in (self._writers, self._readers):
            pool.open(wait=True, timeout=10)
        self._listener = self._listen()
        return applied

    def _listen(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self._url, autocommit=True, connect_timeout=pg.CONNECT_TIMEOUT)
        conn.add_notify_handler(self._notice)
        conn.execute(f"LISTEN {pg.CHANNEL}")
        return conn

    def _notice(self, notice: psycopg.Notify) -> None:
        if notice.payload != self._token:
            self._heard = True

    @contextmanager
    def writer(self) -> Iterator[pg.PgConnection]:
        try:
            with self._writers.connection() as raw:
                yield pg.PgConnection(raw, token=self._token)
        except PoolTimeout as exc:
            raise psycopg.OperationalError(f"no connection to the server: {exc}") from None

    def side_connection(self) -> pg.PgConnection:
        return pg.connect(self._url)

    def changed(self) -> bool:
        """Whether another process committed since the last call (a notice was heard). A
        listener that lost its connection is replaced, and then says yes: notices sent
        meanwhile are lost, so everything is treated as changed."""
        try:
            if self._listener is None or self._listener.closed:
                if time.monotonic() < self._next_attempt:
                    return False  # a server that refused us a moment ago: not every poll
                self._next_attempt = time.monotonic() + RECONNECT_EVERY
                self._listener = self._listen()
                return True
            self._listener.execute("SELECT 1")  # the round trip delivers queued notices
        except psycopg.Error as exc:
            log.warning(
                "listening for other gateways' changes failed: %s", pg.describe(self._url, exc)
            )
            if self._listener is not None:
                self._listener.close()
            self._listener = None
            return True
        heard, self._heard = self._heard, False
        return heard

    def read(self, fn: Callable[..., T], *args: Any) -> T:
        """A read on a pooled connection; once more on a fresh one if the server had
        dropped it (reads change nothing, so running one twice is harmless)."""
        for attempt in (1, 2):
            raw = None
            try:
                with self._readers.connection() as raw:
                    return fn(pg.PgConnection(raw, token=self._token), *args)
            except PoolTimeout as exc:
                raise psycopg.OperationalError(f"no connection to the server: {exc}") from None
            except psycopg.OperationalError as exc:
                if attempt == 2 or not pg.lost_connection(exc, raw):
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        for pool in (self._writers, self._readers):
            pool.close()
        if self._listener is not None:
            self._listener.close()
