"""The store as the gateway uses it: one writer task, a few readers, change notices.

Writes are funnelled through a trio memory channel to a single writer task that
commits them in batches, one transaction per batch, in a worker thread: the
event loop never waits on disk, and hundreds of concurrent requests cost one
fsync-free WAL commit instead of hundreds. Each job runs under its own savepoint
so one failing job does not undo its neighbours.

Reads that miss the in-process caches run on a small pool of read connections
in worker threads. The writer also watches `PRAGMA data_version` on its own
connection, which changes only when *another* connection commits (such as
`tokenroute admin` beside a running server); callbacks registered with
`on_external_change` then drop their caches.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import trio

from .db import connect, migrate

T = TypeVar("T")
log = logging.getLogger("tokenroute.store")

BATCH_MAX = 1024
BUSY_RETRIES = 5
# Fire-and-forget writes (usage rows) wait this long for company, so that a busy
# server commits a few large batches rather than many small ones.
LINGER = 0.02


@dataclass(slots=True)
class _Job:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    done: trio.Event | None = None
    on_done: Callable[[Any, BaseException | None], None] | None = None
    seal: Callable[[], None] | None = None
    result: Any = None
    error: BaseException | None = None


@dataclass
class StoreStats:
    committed_jobs: int = 0
    failed_jobs: int = 0
    batches: int = 0
    external_changes: int = 0
    reads: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Store:
    def __init__(self, path: Path, *, readers: int = 4, poll_interval: float = 0.25) -> None:
        self.path = path
        self._poll_interval = poll_interval
        self._reader_count = readers
        self._send, self._recv = trio.open_memory_channel[_Job](math.inf)
        self._free_readers, self._reader_pool = trio.open_memory_channel[sqlite3.Connection](
            readers
        )
        self._writer_limiter = trio.CapacityLimiter(1)
        self._writer_conn: sqlite3.Connection | None = None
        self._data_version: int | None = None
        self._listeners: list[Callable[[], None]] = []
        self._stopped = trio.Event()
        self.stats = StoreStats()
        self.applied: list[str] = []  # migrations applied when the store opened

    # -- lifecycle ---------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open and migrate the database, then commit jobs until `close()` drains them."""
        self._writer_conn = await trio.to_thread.run_sync(self._open_writer)
        readers = [
            await trio.to_thread.run_sync(connect, self.path) for _ in range(self._reader_count)
        ]
        for conn in readers:
            self._free_readers.send_nowait(conn)
        task_status.started()
        try:
            await self._write_loop()
        finally:
            with trio.CancelScope(shield=True):
                await self._drain_after_cancel()
                await trio.to_thread.run_sync(self._close_all, readers)
            self._stopped.set()

    def close(self) -> None:
        """No more writes: the writer commits what is queued and stops."""
        self._send.close()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    # -- writes --------------------------------------------------------------------------
    def submit(
        self,
        fn: Callable[..., Any],
        *args: Any,
        on_done: Callable[[Any, BaseException | None], None] | None = None,
        seal: Callable[[], None] | None = None,
    ) -> None:
        """Queue a write without waiting: safe inside a cancelled scope.

        `on_done(result, error)` runs on the event loop once the job's transaction
        has committed (or failed), in the order the jobs were submitted. `seal()`
        runs on the event loop just before the job goes to the writer's thread: a
        job whose arguments keep growing until then (a batch of rows) stops there.
        """
        self._send.send_nowait(_Job(fn, args, on_done=on_done, seal=seal))

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Queue a write and wait for its transaction to commit; its exception is re-raised."""
        job = _Job(fn, args, trio.Event())
        self._send.send_nowait(job)
        assert job.done is not None
        await job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[no-any-return]

    async def ping(self) -> None:
        """Prove the database takes a write transaction right now."""
        await self.write(_noop)

    @property
    def queued(self) -> int:
        return self._send.statistics().current_buffer_used

    # -- reads ---------------------------------------------------------------------------
    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        self.stats.reads += 1
        conn = await self._reader_pool.receive()
        try:
            return await trio.to_thread.run_sync(fn, conn, *args)
        finally:
            self._free_readers.send_nowait(conn)

    def on_external_change(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    # -- the writer ----------------------------------------------------------------------
    def _open_writer(self) -> sqlite3.Connection:
        conn = connect(self.path)
        self.applied = migrate(conn)
        for name in self.applied:
            log.info("applied migration %s", name)
        self._data_version = conn.execute("PRAGMA data_version").fetchone()[0]
        return conn

    async def _write_loop(self) -> None:
        closed = False
        while not closed:
            batch: list[_Job] = []
            with trio.move_on_after(self._poll_interval):
                try:
                    batch.append(await self._recv.receive())
                except trio.EndOfChannel:
                    closed = True
            closed = self._take_queued(batch) or closed
            if batch and not closed and all(job.done is None for job in batch):
                closed = await self._linger(batch)
            await self._commit_and_notify(batch)

    async def _linger(self, batch: list[_Job]) -> bool:
        """Gather more fire-and-forget jobs for a moment; stop early for one that is awaited."""
        with trio.move_on_after(LINGER):
            while len(batch) < BATCH_MAX:
                try:
                    job = await self._recv.receive()
                except trio.EndOfChannel:
                    return True
                batch.append(job)
                if job.done is not None:
                    break
        return False

    def _take_queued(self, batch: list[_Job]) -> bool:
        while len(batch) < BATCH_MAX:
            try:
                batch.append(self._recv.receive_nowait())
            except trio.WouldBlock:
                return False
            except trio.EndOfChannel:
                return True
        return False

    async def _commit_and_notify(self, batch: list[_Job]) -> None:
        for job in batch:
            if job.seal is not None:
                job.seal()
        changed = await trio.to_thread.run_sync(self._commit, batch, limiter=self._writer_limiter)
        for job in batch:
            if job.done is not None:
                job.done.set()
            if job.on_done is not None:
                try:
                    job.on_done(job.result, job.error)
                except Exception:
                    log.exception("after-commit callback of %s failed", job.fn.__name__)
        if changed:
            self.stats.external_changes += 1
            for callback in self._listeners:
                callback()

    async def _drain_after_cancel(self) -> None:
        """Cancelled before `close()`: still commit whatever was handed to us."""
        while True:
            batch: list[_Job] = []
            self._take_queued(batch)
            if not batch:
                return
            await self._commit_and_notify(batch)

    def _commit(self, batch: list[_Job]) -> bool:
        conn = self._writer_conn
        assert conn is not None
        if batch:
            self._commit_batch(conn, batch)
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        changed = version != self._data_version
        self._data_version = version
        return changed

    def _commit_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        for attempt in range(BUSY_RETRIES):
            try:
                conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as exc:
                if attempt == BUSY_RETRIES - 1:
                    self._fail(batch, exc)
                    return
        try:  # fast path: the whole batch in one go
            for job in batch:
                job.result = job.fn(conn, *job.args)
        except Exception:  # redo it job by job, each under a savepoint, to isolate the failure
            conn.execute("ROLLBACK")
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                self._run_isolated(conn, job)
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            self._fail(batch, exc)
            return
        failed = sum(1 for job in batch if job.error is not None)
        self.stats.batches += 1
        self.stats.committed_jobs += len(batch) - failed
        self.stats.failed_jobs += failed

    def _run_isolated(self, conn: sqlite3.Connection, job: _Job) -> None:
        conn.execute("SAVEPOINT job")
        try:
            job.result = job.fn(conn, *job.args)
            job.error = None
            conn.execute("RELEASE job")
        except Exception as exc:
            conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
            job.result, job.error = None, exc
            if job.done is None:
                log.error("write %s failed: %s", getattr(job.fn, "__name__", job.fn), exc)

    def _fail(self, batch: list[_Job], exc: BaseException) -> None:
        log.error("a batch of %d writes was lost: %s", len(batch), exc)
        self.stats.failed_jobs += len(batch)
        for job in batch:
            job.error = exc

    def _close_all(self, readers: list[sqlite3.Connection]) -> None:
        for conn in readers:
            conn.close()
        if self._writer_conn is not None:
            self._writer_conn.close()


def _noop(conn: sqlite3.Connection) -> None:
    return None
