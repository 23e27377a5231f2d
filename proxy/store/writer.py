"""The store as the gateway uses it: one writer task, a few readers, change notices.

Writes are funnelled through a trio memory channel to a single writer task that
commits them in batches, one transaction per batch, in a worker thread: the
event loop never waits on disk, and hundreds of concurrent requests cost one
fsync-free WAL commit instead of hundreds. Each job runs under its own savepoint
so one failing job does not undo its neighbours.

Reads that miss the in-process caches run on a small pool of read connections
in worker threads. The writer also watches for commits by *another* process (such as
`tokenroute admin` beside a running server, or another gateway on the same PostgreSQL
database): SQLite's `PRAGMA data_version`, PostgreSQL's LISTEN/NOTIFY (`engines.py`);
callbacks registered with `on_external_change` then drop their caches.

The engine is chosen by the factory: a `database_url` (postgresql://) or the SQLite path.
On PostgreSQL a batch that loses a race with another gateway (a serialization failure
or a deadlock) is simply run again, without declaring the database failing.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import trio

from .batch import Conflict, DatabaseFailing, LostConnection, commit_batch
from .dialect import DATABASE_ERRORS
from .engines import Engine, PostgresEngine, SqliteEngine

T = TypeVar("T")
log = logging.getLogger("tokenroute.store")

BATCH_MAX = 1024
RETRY_FIRST = 0.05  # seconds before retrying a batch the database refused; doubling...
RETRY_MAX = 2.0  # ...up to this
CLOSING_PATIENCE = 10.0  # seconds a closing writer keeps retrying before it gives up
CONFLICT_RETRIES = 50  # a batch that lost a race with another gateway, run again at once
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
    def __init__(
        self,
        path: Path,
        *,
        database_url: str | None = None,
        readers: int = 4,
        poll_interval: float = 0.25,
        wal_autocheckpoint: int | None = None,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.path = path
        self._engine: Engine = (
            PostgresEngine(database_url, readers)
            if database_url
            else SqliteEngine(path, readers, wal_autocheckpoint)
        )
        self._on_batch = on_batch  # the metrics: (jobs, seconds) of each batch committed
        self._poll_interval = poll_interval
        self._send, self._recv = trio.open_memory_channel[_Job](math.inf)
        self._reader_limiter = trio.CapacityLimiter(readers)
        self._writer_limiter = trio.CapacityLimiter(1)
        self._listeners: list[Callable[[], None]] = []
        self._stopped = trio.Event()
        self.stats = StoreStats()
        self.applied: list[str] = []  # migrations applied when the store opened
        self.failing: str | None = None  # why the database takes no writes right now
        self._failing_since = 0.0
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open and migrate the database, then commit jobs until `close()` drains them."""
        try:
            self.applied = await trio.to_thread.run_sync(self._engine.open)
        except BaseException:
            await trio.to_thread.run_sync(self._engine.close)
            raise
        for name in self.applied:
            log.info("applied migration %s", name)
        task_status.started()
        try:
            await self._write_loop()
        finally:
            with trio.CancelScope(shield=True):
                await self._drain_after_cancel()
                await trio.to_thread.run_sync(self._engine.close)
            self._stopped.set()

    def close(self) -> None:
        """No more writes: the writer commits what is queued and stops."""
        self._closing = True
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

    def side_connection(self) -> Any:
        """A connection of its own in autocommit mode, outside the writer and the readers,
        for a thread that must not wait behind them (the heartbeat); the caller closes it."""
        return self._engine.side_connection()

    # -- reads ---------------------------------------------------------------------------
    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        self.stats.reads += 1
        return await trio.to_thread.run_sync(
            self._engine.read, fn, *args, limiter=self._reader_limiter
        )

    def on_external_change(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    # -- the writer ----------------------------------------------------------------------
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
        """Commit the batch, retrying while the database fails; then tell the submitters.

        A job's submitter hears back only after its transaction committed, so nothing is
        ever booked as done (or charged) that is not in the database. Once closing, the
        writer stops retrying after `CLOSING_PATIENCE` and reports what it could not keep.
        """
        for job in batch:
            if job.seal is not None:
                job.seal()
        began = trio.current_time()
        delay, given_up, conflicts, reconnected = RETRY_FIRST, None, 0, False
        while True:
            outcome = await trio.to_thread.run_sync(
                self._commit, batch, limiter=self._writer_limiter
            )
            if not isinstance(outcome, DatabaseFailing):
                break
            if isinstance(outcome, Conflict) and conflicts < CONFLICT_RETRIES:
                conflicts += 1  # another gateway won a race: run the batch again
                await trio.sleep(random.uniform(0, 0.002 * conflicts))
                continue
            if isinstance(outcome, LostConnection) and not reconnected:
                reconnected = True  # the pool hands out a fresh connection
                continue
            if self.failing is None:
                log.error("the database takes no writes (%s): keeping them, retrying", outcome)
                self._failing_since = trio.current_time()
            self.failing = str(outcome)
            if self._closing and trio.current_time() - self._failing_since > CLOSING_PATIENCE:
                given_up = outcome
                break
            await trio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
        if given_up is not None:
            log.error("%d writes could not be committed before closing: %s", len(batch), given_up)
            for job in batch:
                job.error = given_up
            changed = False
        else:
            if self.failing is not None:
                log.warning("the database takes writes again")
                self.failing = None
            changed = outcome
            if batch and self._on_batch is not None:  # its time includes any retries
                self._on_batch(len(batch), trio.current_time() - began)
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
        self._closing = True
        while True:
            batch: list[_Job] = []
            self._take_queued(batch)
            if not batch:
                return
            await self._commit_and_notify(batch)

    def _commit(self, batch: list[_Job]) -> bool | DatabaseFailing:
        """(In the writer's thread.) Whether another process changed the database, or the
        failure that kept the batch from committing."""
        try:
            if batch:
                with self._engine.writer() as conn:
                    failed = commit_batch(conn, batch)
                self.stats.batches += 1
                self.stats.committed_jobs += len(batch) - failed
                self.stats.failed_jobs += failed
            return self._engine.changed()
        except DatabaseFailing as exc:
            return exc
        except DATABASE_ERRORS as exc:
            return DatabaseFailing(str(exc) or type(exc).__name__)


def _noop(conn: Any) -> None:
    return None
