"""Who vouches for a login token: the gateway itself, or an issuer the operator runs.

`OwnIssuer` keeps its signing keys in the database (the first made at start, more by
`rotate`); every process on the database signs with the newest and verifies with any.
`ExternalIssuer` (Logto, Keycloak, Auth0, Authentik, Zitadel) is found through its
`/.well-known/openid-configuration`; its JWKS is cached and fetched again when a token
names a key it does not know, at most once a minute (`jwks_refetch_seconds`), so forged
`kid`s cannot make the gateway hammer the issuer. Both answer `claims(token)` or raise `TokenError`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ..core.config_identity import IdentitySettings
from ..core.errors import OAuthError, ServiceUnavailable
from ..identity.tokens import (
    ACCEPTED_ALGORITHMS,
    SigningKeys,
    TokenError,
    key_set_from_jwks,
    new_signing_key,
    verify,
)
from ..store import Store, UserRecord
from ..store import identity as ids

KEYS_MAX_AGE = 60.0  # seconds: then the keys are read again, to sign with the newest
KEYS_RELOAD_SECONDS = 10.0  # at most this often, an unknown kid reads our keys again

FetchJSON = Callable[[str], Awaitable[dict[str, Any]]]


def own_issuer(issuer: OwnIssuer | None, auth: IdentitySettings) -> OwnIssuer:
    """The gateway's own issuer; with an external one, a grant here is refused with where
    to log in instead."""
    if issuer is None:
        raise OAuthError(
            "unsupported_grant_type", f"this gateway does not issue tokens; log in at {auth.issuer}"
        )
    return issuer


class OwnIssuer:
    def __init__(self, store: Store, auth: IdentitySettings, base_url: Callable[[], str]) -> None:
        self._store = store
        self._auth = auth
        self._base_url = base_url
        self._keys: SigningKeys | None = None
        self._keys_read = 0.0

    @property
    def issuer(self) -> str:
        return self._base_url()

    @property
    def audience(self) -> str:
        return self._auth.audience or self._base_url()

    async def start(self) -> None:
        """Make the first signing key if there is none (one, even with several processes)."""
        kid, jwk = new_signing_key()
        await self._store.write(lambda c: ids.add_signing_key(c, kid, jwk, rotate=False))
        await self._read_keys()

    async def claims(self, token: str) -> dict[str, Any]:
        keys = await self._signing_keys()
        try:
            return verify(token, keys.key_set, issuer=self.issuer, audience=self.audience)
        except TokenError as exc:
            if "kid" not in str(exc).lower():
                raise
        keys = await self._signing_keys(refresh=True)  # made by another process since
        return verify(token, keys.key_set, issuer=self.issuer, audience=self.audience)

    async def sign(self, user: UserRecord, scope: str, client_id: str) -> tuple[str, int]:
        """An access token for the user, and its lifetime in seconds."""
        keys = await self._signing_keys()
        now = int(time.time())
        lifetime = int(self._auth.access_token_seconds)
        claims = {
            "iss": self.issuer,
            "sub": user.id,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "jti": secrets.token_hex(12),
            "client_id": client_id,
            "scope": scope,
            "email": user.email,
        }
        return keys.sign(claims), lifetime

    async def jwks(self) -> dict[str, Any]:
        return (await self._signing_keys()).jwks()

    async def rotate(self) -> str:
        kid, jwk = new_signing_key()
        await self._store.write(lambda c: ids.add_signing_key(c, kid, jwk, rotate=True))
        await self._read_keys()
        return kid

    def session_secret(self) -> bytes:
        """A key for the sign-in page's cookies, the same in every process on this database."""
        if self._keys is None:
            raise RuntimeError("the issuer has not started")
        return self._keys.derive(b"tokenroute session cookies")

    async def _signing_keys(self, refresh: bool = False) -> SigningKeys:
        age = trio.current_time() - self._keys_read
        if self._keys is None or (refresh and age > KEYS_RELOAD_SECONDS) or age > KEYS_MAX_AGE:
            await self._read_keys()
        assert self._keys is not None
        return self._keys

    async def _read_keys(self) -> None:
        self._keys = SigningKeys(await self._store.read(ids.signing_keys))
        self._keys_read = trio.current_time()


class ExternalIssuer:
    def __init__(self, auth: IdentitySettings, fetch_json: FetchJSON) -> None:
        assert auth.issuer is not None and auth.audience is not None
        self.issuer: str = auth.issuer
        self.audience: str = auth.audience
        self._fetch = fetch_json
        self._refetch = auth.jwks_refetch_seconds
        self._keys: Any = None
        self._fetched = -self._refetch
        self._fetching = trio.Lock()

    async def start(self) -> None:
        """Nothing to do until the first token: the issuer may start after the gateway."""

    async def claims(self, token: str) -> dict[str, Any]:
        keys = await self._key_set()
        try:
            return self._verify(token, keys)
        except TokenError as exc:
            if "kid" not in str(exc).lower():
                raise
        return self._verify(token, await self._key_set(refetch=True))  # rotated at the issuer

    def _verify(self, token: str, keys: Any) -> dict[str, Any]:
        return verify(
            token,
            keys,
            issuer=self.issuer,
            audience=self.audience,
            algorithms=ACCEPTED_ALGORITHMS,
        )

    async def _key_set(self, refetch: bool = False) -> Any:
        async with self._fetching:
            due = trio.current_time() - self._fetched >= self._refetch
            if self._keys is None and not due:
                raise ServiceUnavailable(
                    "the login issuer cannot be reached to check this token; try again shortly",
                    headers={"retry-after": str(int(self._refetch))},
                )
            if self._keys is None or (refetch and due):
                self._fetched = trio.current_time()
                self._keys = await self._fetch_keys()
            return self._keys

    async def _fetch_keys(self) -> Any:
        where = f"{self.issuer}/.well-known/openid-configuration"
        try:
            config = await self._fetch(where)
            if config.get("issuer") != self.issuer:
                raise ValueError(f"its discovery names issuer {config.get('issuer')!r}")
            jwks_uri = config.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
                raise ValueError("its discovery has no jwks_uri")
            return key_set_from_jwks(await self._fetch(jwks_uri))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ServiceUnavailable(
                "the login issuer cannot be reached to check this token; try again shortly",
                detail=f"{where}: {exc}",
            ) from exc
