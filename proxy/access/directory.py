"""Every key the database holds, by digest: a made-up key is refused without reading the disk.

A flood of random keys would otherwise cost a database read each. The directory keeps
the first 8 bytes of every key's digest in memory (about 60 bytes a key); a digest it
does not know triggers a refresh of the keys added since the last one, and refreshes
are shared: however many unknown keys arrive, the database is read at most once per
`min_interval`. A key made a moment ago, by this process or another one, is found by
the refresh its first request triggers.
"""

from __future__ import annotations

import math

import trio

from ..store import Store
from ..store.accounts import key_hashes_since

PREFIX_BYTES = 8


class KeyDirectory:
    def __init__(self, store: Store, min_interval: float = 0.1) -> None:
        self._store = store
        self._min_interval = min_interval
        self._known: set[bytes] = set()
        self._rowid = 0  # the last key row read
        self._covered = -math.inf  # every key committed before this time (trio clock) is known
        self._last_start = -math.inf
        self._running: trio.Event | None = None
        self._running_since = 0.0

    def add(self, digest: bytes) -> None:
        """A key this process just made."""
        self._known.add(digest[:PREFIX_BYTES])

    def knows(self, digest: bytes) -> bool:
        return digest[:PREFIX_BYTES] in self._known

    async def contains(self, digest: bytes) -> bool:
        """Whether a key with this digest may exist; reads only keys added since last time."""
        if digest[:PREFIX_BYTES] in self._known:
            return True
        await self.refresh(asked=trio.current_time())
        return digest[:PREFIX_BYTES] in self._known

    async def load(self) -> None:
        """Read every key (at start-up)."""
        await self._read()

    async def refresh(self, asked: float) -> None:
        """Make sure every key committed before `asked` (trio clock) is known."""
        while self._covered < asked:
            running = self._running
            if running is not None:  # share the refresh under way
                since = self._running_since
                await running.wait()
                if since >= asked and self._covered >= since:
                    return
                continue
            wait = self._last_start + self._min_interval - trio.current_time()
            if wait > 0:
                await trio.sleep(wait)
                continue
            await self._read()

    async def _read(self) -> None:
        done = self._running = trio.Event()
        started = self._running_since = self._last_start = trio.current_time()
        try:
            self._rowid, digests = await self._store.read(key_hashes_since, self._rowid)
            self._known.update(d[:PREFIX_BYTES] for d in digests)
            self._covered = max(self._covered, started)
        finally:
            self._running = None
            done.set()

    def __len__(self) -> int:
        return len(self._known)
