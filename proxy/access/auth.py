"""API key authentication with a short in-process cache.

The raw key is hashed once per request and looked up by digest: the cache maps
digests to key records (or to "unknown", so a flood of bad keys does not reach
the database). Entries live `ttl` seconds and are all dropped when another
process changes the database, so `tokenroute admin revoke-key` takes effect
within the store's poll interval.
"""

from __future__ import annotations

import trio

from ..core.errors import AuthenticationFailed
from ..store import KeyRecord, Store
from ..store.accounts import key_by_hash
from .keys import hash_key, looks_like_key

MAX_ENTRIES = 100_000


class KeyAuth:
    def __init__(self, store: Store, ttl: float) -> None:
        self._store = store
        self._ttl = ttl
        self._cache: dict[bytes, tuple[KeyRecord | None, float]] = {}
        store.on_external_change(self.invalidate)

    def invalidate(self) -> None:
        self._cache.clear()

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
            record = hit[0]
        else:
            record = await self._store.read(key_by_hash, digest)
            if len(self._cache) >= MAX_ENTRIES:
                self._cache.clear()
            self._cache[digest] = (record, now + self._ttl)
        if record is None:
            raise AuthenticationFailed("invalid API key")
        if not record.active:
            raise AuthenticationFailed("this API key has been revoked")
        return record


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
