"""AccountService: users, keys, credit, the ledger and usage, for every surface.

The CLI's `admin` commands call it on the database file; the management API, the
admin pages and MCP tools will call the same methods in the server. Every write
goes through the store's single writer in one transaction; problems come back as
the gateway's errors (404 for an unknown user or key, 409 for a duplicate, 400 for
bad input), so each surface renders them its own way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from ..access import keys
from ..access.auth import KeyAuth
from ..core.config import Settings
from ..core.errors import BadRequest, Conflict, GatewayError, NotFound
from ..store import AccountError, Duplicate, KeyRecord, Missing, Store, UserRecord
from ..store import accounts as acc
from ..store import identity as ids
from ..store import ledger as books
from ..store.usage import usage_for_request, usage_summary

T = TypeVar("T")
MAX_USAGE_DAYS = 365


@dataclass(frozen=True, slots=True)
class NewKey:
    record: KeyRecord
    raw: str  # shown once, never stored
    owner: UserRecord


@dataclass(frozen=True, slots=True)
class Credit:
    key_id: str
    kind: str  # grant | adjustment
    amount: int
    balance: int  # after the change


@dataclass(frozen=True, slots=True)
class BooksCheck:
    problems: list[str]  # empty when every balance matches its ledger
    open_holds: int


class AccountService:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        auth: KeyAuth,
        on_credit: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._auth = auth
        self._on_credit = on_credit  # a key's balance moved here: make it spendable at once

    async def authenticate(self, authorization: str | None) -> KeyRecord:
        """The active key an `Authorization: Bearer sk-tr-...` header names, or 401."""
        return await self._auth.authenticate(authorization)

    # -- users and keys ----------------------------------------------------------------------
    async def create_user(self, email: str, *, name: str = "", admin: bool = False) -> UserRecord:
        return await self._write(acc.create_user, email, admin=admin, display_name=name)

    async def create_key(
        self, email: str, name: str, *, credit: int = 0, actor: str = "admin"
    ) -> NewKey:
        """A new key for the user with this email, with an opening grant of `credit`."""
        raw = keys.generate_key()

        def create(conn: Any) -> tuple[UserRecord, KeyRecord]:
            owner = acc.user_by_email(conn, email)
            if owner is None:
                raise NotFound(f"no user with email {email}; create the user first", param="email")
            record = acc.create_key(
                conn,
                user_id=owner.id,
                name=name,
                key_hash=keys.hash_key(raw),
                key_prefix=keys.display_prefix(raw),
                credit=credit,
                actor=actor,
            )
            return owner, record

        owner, record = await self._write(create)
        self._auth.added(raw)
        return NewKey(record, raw, owner)

    async def revoke_key(self, key_id: str) -> KeyRecord:
        record = await self._write(acc.revoke_key, key_id)
        self._auth.invalidate()
        return record

    async def set_user_status(
        self, email: str, status: str, *, actor: str = "admin", address: str | None = None
    ) -> UserRecord:
        """Disable (or enable again) a user: a disabled user's logins and keys get 401."""
        if status not in ("active", "disabled"):
            raise BadRequest("status must be active or disabled", param="status")

        def change(conn: Any) -> UserRecord:
            user = ids.set_user_status(conn, email, status)
            ids.audit(conn, actor, f"user-{status}", user.id, user.email, address)
            return user

        user = await self._write(change)
        self._auth.invalidate()
        return user

    # -- a user's own keys (the management API) -----------------------------------------------
    async def user_keys(self, user_id: str) -> list[tuple[KeyRecord, int | None]]:
        """The user's keys with the time of each one's last request."""
        return await self._read(acc.keys_of_user, user_id)

    async def key(self, key_id: str) -> KeyRecord:
        """A key as recorded now; 404 if there is none."""
        record = await self._read(acc.key_by_id, key_id)
        if record is None:
            raise NotFound(f"no key with id {key_id}")
        return record  # type: ignore[no-any-return]

    async def key_balance(self, key_id: str) -> int:
        """A key's balance as recorded now (the authentication cache may be older)."""
        record = await self._read(acc.key_by_id, key_id)
        if record is None:
            raise NotFound(f"no key with id {key_id}")
        return record.balance  # type: ignore[no-any-return]

    async def user_balance(self, user_id: str) -> int:
        keys = await self.user_keys(user_id)
        return sum(key.balance for key, _ in keys if key.active)

    async def create_user_key(
        self, user_id: str, name: str, *, credit: int = 0, from_key: str | None = None
    ) -> NewKey:
        """A new key for the user; `credit` moves from their key `from_key` in the same
        transaction (two ledger rows), so no money is made or lost."""
        if credit < 0:
            raise BadRequest("credit cannot be negative", param="credit_usd")
        if credit and not from_key:
            raise BadRequest("credit_usd needs from_key: the key to move it from", param="from_key")
        raw = keys.generate_key()

        def create(conn: Any) -> tuple[UserRecord, KeyRecord]:
            owner = acc.user_by_id(conn, user_id)
            if owner is None:
                raise Missing(f"no user with id {user_id}")
            if from_key:
                _own_key(conn, user_id, from_key, "from_key")
            record = acc.create_key(
                conn,
                user_id=user_id,
                name=name,
                key_hash=keys.hash_key(raw),
                key_prefix=keys.display_prefix(raw),
                actor=owner.email,
            )
            if credit and from_key:
                transfer_id = acc.new_id()
                books.credit(conn, from_key, -credit, kind="transfer", reference=transfer_id,
                             actor=owner.email, note=f"to new key {record.id}")  # fmt: skip
                books.credit(conn, record.id, credit, kind="transfer", reference=transfer_id,
                             actor=owner.email, note=f"from key {from_key}")  # fmt: skip
                record = acc.key_by_id(conn, record.id) or record
            return owner, record

        owner, record = await self._write(create)
        self._auth.added(raw)
        if credit and from_key:
            await self._credited(from_key)
        return NewKey(record, raw, owner)

    async def revoke_user_key(self, user_id: str, key_id: str) -> KeyRecord:
        def revoke(conn: Any) -> KeyRecord:
            _own_key(conn, user_id, key_id, "id")
            return acc.revoke_key(conn, key_id)

        record = await self._write(revoke)
        self._auth.invalidate()
        return record

    async def transfer(
        self, user_id: str, from_key: str, to_key: str, amount: int, *, actor: str
    ) -> tuple[KeyRecord, KeyRecord]:
        """Move credit between two of the user's keys: two ledger rows, one transaction."""
        if amount <= 0:
            raise BadRequest("amount_usd must be above 0", param="amount_usd")
        if from_key == to_key:
            raise BadRequest("to_key is the key the credit comes from", param="to_key")

        def move(conn: Any) -> tuple[KeyRecord, KeyRecord]:
            _own_key(conn, user_id, from_key, "id")
            target = _own_key(conn, user_id, to_key, "to_key")
            if not target.active:
                raise AccountError("to_key is revoked: credit cannot move onto it")
            transfer_id = acc.new_id()
            books.credit(conn, from_key, -amount, kind="transfer", reference=transfer_id,
                         actor=actor, note=f"to key {to_key}")  # fmt: skip
            books.credit(conn, to_key, amount, kind="transfer", reference=transfer_id,
                         actor=actor, note=f"from key {from_key}")  # fmt: skip
            source, dest = acc.key_by_id(conn, from_key), acc.key_by_id(conn, to_key)
            assert source is not None and dest is not None
            return source, dest

        moved = await self._write(move)
        await self._credited(from_key)
        await self._credited(to_key)
        return moved

    async def generation(self, request_id: str, *, user_id: str, key_id: str | None = None
                         ) -> list[dict[str, object]]:  # fmt: skip
        """The usage rows of one request, for the key's owner (or that key) only."""
        rows = await self._read(usage_for_request, request_id)
        mine = [r for r in rows if r["user_id"] == user_id and key_id in (None, r["key_id"])]
        if not mine:
            raise NotFound(f"no request {request_id} of yours", param="id")
        return mine

    # -- money -------------------------------------------------------------------------------
    async def grant(
        self, key_id: str, amount: int, *, note: str | None = None, actor: str = "admin"
    ) -> Credit:
        """Add credit to a key; a negative amount takes it back (an adjustment)."""
        kind = "grant" if amount > 0 else "adjustment"
        balance = await self._write(books.credit, key_id, amount, kind=kind, actor=actor, note=note)
        await self._credited(key_id)
        return Credit(key_id, kind, amount, balance)

    async def _credited(self, key_id: str) -> None:
        if self._on_credit is not None:
            await self._on_credit(key_id)

    async def ledger(self, key_id: str, limit: int) -> list[dict[str, object]]:
        """A key's ledger rows, newest first."""
        if limit < 1:
            raise BadRequest("the limit must be at least 1", param="limit")
        return await self._read(books.ledger_rows, key_id, limit)

    async def set_limits(
        self,
        key_id: str,
        *,
        tier: str | None = None,
        rps: float | None = None,
        burst: int | None = None,
        max_streams: int | None = None,
    ) -> dict[str, object]:
        """A key's tier or its own limits; the key's limits afterwards."""
        tiers = {t.name for t in self._settings.tiers}
        if tier is not None and tier not in tiers:
            known = ", ".join(sorted(tiers))
            raise BadRequest(f"no tier named {tier!r} (known: {known})", param="tier")
        if rps is not None and not (0 < rps < math.inf):  # NaN fails too (SQLite stores NULL)
            raise BadRequest("rps must be a number above 0", param="rps")
        if burst is not None and burst < 1:
            raise BadRequest("burst must be at least 1", param="burst")
        if max_streams is not None and max_streams < 0:
            raise BadRequest("max_streams must be at least 0", param="max_streams")
        limits = await self._write(
            books.set_limits, key_id, tier=tier, rps=rps, burst=burst, max_streams=max_streams
        )
        self._auth.invalidate()  # the key's next request is limited by its new limits
        return limits

    async def check(self) -> BooksCheck:
        """Whether every balance equals its ledger and every cost has its debit."""

        def run(conn: Any) -> BooksCheck:
            return BooksCheck(books.check(conn), books.open_holds(conn))

        return await self._read(run)

    # -- usage -------------------------------------------------------------------------------
    async def usage(
        self, days: int, *, key_id: str | None = None, user_id: str | None = None
    ) -> dict[str, object]:
        """Successful requests of the last `days` days, for one key or one user's keys.

        Counted in whole UTC days, from the day `days` × 24 h ago: the daily rollups answer,
        so the totals stay the same after retention deleted the raw rows of those days.
        """
        if not 1 <= days <= MAX_USAGE_DAYS:
            raise BadRequest(f"days must be from 1 to {MAX_USAGE_DAYS}", param="days")
        since = datetime.fromtimestamp(time.time() - days * 86_400, tz=UTC).date().isoformat()
        return await self._read(usage_summary, since, key_id=key_id, user_id=user_id)

    # -- the store ---------------------------------------------------------------------------
    async def _write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await self._store.write(lambda conn: fn(conn, *args, **kwargs))
        except AccountError as exc:
            raise _as_gateway_error(exc) from exc

    async def _read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await self._store.read(lambda conn: fn(conn, *args, **kwargs))
        except AccountError as exc:
            raise _as_gateway_error(exc) from exc


def _own_key(conn: Any, user_id: str, key_id: str, param: str) -> KeyRecord:
    """The user's key with this id; one of another user's is as unknown as no key at all."""
    record = acc.key_by_id(conn, key_id)
    if record is None or record.user_id != user_id:
        raise Missing(f"no key {key_id} of yours ({param})")
    return record


def _as_gateway_error(exc: AccountError) -> GatewayError:
    if isinstance(exc, Missing):
        return NotFound(str(exc))
    if isinstance(exc, Duplicate):
        return Conflict(str(exc))
    return BadRequest(str(exc))
