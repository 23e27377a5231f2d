"""Who is calling the management API: a person's login (a JWT) or one API key.

A login acts for its user; an `sk-tr` key acts for itself alone (its balance, its usage,
a top-up for it) and cannot manage keys. Every surface that takes either (the `/api/v1`
routes, the MCP tools) asks here, so the rule lives once.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..access.keys import PREFIX as KEY_PREFIX
from ..core.errors import AuthenticationFailed, BadRequest, PermissionDenied
from ..store import KeyRecord, UserRecord
from .accounts import AccountService
from .identity import IdentityService


@dataclass(frozen=True, slots=True)
class Caller:
    user: UserRecord
    key: KeyRecord | None  # set when an API key, not a login, made the call


class Callers:
    def __init__(self, accounts: AccountService, identity: IdentityService) -> None:
        self._accounts = accounts
        self._identity = identity

    async def resolve(self, authorization: str | None, *, manages_keys: bool = False) -> Caller:
        """The caller an `Authorization: Bearer ...` header names; 401, or 403 for an API key
        where key management needs a login."""
        header = authorization or ""
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationFailed(
                "send Authorization: Bearer <login token> (tokenroute login) or an sk-tr key"
            )
        if not token.startswith(KEY_PREFIX):
            return Caller(await self._identity.user_of_token(token), None)
        key = await self._accounts.authenticate(header)
        owner = await self._identity.user(key.user_id)
        if owner is None or not owner.active:
            raise AuthenticationFailed("this key's account is disabled")
        caller = Caller(owner, key)
        return self.managing(caller) if manages_keys else caller

    @staticmethod
    def managing(caller: Caller) -> Caller:
        """The caller, when it may manage keys: a login may, an API key may not (403)."""
        if caller.key is not None:
            raise PermissionDenied(
                "managing keys needs a login token (tokenroute login), not an API key"
            )
        return caller

    async def balance(self, caller: Caller) -> int:
        """The key's own balance for a key; the sum over the user's active keys for a login."""
        if caller.key is not None:
            return await self._accounts.key_balance(caller.key.id)
        return await self._accounts.user_balance(caller.user.id)

    async def usage(self, caller: Caller, days: int, key_id: str | None) -> dict[str, object]:
        """The usage summary a caller may read: an API key its own only, a login its user's
        keys (all of them, or the one of theirs it names)."""
        if caller.key is not None:
            if key_id not in (None, caller.key.id):
                raise PermissionDenied("an API key can read its own usage only")
            key_id = caller.key.id
        elif key_id is not None:
            keys = await self._accounts.user_keys(caller.user.id)
            if not any(key.id == key_id for key, _ in keys):
                raise BadRequest(f"no key {key_id} of yours", param="key")
        user_id = None if key_id else caller.user.id
        return await self._accounts.usage(days, key_id=key_id, user_id=user_id)
