"""DeviceFlowService: RFC 8628 device authorization and the token endpoint (RFC 6749).

A device code approved on `/device` (or by `tokenroute admin approve-device`) turns,
once, into an access token signed by the gateway and a refresh token (random, stored
hashed, rotated on every use; a reused one ends its whole family). With an external
issuer the gateway issues nothing and says where to log in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ..core.config_identity import IdentitySettings
from ..core.errors import AuthenticationFailed, BadRequest, NotFound, OAuthError, RateLimited
from ..identity import codes
from ..identity.throttle import Throttle
from ..store import Store, UserRecord
from ..store import accounts as acc
from ..store import identity as ids
from ..store.accounts import Duplicate, Missing
from ..store.identity import DeviceRequest, GrantError
from .authorization import CODE_GRANT, AuthorizationService
from .issuers import OwnIssuer, own_issuer

T = TypeVar("T")
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
REFRESH_GRANT = "refresh_token"
SCOPES = ("openid", "profile", "email", "offline_access")


class DeviceFlowService:
    def __init__(
        self,
        store: Store,
        auth: IdentitySettings,
        issuer: OwnIssuer | None,
        base_url: Callable[[], str],
        codes: AuthorizationService,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._codes = codes  # the authorization code grant, and the clients registered
        self._store = store
        self._auth = auth
        self._issuer = issuer  # None: an external issuer logs people in
        self._base_url = base_url
        self._clock = clock
        self._code_guesses = Throttle(limit=20, window=600, clock=clock)  # per address

    async def authorize_device(self, client_id: str | None, scope: str | None) -> dict[str, object]:
        """RFC 8628 3.2: a new device code and the user code to type on `/device`."""
        self._own_issuer()
        self._check_client(client_id)
        device_code = codes.new_secret("dc_")
        interval = self._auth.poll_interval_seconds
        lifetime = int(self._auth.device_code_seconds)
        expires_at = int(self._clock() * 1000) + lifetime * 1000
        granted = _scope(scope)
        for attempt in range(5):  # a user code already in use: draw again
            user_code = codes.new_user_code()
            try:
                await self._write(ids.add_device_code, codes.digest(device_code), user_code,
                                  self._auth.client_id, granted, interval, expires_at)  # fmt: skip
                break
            except Duplicate:
                if attempt == 4:
                    raise
        page = f"{self._base_url()}/device"
        return {
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": page,
            "verification_uri_complete": f"{page}?user_code={user_code}",
            "expires_in": lifetime,
            "interval": interval,
        }

    async def token(self, form: Mapping[str, str]) -> dict[str, object]:
        """RFC 6749 5.1's token response for a device code, an authorization code (a
        registered client's) or a refresh token grant."""
        issuer = self._own_issuer()
        grant = form.get("grant_type")
        if grant == CODE_GRANT:
            return await self._codes.exchange(form)
        client_id = form.get("client_id") or ""
        registered = grant == REFRESH_GRANT and await self._codes.client(client_id) is not None
        if not registered:  # the CLI's client, the one the device flow serves
            self._check_client(client_id)
        new_refresh = codes.new_secret("rt_")
        if grant == DEVICE_GRANT:
            device_code = form.get("device_code") or ""
            if not device_code:
                raise OAuthError("invalid_request", "device_code is required")
            outcome = await self._write(
                ids.poll_device_code, codes.digest(device_code), self._auth.client_id
            )
        elif grant == REFRESH_GRANT:
            refresh = form.get("refresh_token") or ""
            if not refresh:
                raise OAuthError("invalid_request", "refresh_token is required")
            outcome = await self._write(ids.rotate_refresh_token, codes.digest(refresh),
                                        codes.digest(new_refresh), client_id,
                                        self._refresh_expiry())  # fmt: skip
        else:
            raise OAuthError(
                "unsupported_grant_type",
                f"grant_type must be {DEVICE_GRANT}, {CODE_GRANT} or {REFRESH_GRANT}",
            )
        if isinstance(outcome, GrantError):
            raise OAuthError(outcome.code, str(outcome))
        user_id, scope = outcome
        user = await self._store.read(acc.user_by_id, user_id)
        if user is None or not user.active:
            raise OAuthError("invalid_grant", "this account is disabled")
        if grant == DEVICE_GRANT:
            await self._write(ids.add_refresh_token, codes.digest(new_refresh), user.id,
                              self._auth.client_id, scope, self._refresh_expiry())  # fmt: skip
        access, lifetime = await issuer.sign(user, scope, client_id)
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "refresh_token": new_refresh,
            "scope": scope,
        }

    async def revoke(self, token: str) -> None:
        """RFC 7009: revoke a refresh token (and its rotations); unknown tokens are fine."""
        if token:
            await self._write(ids.revoke_refresh_token, codes.digest(token))

    async def device_request(self, typed_code: str, address: str) -> DeviceRequest:
        """The pending request a typed user code names; guesses are throttled per address."""
        if self._code_guesses.wait(address) > 0:
            raise RateLimited("too many codes tried; wait a few minutes")
        user_code = codes.normalize_user_code(typed_code)
        found = await self._store.read(ids.device_request, user_code) if user_code else None
        now_ms = int(self._clock() * 1000)
        if found is None or found.status != "pending" or found.expires_at <= now_ms:
            self._code_guesses.failed(address)
            raise NotFound("that code is unknown or expired; check it, or start again")
        return found

    async def decide(self, user_code: str, user: UserRecord, approve: bool) -> DeviceRequest:
        if not user.active:
            raise AuthenticationFailed("this account is disabled")

        def record(conn: Any) -> DeviceRequest:
            found = ids.decide_device_code(conn, user_code, user.id, approve)
            ids.audit(conn, user.email, "approve-device" if approve else "deny-device", user_code)
            return found

        return await self._write(record)

    async def approve_as(self, typed_code: str, email: str) -> DeviceRequest:
        """`tokenroute admin approve-device`: approve a code for a user, from the terminal."""
        user_code = codes.normalize_user_code(typed_code)
        if user_code is None:
            raise BadRequest(f"not a user code: {typed_code!r} (8 letters, like BCDF-GHJK)")
        user, _ = await self._store.read(ids.login_of, email)
        if user is None:
            raise NotFound(f"no user with email {email}", param="email")
        return await self.decide(user_code, user, approve=True)

    def _refresh_expiry(self) -> int:
        return int((self._clock() + self._auth.refresh_token_seconds) * 1000)

    def _own_issuer(self) -> OwnIssuer:
        return own_issuer(self._issuer, self._auth)

    def _check_client(self, client_id: str | None) -> None:
        if client_id != self._auth.client_id:
            raise OAuthError("invalid_client", "unknown client_id", status=401)

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await self._store.write(lambda conn: fn(conn, *args))
        except Missing as exc:
            raise NotFound(str(exc)) from exc


def _scope(requested: str | None) -> str:
    """The scopes granted: those asked for that exist (all of them when none are asked)."""
    asked = (requested or "").split()
    unknown = [s for s in asked if s not in SCOPES]
    if unknown:
        raise OAuthError("invalid_scope", f"unknown scope {unknown[0]!r}")
    return " ".join(asked) if asked else " ".join(SCOPES)
