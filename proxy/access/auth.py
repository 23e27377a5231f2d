"""API key authentication: a bounded in-process cache in front of the database.

The raw key is hashed once per request and looked up by digest. Known keys live in an
LRU cache for `ttl` seconds; a digest the key directory does not know is refused
without a database read (`directory`), so a flood of made-up keys neither reaches the
disk nor pushes valid keys out of the cache. Every change of keys (another process
writing the database, a revocation here) bumps a generation and empties the cache; a
lookup that started before such a change does not put its (possibly stale) record
back, so a revocation holds within the store's poll interval, always.
"""

from __future__ import annotations

from collections import OrderedDict

import trio

from ..core.errors import AuthenticationFailed
from ..store import KeyRecord, Store
from ..store.accounts import key_by_hash
from .directory import KeyDirectory
from .keys import hash_key, looks_like_key

CAPACITY = 100_000  # keys cached at once; the least recently used go first


class KeyAuth:
    def __init__(self, store: Store, ttl: float, *, capacity: int = CAPACITY) -> None:
        self._store = store
        self._ttl = ttl
        self._capacity = capacity
        self._cache: OrderedDict[bytes, tuple[KeyRecord, float]] = OrderedDict()
        self._generation = 0
        self.directory = KeyDirectory(store)
        store.on_external_change(self.invalidate)

    async def start(self) -> None:
        await self.directory.load()

    def invalidate(self) -> None:
        """Keys changed: forget them all, including lookups under way."""
        self._generation += 1
        self._cache.clear()

    def added(self, raw: str) -> None:
        """A key this process just made: known at once."""
        self.directory.add(hash_key(raw))

    async def authenticate(self, authorization: str | None) -> KeyRecord:
        raw = _bearer(authorization)
        if raw is None:
            raise AuthenticationFailed("missing API key: send 'Authorization: Bearer sk-tr-...'")
        if not looks_like_key(raw):
            raise AuthenticationFailed("invalid API key")
        digest = hash_key(raw)
        now = trio.current_time()
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > now:
            self._cache.move_to_end(digest)
            record = hit[0]
        else:
            if not await self.directory.contains(digest):
                raise AuthenticationFailed("invalid API key")
            generation = self._generation
            found = await self._store.read(key_by_hash, digest)
            if found is None:
                raise AuthenticationFailed("invalid API key")
            record = found
            if generation == self._generation:  # no change of keys while we read
                self._cache[digest] = (record, now + self._ttl)
                self._cache.move_to_end(digest)
                if len(self._cache) > self._capacity:
                    self._cache.popitem(last=False)
        if not record.active:
            if record.status == "disabled":
                raise AuthenticationFailed("this API key's account is disabled")
            raise AuthenticationFailed("this API key has been revoked")
        return record


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
