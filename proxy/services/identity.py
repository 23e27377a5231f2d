"""IdentityService: who a person is: passwords, the issuer that vouches for their login
tokens, the gateway's own URLs, and users first seen in an external issuer's token.

Every surface that accepts a login token asks `user_of_token`. Password hashing runs in
a worker thread behind a small limiter: it is slow on purpose. The device flow that
turns a sign-in into tokens is `DeviceFlowService`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import trio

from ..core.config import Settings
from ..core.errors import (
    AuthenticationFailed,
    BadRequest,
    Conflict,
    NotFound,
    PermissionDenied,
    RateLimited,
)
from ..identity import codes
from ..identity.passwords import Passwords, password_problem
from ..identity.throttle import Throttle
from ..identity.tokens import TokenError
from ..store import Store, UserRecord
from ..store import accounts as acc
from ..store import identity as ids
from ..store.accounts import AccountError, Duplicate, Missing
from .authorization import CODE_GRANT, AuthorizationService
from .device_flow import DEVICE_GRANT, REFRESH_GRANT, SCOPES
from .issuers import ExternalIssuer, FetchJSON, OwnIssuer

RESET_SECONDS = 86_400


class IdentityService:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        fetch_json: FetchJSON | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._settings = settings
        self._auth = settings.identity
        self._passwords = Passwords()
        self._hashing = trio.CapacityLimiter(2)
        self._sign_ins = Throttle(limit=5, window=900, clock=clock)  # per email and per address
        self._bound_url = f"http://{settings.host}:{settings.port}"
        self._page_secret = secrets.token_bytes(32)
        self.own: OwnIssuer | None = None  # the gateway's own issuer, unless an external one
        if self._auth.external:
            if fetch_json is None:
                raise ValueError("an external issuer needs a way to fetch its keys")
            self.issuer: OwnIssuer | ExternalIssuer = ExternalIssuer(self._auth, fetch_json)
        else:
            self.own = OwnIssuer(store, self._auth, lambda: self.base_url)
            self.issuer = self.own
        self.codes = AuthorizationService(
            store, self._auth, self.own, lambda: self.base_url, SCOPES, clock
        )

    async def start(self) -> None:
        await self.issuer.start()

    # -- URLs and discovery ------------------------------------------------------------------
    def serving_at(self, url: str) -> None:
        """The address the server bound (its URL when no `public_url` is set)."""
        self._bound_url = url.replace("://0.0.0.0:", "://127.0.0.1:").rstrip("/")

    @property
    def base_url(self) -> str:
        return self._settings.public_url or self._bound_url

    def discovery(self) -> dict[str, object]:
        """What a client needs to run the device flow itself (the seeds' object)."""
        base = self._auth.issuer or self.base_url
        return {
            "issuer": self.issuer.issuer,
            "client_id": self._auth.client_id,
            "device_authorization_endpoint": f"{base}/oauth/device/code",
            "token_endpoint": f"{base}/oauth/token",
            "scopes": list(SCOPES),
            "resource": self.issuer.audience,
        }

    def openid_configuration(self) -> dict[str, object]:
        """The issuer's discovery document (OpenID Connect's, and RFC 8414's)."""
        base = self.base_url
        return {
            "issuer": self.issuer.issuer,
            **self.codes.metadata(),
            "device_authorization_endpoint": f"{base}/oauth/device/code",
            "token_endpoint": f"{base}/oauth/token",
            "revocation_endpoint": f"{base}/oauth/revoke",
            "jwks_uri": f"{base}/oauth/jwks.json",
            "grant_types_supported": [CODE_GRANT, DEVICE_GRANT, REFRESH_GRANT],
            "response_types_supported": ["code"],
            "scopes_supported": list(SCOPES),
            "token_endpoint_auth_methods_supported": ["none"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "subject_types_supported": ["public"],
        }

    def protected_resource(self, path: str) -> dict[str, object]:
        """RFC 9728 metadata of a resource of ours (the MCP endpoint at `path`): which issuer's
        tokens it takes, so a client can log in by itself."""
        return {
            "resource": f"{self.base_url}{path}",
            "authorization_servers": [self.issuer.issuer],
            "bearer_methods_supported": ["header"],
            "scopes_supported": list(SCOPES),
            "resource_name": "tokenroute",
            "resource_documentation": f"{self.base_url}/llms.txt",
        }

    async def jwks(self) -> dict[str, Any]:
        if self.own is None:
            raise NotFound(f"this gateway signs no tokens; its issuer is {self._auth.issuer}")
        return await self.own.jwks()

    async def rotate_signing_key(self) -> str:
        if self.own is None:
            raise BadRequest("this gateway signs no tokens: rotate keys at the external issuer")
        return await self.own.rotate()

    def session_secret(self) -> bytes:
        """A key for the sign-in page's cookies (with an external issuer, the page is unused)."""
        return self.own.session_secret() if self.own else self._page_secret

    # -- bearer tokens -----------------------------------------------------------------------
    async def user_of_token(self, token: str) -> UserRecord:
        """The active user a login JWT belongs to; 401 for anything else."""
        try:
            claims = await self.issuer.claims(token)
        except TokenError as exc:
            raise AuthenticationFailed("the login token is invalid or expired") from exc
        if self.own is not None:
            user = await self.user(claims["sub"])
        else:
            user = await self._external_user(claims)
        if user is None:
            raise AuthenticationFailed("the login token's user no longer exists")
        if not user.active:
            raise AuthenticationFailed("this account is disabled")
        return user

    async def _external_user(self, claims: dict[str, Any]) -> UserRecord:
        """The user an external issuer's subject is; made on first sight, from the claims."""
        issuer, subject = self.issuer.issuer, claims["sub"]
        found = await self._store.read(ids.user_by_subject, issuer, subject)
        if found is not None:
            return found  # type: ignore[no-any-return]
        email = claims.get("email") if isinstance(claims.get("email"), str) else None
        name = next((claims[k] for k in ("name", "preferred_username", "nickname")
                     if isinstance(claims.get(k), str)), "")  # fmt: skip
        return await self._store.write(  # type: ignore[no-any-return]
            lambda conn: ids.create_subject_user(conn, issuer, subject, email, name[:200])
        )

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
        user, stored = await self._store.read(ids.login_of, email)
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
        return user  # type: ignore[no-any-return]

    async def user(self, user_id: str) -> UserRecord | None:
        return await self._store.read(acc.user_by_id, user_id)  # type: ignore[no-any-return]

    @property
    def signup_open(self) -> bool:
        return self._auth.signup == "open" and self.own is not None

    async def sign_up(self, email: str, name: str, password: str) -> UserRecord:
        """A new account from the sign-in page, when `[accounts] signup = "open"`."""
        if not self.signup_open:
            raise PermissionDenied("sign-up is closed: ask the operator for an account")
        hashed = await self._hash(password)

        def create(conn: Any) -> UserRecord:
            user = acc.create_user(conn, email, display_name=name.strip()[:200])
            return ids.set_password(conn, user.email, hashed)

        try:
            return await self._store.write(create)  # type: ignore[no-any-return]
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
        hashed = await self._hash(password)
        try:
            return await self._store.write(  # type: ignore[no-any-return]
                lambda conn: ids.set_password(conn, email, hashed)
            )
        except Missing as exc:
            raise NotFound(str(exc), param="email") from exc

    async def reset_link(self, user_id: str) -> str:
        """A one-time link (24 h) for the user to set a new password; shown once."""
        token = codes.new_secret("pr_")
        expires = int((time.time() + RESET_SECONDS) * 1000)
        await self._store.write(
            lambda conn: ids.add_reset(conn, codes.digest(token), user_id, expires)
        )
        return f"{self.base_url}/reset-password?token={token}"

    async def reset_target(self, token: str) -> UserRecord | None:
        """The user a live reset link is for."""
        user_id = await self._store.read(ids.reset_user, codes.digest(token)) if token else None
        return await self.user(user_id) if user_id else None

    async def reset_password(self, token: str, password: str) -> UserRecord:
        hashed = await self._hash(password)
        try:
            return await self._store.write(  # type: ignore[no-any-return]
                lambda conn: ids.use_reset(conn, codes.digest(token), hashed)
            )
        except Missing as exc:
            raise NotFound(str(exc)) from exc

    async def _hash(self, password: str) -> str:
        self.check_password(password)
        async with self._hashing:
            return await trio.to_thread.run_sync(self._passwords.hash, password)
