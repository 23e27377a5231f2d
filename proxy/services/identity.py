"""IdentityService: logging in (RFC 8628 device flow, passwords), and the tokens it yields.

The gateway is its own issuer by default: device codes approved on `/device` (or by
`tokenroute admin approve-device`) turn into an access token (a JWT signed with the
newest signing key) and a refresh token (random, stored hashed, rotated on use). Every
surface that accepts a login token asks `user_of_token`. Password hashing runs in a
worker thread behind a small limiter: it is slow on purpose.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import trio

from ..core.config import Settings
from ..core.errors import (
    AuthenticationFailed,
    BadRequest,
    Conflict,
    NotFound,
    OAuthError,
    PermissionDenied,
    RateLimited,
)
from ..identity import codes
from ..identity.passwords import Passwords, password_problem
from ..identity.throttle import Throttle
from ..identity.tokens import SigningKeys, TokenError, new_signing_key, verify
from ..store import Store, UserRecord
from ..store import accounts as acc
from ..store import identity as ids
from ..store.accounts import AccountError, Duplicate, Missing
from ..store.identity import DeviceRequest, GrantError

T = TypeVar("T")
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
REFRESH_GRANT = "refresh_token"
SCOPES = ("openid", "profile", "email", "offline_access")
KEYS_MAX_AGE = 60.0  # seconds: then the keys are read again, to sign with the newest
KEYS_RELOAD_SECONDS = 10.0  # at most this often, an unknown kid reads the keys again


class IdentityService:
    def __init__(self, store: Store, settings: Settings, clock: Callable[[], float] = time.time):
        self._store = store
        self._settings = settings
        self._auth = settings.identity
        self._clock = clock
        self._passwords = Passwords()
        self._hashing = trio.CapacityLimiter(2)
        self._sign_ins = Throttle(limit=5, window=900, clock=clock)  # per email and per address
        self._code_guesses = Throttle(limit=20, window=600, clock=clock)  # user codes per address
        self._keys: SigningKeys | None = None
        self._keys_read = 0.0
        self._bound_url = f"http://{settings.host}:{settings.port}"

    # -- lifecycle and URLs ------------------------------------------------------------------
    async def start(self) -> None:
        """Make the first signing key if there is none; read the keys."""
        if not self._auth.external:
            kid, jwk = new_signing_key()
            await self._store.write(lambda c: ids.add_signing_key(c, kid, jwk, rotate=False))
            await self._read_keys()

    def serving_at(self, url: str) -> None:
        """The address the server bound (its URL when no `public_url` is set)."""
        self._bound_url = url.replace("://0.0.0.0:", "://127.0.0.1:").rstrip("/")

    @property
    def base_url(self) -> str:
        return self._settings.public_url or self._bound_url

    @property
    def issuer(self) -> str:
        return self._auth.issuer or self.base_url

    @property
    def audience(self) -> str:
        return self._auth.audience or self.base_url

    def discovery(self) -> dict[str, object]:
        """What a client needs to run the device flow itself (the seeds' object)."""
        auth = self._auth
        base = auth.issuer or self.base_url
        return {
            "issuer": self.issuer,
            "client_id": auth.client_id,
            "device_authorization_endpoint": f"{base}/oauth/device/code",
            "token_endpoint": f"{base}/oauth/token",
            "scopes": list(SCOPES),
            "resource": self.audience,
        }

    def openid_configuration(self) -> dict[str, object]:
        base = self.base_url
        return {
            "issuer": self.issuer,
            "device_authorization_endpoint": f"{base}/oauth/device/code",
            "token_endpoint": f"{base}/oauth/token",
            "revocation_endpoint": f"{base}/oauth/revoke",
            "jwks_uri": f"{base}/oauth/jwks.json",
            "grant_types_supported": [DEVICE_GRANT, REFRESH_GRANT],
            "response_types_supported": ["token"],
            "scopes_supported": list(SCOPES),
            "token_endpoint_auth_methods_supported": ["none"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "subject_types_supported": ["public"],
        }

    async def jwks(self) -> dict[str, Any]:
        return (await self._signing_keys()).jwks()

    # -- the device flow ---------------------------------------------------------------------
    async def authorize_device(self, client_id: str | None, scope: str | None) -> dict[str, object]:
        """RFC 8628 3.2: a new device code and the user code to type on `/device`."""
        self._embedded_only()
        self._check_client(client_id)
        device_code = codes.new_secret("dc_")
        interval = self._auth.poll_interval_seconds
        lifetime = int(self._auth.device_code_seconds)
        expires_at = int(self._clock() * 1000) + lifetime * 1000
        scope = _scope(scope)
        for _ in range(5):  # a user code already in use: draw again
            user_code = codes.new_user_code()
            try:
                await self._write(
                    ids.add_device_code,
                    codes.digest(device_code),
                    user_code,
                    self._auth.client_id,
                    scope,
                    interval,
                    expires_at,
                )
                break
            except Duplicate:
                continue
        page = f"{self.base_url}/device"
        return {
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": page,
            "verification_uri_complete": f"{page}?user_code={user_code}",
            "expires_in": lifetime,
            "interval": interval,
        }

    async def token(self, form: Mapping[str, str]) -> dict[str, object]:
        """RFC 6749 5.1's token response for a device code or a refresh token grant."""
        self._embedded_only()
        self._check_client(form.get("client_id"))
        grant = form.get("grant_type")
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
            outcome = await self._write(
                ids.rotate_refresh_token,
                codes.digest(refresh),
                codes.digest(new_refresh := codes.new_secret("rt_")),
                self._auth.client_id,
                self._refresh_expiry(),
            )
        else:
            raise OAuthError(
                "unsupported_grant_type", f"grant_type must be {DEVICE_GRANT} or {REFRESH_GRANT}"
            )
        if isinstance(outcome, GrantError):
            raise OAuthError(outcome.code, str(outcome))
        user_id, scope = outcome
        user = await self._read(acc.user_by_id, user_id)
        if user is None or not user.active:
            raise OAuthError("invalid_grant", "this account is disabled")
        if grant == DEVICE_GRANT:
            new_refresh = codes.new_secret("rt_")
            await self._write(
                ids.add_refresh_token,
                codes.digest(new_refresh),
                user.id,
                self._auth.client_id,
                scope,
                self._refresh_expiry(),
            )
        return await self._token_response(user, scope, new_refresh)

    async def revoke(self, token: str) -> None:
        """RFC 7009: revoke a refresh token (and its rotations); unknown tokens are fine."""
        if token:
            await self._write(ids.revoke_refresh_token, codes.digest(token))

    async def device_request(self, typed_code: str, address: str) -> DeviceRequest:
        """The pending request a typed user code names; guesses are throttled per address."""
        if self._code_guesses.wait(address) > 0:
            raise RateLimited("too many codes tried; wait a few minutes")
        user_code = codes.normalize_user_code(typed_code)
        found = await self._read(ids.device_request, user_code) if user_code else None
        now_ms = int(self._clock() * 1000)
        if found is None or found.status != "pending" or found.expires_at <= now_ms:
            self._code_guesses.failed(address)
            raise NotFound("that code is unknown or expired; check it, or start again")
        return found

    async def decide(self, user_code: str, user: UserRecord, approve: bool) -> DeviceRequest:
        if not user.active:
            raise AuthenticationFailed("this account is disabled")
        found = await self._write(ids.decide_device_code, user_code, user.id, approve)
        await self._write(
            ids.audit, user.email, "approve-device" if approve else "deny-device", user_code
        )
        return found  # type: ignore[no-any-return]

    async def approve_as(self, typed_code: str, email: str) -> DeviceRequest:
        """`tokenroute admin approve-device`: approve a code for a user, from the terminal."""
        user_code = codes.normalize_user_code(typed_code)
        if user_code is None:
            raise BadRequest(f"not a user code: {typed_code!r} (8 letters, like BCDF-GHJK)")
        user, _ = await self._read(ids.login_of, email)
        if user is None:
            raise NotFound(f"no user with email {email}", param="email")
        return await self.decide(user_code, user, approve=True)

    # -- passwords ---------------------------------------------------------------------------
    async def sign_in(self, email: str, password: str, address: str) -> UserRecord:
        """The user these credentials belong to; 401 otherwise, throttled per email and address."""
        names = (f"email:{email.strip().lower()}", f"address:{address}")
        wait = max(self._sign_ins.wait(name) for name in names)
        if wait > 0:
            raise RateLimited(
                f"too many failed sign-ins; try again in {int(wait) + 1} s",
                headers={"retry-after": str(int(wait) + 1)},
            )
        user, stored = await self._read(ids.login_of, email)
        async with self._hashing:
            ok = await trio.to_thread.run_sync(self._passwords.verify, stored, password[:4096])
        if not ok or user is None:
            for name in names:
                self._sign_ins.failed(name)
            raise AuthenticationFailed("wrong email or password")
        if not user.active:
            raise AuthenticationFailed("this account is disabled")
        for name in names:
            self._sign_ins.succeeded(name)
        return user

    async def user(self, user_id: str) -> UserRecord | None:
        return await self._read(acc.user_by_id, user_id)

    @property
    def signup_open(self) -> bool:
        return self._auth.signup == "open" and not self._auth.external

    async def sign_up(self, email: str, name: str, password: str) -> UserRecord:
        """A new account from the sign-in page, when `[accounts] signup = "open"`."""
        if not self.signup_open:
            raise PermissionDenied("sign-up is closed: ask the operator for an account")
        problem = password_problem(password)
        if problem:
            raise BadRequest(problem, param="password")
        async with self._hashing:
            hashed = await trio.to_thread.run_sync(self._passwords.hash, password)

        def create(conn: Any) -> UserRecord:
            user = acc.create_user(conn, email, display_name=name.strip()[:200])
            return ids.set_password(conn, user.email, hashed)

        try:
            return await self._store.write(create)
        except Duplicate as exc:
            raise Conflict("an account with this email exists; sign in instead") from exc
        except AccountError as exc:
            raise BadRequest(str(exc), param="email") from exc

    def check_password(self, password: str) -> None:
        """400 for a password too short or too long to be set."""
        problem = password_problem(password)
        if problem:
            raise BadRequest(problem, param="password")

    async def set_password(self, email: str, password: str) -> UserRecord:
        self.check_password(password)
        async with self._hashing:
            hashed = await trio.to_thread.run_sync(self._passwords.hash, password)
        return await self._write(ids.set_password, email, hashed)  # type: ignore[no-any-return]

    # -- bearer tokens -----------------------------------------------------------------------
    async def user_of_token(self, token: str) -> UserRecord:
        """The active user a login JWT belongs to; 401 for anything else."""
        keys = await self._signing_keys()
        try:
            try:
                claims = verify(token, keys.key_set, issuer=self.issuer, audience=self.audience)
            except TokenError as exc:
                if "kid" not in str(exc).lower():
                    raise
                keys = await self._signing_keys(refresh=True)  # rotated by another process
                claims = verify(token, keys.key_set, issuer=self.issuer, audience=self.audience)
        except TokenError as exc:
            raise AuthenticationFailed("the login token is invalid or expired") from exc
        user = await self._read(acc.user_by_id, claims["sub"])
        if user is None:
            raise AuthenticationFailed("the login token's user no longer exists")
        if not user.active:
            raise AuthenticationFailed("this account is disabled")
        return user  # type: ignore[no-any-return]

    async def rotate_signing_key(self) -> str:
        kid, jwk = new_signing_key()
        await self._write(ids.add_signing_key, kid, jwk, rotate=True)
        await self._read_keys()
        return kid

    def session_secret(self) -> bytes:
        """A key for the sign-in page's cookies, the same in every process on this database."""
        if self._keys is None:  # an external issuer: the page is not used
            return secrets.token_bytes(32)
        return self._keys.derive(b"tokenroute session cookies")

    # -- internals ---------------------------------------------------------------------------
    async def _token_response(
        self, user: UserRecord, scope: str, refresh: str
    ) -> dict[str, object]:
        keys = await self._signing_keys()
        now = int(self._clock())
        lifetime = int(self._auth.access_token_seconds)
        claims = {
            "iss": self.issuer,
            "sub": user.id,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "jti": secrets.token_hex(12),
            "client_id": self._auth.client_id,
            "scope": scope,
            "email": user.email,
        }
        return {
            "access_token": keys.sign(claims),
            "token_type": "Bearer",
            "expires_in": lifetime,
            "refresh_token": refresh,
            "scope": scope,
        }

    async def _signing_keys(self, refresh: bool = False) -> SigningKeys:
        age = trio.current_time() - self._keys_read
        # Another process may rotate: read again on an unknown kid, and now and then.
        if self._keys is None or (refresh and age > KEYS_RELOAD_SECONDS) or age > KEYS_MAX_AGE:
            await self._read_keys()
        assert self._keys is not None
        return self._keys

    async def _read_keys(self) -> None:
        rows = await self._store.read(ids.signing_keys)
        self._keys = SigningKeys(rows)
        self._keys_read = trio.current_time()

    def _refresh_expiry(self) -> int:
        return int((self._clock() + self._auth.refresh_token_seconds) * 1000)

    def _embedded_only(self) -> None:
        if self._auth.external:
            raise OAuthError(
                "unsupported_grant_type",
                f"this gateway does not issue tokens; log in at {self._auth.issuer}",
            )

    def _check_client(self, client_id: str | None) -> None:
        if client_id != self._auth.client_id:
            raise OAuthError("invalid_client", "unknown client_id", status=401)

    async def _write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await self._store.write(lambda conn: fn(conn, *args, **kwargs))
        except Missing as exc:
            raise NotFound(str(exc)) from exc

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._store.read(fn, *args)


def _scope(requested: str | None) -> str:
    """The scopes granted: those asked for that exist (all of them when none are asked)."""
    asked = (requested or "").split()
    unknown = [s for s in asked if s not in SCOPES]
    if unknown:
        raise OAuthError("invalid_scope", f"unknown scope {unknown[0]!r}")
    return " ".join(asked) if asked else " ".join(SCOPES)
