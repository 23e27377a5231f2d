"""A revocation holds even against a key lookup that was already under way.

The race is one of timing (a lookup reads the key, the key is revoked and the cache
emptied, then the lookup finishes), so the lookup is held at that point: the key
cache runs on a real database file through a store whose reads take their snapshot at
once but return only when the test lets them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import pytest
import trio

from proxy.access import keys
from proxy.access.auth import KeyAuth
from proxy.core.errors import AuthenticationFailed
from proxy.store import accounts as acc
from proxy.store.ledger import transaction


class HeldReads:
    """The store's read interface, over a real connection, with each read held on a gate."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.gate = trio.Event()
        self.waiting = trio.Event()
        self.listeners: list[Callable[[], None]] = []

    def on_external_change(self, callback: Callable[[], None]) -> None:
        self.listeners.append(callback)

    async def read(self, fn: Callable[..., Any], *args: Any) -> Any:
        result = fn(self.conn, *args)  # the snapshot is taken now
        self.waiting.set()
        await self.gate.wait()
        return result


async def test_a_lookup_under_way_cannot_undo_a_revocation(tmp_db: sqlite3.Connection) -> None:
    raw = keys.generate_key()
    with transaction(tmp_db):
        user = acc.create_user(tmp_db, "ann@example.com")
        key = acc.create_key(
            tmp_db,
            user_id=user.id,
            name="k",
            key_hash=keys.hash_key(raw),
            key_prefix=keys.display_prefix(raw),
        )
    store = HeldReads(tmp_db)
    auth = KeyAuth(store, ttl=30)  # type: ignore[arg-type]
    store.gate.set()
    await auth.start()
    store.gate, store.waiting = trio.Event(), trio.Event()

    found: list[Any] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: _append(found, auth.authenticate(f"Bearer {raw}")))
        await store.waiting.wait()  # the lookup has read the key, still active
        with transaction(tmp_db):
            acc.revoke_key(tmp_db, key.id)
        for changed in store.listeners:  # what the store's writer does on a change elsewhere
            changed()
        store.gate.set()
    assert found[0].active  # the request that was already in flight may pass
    with pytest.raises(AuthenticationFailed, match="revoked"):  # the next one may not
        await auth.authenticate(f"Bearer {raw}")


async def _append(into: list[Any], lookup: Any) -> None:
    into.append(await lookup)
