"""This machine's table of keys' rate-limit times, stream counts and upstream cooldowns,
shared by the workers of `tokenroute serve --workers N` through one file mapped into each.

The supervisor creates the file (`SharedState.create`, on /dev/shm or a run directory);
each worker maps it (`SharedState.open`) with its index. Every change is made under an
`fcntl.lockf` byte-range lock, which the kernel drops when its process dies, even by
SIGKILL; a `multiprocessing.Lock` held by a killed worker would stop all the others.

Layout (native byte order, sized once at creation):

    header   magic, workers, capacity, cool_capacity
    keys     capacity x 16 bytes: the key id's blake2b-128 (zero: never used)
    tats     capacity x float64: the key's GCRA theoretical arrival time, time.monotonic()
    streams  capacity x workers x int32: the key's open streams, per worker
    ups      cool_capacity x 16 bytes: the upstream id's blake2b-128
    untils   cool_capacity x float64: cooling until (time.monotonic()); 0: healthy

A key lives in one stripe of `STRIPE` entries picked by its hash, probed whole under the
stripe's one lock; an entry is only ever found by its full 128-bit hash, so two keys
never share one. An entry is taken over when its TAT is past and no worker has a stream
open on it (it then holds nothing a newcomer could lose). With no such entry in its
stripe a key has no place here (`None`): the caller limits it in-process. CLOCK_MONOTONIC
is one clock for the whole machine, so every worker reads the same `now`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import mmap
import os
import struct
import time
from collections.abc import Iterator
from pathlib import Path

from .limit_store import gcra

MAGIC = b"TRSHARE1"
_HEADER = struct.Struct("=8sIII")  # magic, workers, capacity, cool_capacity
HEADER_SIZE = 64
DIGEST = 16
STRIPE = 32  # entries per lock, and the longest probe
DEFAULT_CAPACITY = 16384
COOL_CAPACITY = 1024
COOL_RETAIN = 3600.0  # seconds a cooldown is kept past its end, for the probe that ends it
MAX_WORKERS = 1024
_EMPTY = bytes(DIGEST)


def digest(kind: bytes, name: str) -> bytes:
    """The 128-bit hash that addresses a key id (kind b"key") or an upstream (b"upstream")."""
    return hashlib.blake2b(name.encode(), digest_size=DIGEST, person=kind).digest()


class SharedState:
    """One worker's (or the supervisor's) view of the mapped table."""

    def __init__(self, path: Path, fd: int, worker: int | None) -> None:
        self.path = path  # what the supervisor hands its workers (`WorkerRole.shared_state`)
        self._fd = fd
        size = os.fstat(fd).st_size
        if size < HEADER_SIZE:
            raise ValueError("not a tokenroute shared-state file (too short)")
        self._mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        magic, workers, capacity, cool = _HEADER.unpack_from(self._mm, 0)
        if magic != MAGIC or size != _size(workers, capacity, cool):
            self._mm.close()
            raise ValueError("not a tokenroute shared-state file (wrong magic or size)")
        if worker is not None and not 0 <= worker < workers:
            self._mm.close()
            raise ValueError(f"worker {worker} is not one of this table's {workers}")
        self.workers, self.worker = workers, worker
        self._capacity, self._cool_capacity = capacity, cool
        self._stripes = capacity // STRIPE
        self._keys_at = HEADER_SIZE
        view = memoryview(self._mm)
        at = self._keys_at + capacity * DIGEST
        self._tats = view[at : at + capacity * 8].cast("d")
        at += capacity * 8
        self._streams = view[at : at + capacity * workers * 4].cast("i")
        self._ups_at = at + capacity * workers * 4
        at = self._ups_at + cool * DIGEST
        self._untils = view[at : at + cool * 8].cast("d")
        view.release()

    @classmethod
    def create(cls, path: Path, workers: int, *, capacity: int = DEFAULT_CAPACITY) -> SharedState:
        """A new zeroed table for `workers` workers, put in place at `path` at once (a
        worker of an earlier table keeps its own file until it exits)."""
        if not 1 <= workers <= MAX_WORKERS:
            raise ValueError(f"workers: expected 1 to {MAX_WORKERS}, got {workers}")
        if capacity < STRIPE or capacity % STRIPE:
            raise ValueError(f"capacity: expected a multiple of {STRIPE}, got {capacity}")
        path = Path(path)
        scratch = path.with_name(f".{path.name}.{os.getpid()}.new")
        fd = os.open(scratch, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, _size(workers, capacity, COOL_CAPACITY))  # zero-filled
            os.pwrite(fd, _HEADER.pack(MAGIC, workers, capacity, COOL_CAPACITY), 0)
            os.replace(scratch, path)
        except BaseException:
            os.close(fd)
            scratch.unlink(missing_ok=True)
            raise
        return cls(path, fd, None)

    @classmethod
    def open(cls, path: Path, worker: int) -> SharedState:
        """Worker `worker` (0 to workers - 1) on the supervisor's table."""
        fd = os.open(path, os.O_RDWR)
        try:
            return cls(Path(path), fd, worker)
        except BaseException:
            os.close(fd)
            raise

    def close(self) -> None:
        if self._mm.closed:
            return
        for view in (self._tats, self._streams, self._untils):
            view.release()
        self._mm.close()
        os.close(self._fd)

    @property
    def closed(self) -> bool:
        return self._mm.closed

    # -- keys ------------------------------------------------------------------------------
    def admit(self, key_id: str, interval: float, burst: int) -> tuple[bool, float] | None:
        """One request (GCRA): (admitted, seconds its TAT is ahead of now); None: no room."""
        key = digest(b"key", key_id)
        with self._stripe(key) as stripe:
            now = time.monotonic()
            i = self._claim(key, stripe, now)
            if i < 0:
                return None
            admitted, tat = gcra(self._tats[i], now, interval, burst)
            if admitted:
                self._tats[i] = tat
            return admitted, tat - now

    def ahead(self, key_id: str) -> float:
        """Seconds the key's TAT is ahead of now (0: its whole burst is free)."""
        key = digest(b"key", key_id)
        with self._stripe(key) as stripe:
            i = self._find(key, stripe)
            return max(0.0, self._tats[i] - time.monotonic()) if i >= 0 else 0.0

    def open_stream(self, key_id: str, cap: int) -> tuple[bool, int] | None:
        """Count a stream in for this worker unless the key has `cap` open on all workers:
        (opened, streams open now); None: no room."""
        key = digest(b"key", key_id)
        with self._stripe(key) as stripe:
            i = self._claim(key, stripe, time.monotonic())
            if i < 0:
                return None
            base = i * self.workers
            open_now = sum(self._streams[base : base + self.workers])
            if open_now >= cap:
                return False, open_now
            self._streams[base + self._worker_index()] += 1
            return True, open_now + 1

    def close_stream(self, key_id: str) -> bool:
        """Count one of this worker's streams out; False if it had none here."""
        key = digest(b"key", key_id)
        with self._stripe(key) as stripe:
            i = self._find(key, stripe)
            if i < 0:
                return False
            at = i * self.workers + self._worker_index()
            if self._streams[at] <= 0:
                return False
            self._streams[at] -= 1
            return True

    def streams(self, key_id: str) -> int:
        """The key's open streams, all workers together."""
        key = digest(b"key", key_id)
        with self._stripe(key) as stripe:
            i = self._find(key, stripe)
            base = i * self.workers
            return sum(self._streams[base : base + self.workers]) if i >= 0 else 0

    def clear_worker(self, index: int) -> None:
        """Drop worker `index`'s stream counts everywhere (the supervisor, after it died)."""
        if not 0 <= index < self.workers:
            raise ValueError(f"worker {index} is not one of this table's {self.workers}")
        for stripe in range(self._stripes):
            with self._locked(stripe):
                for i in range(stripe * STRIPE, (stripe + 1) * STRIPE):
                    self._streams[i * self.workers + index] = 0

    def entries(self) -> list[bytes]:
        """The key hashes that have an entry now (for diagnostics and tests)."""
        keys = self._mm[self._keys_at : self._keys_at + self._capacity * DIGEST]
        found = (keys[i : i + DIGEST] for i in range(0, len(keys), DIGEST))
        return [key for key in found if key != _EMPTY]

    # -- upstream cooldowns ----------------------------------------------------------------
    def cooling_until(self, upstream: str) -> float:
        """When the upstream's cooldown ends (time.monotonic(); maybe past); 0.0: healthy."""
        up = digest(b"upstream", upstream)
        with self._locked(self._stripes):
            i = self._find_upstream(up)
            return self._untils[i] if i >= 0 else 0.0

    def cool(self, upstream: str, until: float) -> bool:
        """Cool the upstream until `until`; False if the region has no room for it."""
        up = digest(b"upstream", upstream)
        with self._locked(self._stripes):
            i = self._find_upstream(up)
            if i < 0:
                i = self._free_upstream(time.monotonic())
                if i < 0:
                    return False
                at = self._ups_at + i * DIGEST
                self._mm[at : at + DIGEST] = up
            self._untils[i] = max(until, 1e-9)  # never 0.0, which means healthy
            return True

    def clear_cooling(self, upstream: str) -> None:
        up = digest(b"upstream", upstream)
        with self._locked(self._stripes):
            i = self._find_upstream(up)
            if i >= 0:
                self._untils[i] = 0.0

    # -- inside a lock ---------------------------------------------------------------------
    def _worker_index(self) -> int:
        if self.worker is None:
            raise RuntimeError("the supervisor's view counts no streams; open it as a worker")
        return self.worker

    @contextlib.contextmanager
    def _stripe(self, key: bytes) -> Iterator[int]:
        stripe = int.from_bytes(key[:8], "little") % self._stripes
        with self._locked(stripe):
            yield stripe

    @contextlib.contextmanager
    def _locked(self, byte: int) -> Iterator[int]:
        """The lock of stripe `byte` (the cooldowns' is the one past the last stripe)."""
        fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, byte)
        try:
            yield byte
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, byte)

    def locked(self, key_id: str) -> contextlib.AbstractContextManager[int]:
        """Hold the lock of the key's stripe (tests: a worker killed while holding it)."""
        return self._stripe(digest(b"key", key_id))

    def _find(self, key: bytes, stripe: int) -> int:
        start = self._keys_at + stripe * STRIPE * DIGEST
        found = _aligned_find(self._mm, key, start, start + STRIPE * DIGEST)
        return stripe * STRIPE + found if found >= 0 else -1

    def _claim(self, key: bytes, stripe: int, now: float) -> int:
        """The key's entry, taking over a free one if it has none; -1: the stripe is full."""
        if key == _EMPTY:  # the one hash that cannot be told from an unused entry
            return -1
        found = self._find(key, stripe)
        if found >= 0:
            return found
        workers = self.workers
        for i in range(stripe * STRIPE, (stripe + 1) * STRIPE):
            at = self._keys_at + i * DIGEST
            unused = self._mm[at : at + DIGEST] == _EMPTY
            idle = self._tats[i] <= now and not any(self._streams[i * workers : (i + 1) * workers])
            if unused or idle:
                self._mm[at : at + DIGEST] = key
                self._tats[i] = 0.0
                return i
        return -1

    def _find_upstream(self, up: bytes) -> int:
        start = self._ups_at
        return _aligned_find(self._mm, up, start, start + self._cool_capacity * DIGEST)

    def _free_upstream(self, now: float) -> int:
        for i in range(self._cool_capacity):
            until = self._untils[i]
            if until == 0.0 or until < now - COOL_RETAIN:
                return i
        return -1


def _aligned_find(mm: mmap.mmap, needle: bytes, start: int, end: int) -> int:
    """The index of the entry holding `needle` between `start` and `end`, or -1."""
    at = mm.find(needle, start, end)
    while at >= 0 and (at - start) % DIGEST:
        at = mm.find(needle, at + 1, end)
    return (at - start) // DIGEST if at >= 0 else -1


def _size(workers: int, capacity: int, cool: int) -> int:
    return HEADER_SIZE + capacity * (DIGEST + 8 + 4 * workers) + cool * (DIGEST + 8)
