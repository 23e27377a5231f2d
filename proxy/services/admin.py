"""AdminService: what a partner backend or the operator's tools do with `X-Internal-Secret`.

Users found, made, disabled; keys made for a user (the raw key once); credit granted or
taken back with a note; a key's ledger; usage by user, key, model and day. Every action
that changes something is written to the audit log: who (the secret's holder), what,
on what, and from which address. Nothing here works when no internal secret is set.
"""

from __future__ import annotations

from typing import Any

from ..access.internal import internal_secret_matches
from ..core.config import Settings
from ..core.errors import AuthenticationFailed, BadRequest, NotFound
from ..store import Store, UserRecord
from ..store import accounts as acc
from ..store import identity as ids
from .accounts import AccountService, Credit, NewKey

ACTOR = "internal-secret"


class AdminService:
    def __init__(self, accounts: AccountService, store: Store, settings: Settings) -> None:
        self._accounts = accounts
        self._store = store
        self._secret = settings.internal_secret

    @property
    def enabled(self) -> bool:
        return self._secret is not None

    def check(self, given: str | None) -> None:
        """404 when the admin API is off; 401 unless `given` is the secret (constant time)."""
        if not self.enabled:
            raise NotFound("the admin API is off: set TOKENROUTE_INTERNAL_SECRET to use it")
        if not internal_secret_matches(self._secret, given):
            raise AuthenticationFailed("send the internal secret in X-Internal-Secret")

    async def user(self, *, user_id: str | None = None, email: str | None = None) -> UserRecord:
        if (user_id is None) == (email is None):
            raise BadRequest("give exactly one of id or email", param="email")
        if user_id is not None:
            found = await self._store.read(acc.user_by_id, user_id)
        else:
            found = await self._store.read(acc.user_by_email, email)
        if found is None:
            raise NotFound(f"no user with {'id ' + user_id if user_id else 'email ' + str(email)}")
        return found  # type: ignore[no-any-return]

    async def create_user(self, email: str, name: str, admin: bool, address: str) -> UserRecord:
        user = await self._accounts.create_user(email, name=name, admin=admin)
        await self._audit("create-user", user.id, user.email, address)
        return user

    async def set_user_status(self, user_id: str, status: str, address: str) -> UserRecord:
        user = await self.user(user_id=user_id)
        return await self._accounts.set_user_status(
            user.email, status, actor=ACTOR, address=address
        )

    async def create_key(self, user_id: str, name: str, credit: int, address: str) -> NewKey:
        user = await self.user(user_id=user_id)
        new = await self._accounts.create_key(user.email, name, credit=credit, actor=ACTOR)
        await self._audit("create-key", new.record.id, f"{name}, credit {credit}", address)
        return new

    async def credit(self, key_id: str, amount: int, note: str | None, address: str) -> Credit:
        """A grant (amount above 0) or an adjustment (below 0), with its note on the ledger."""
        if amount == 0:
            raise BadRequest("amount_usd must not be zero", param="amount_usd")
        done = await self._accounts.grant(key_id, amount, note=note, actor=ACTOR)
        await self._audit(done.kind, key_id, f"{amount} ({note or 'no note'})", address)
        return done

    async def ledger(self, key_id: str, limit: int) -> list[dict[str, object]]:
        return await self._accounts.ledger(key_id, limit)

    async def usage(self, days: int, *, user_id: str | None, key_id: str | None) -> dict[str, Any]:
        if (user_id is None) == (key_id is None):
            raise BadRequest("give exactly one of user or key", param="user")
        return await self._accounts.usage(days, key_id=key_id, user_id=user_id)

    async def audit_log(self, limit: int) -> list[dict[str, object]]:
        return await self._store.read(ids.audit_rows, limit)  # type: ignore[no-any-return]

    async def record(self, actor: str, action: str, target: str, detail: str, address: str) -> None:
        """An action taken elsewhere (the admin pages), for the audit log."""
        await self._store.write(
            lambda conn: ids.audit(conn, actor, action, target, detail, address)
        )

    async def _audit(self, action: str, target: str, detail: str, address: str) -> None:
        await self.record(ACTOR, action, target, detail, address)
