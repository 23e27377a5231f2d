"""AuthorizationService: OAuth 2.1's authorization code grant with PKCE, for clients that
register themselves (RFC 7591) and log their person in through a browser: MCP clients
such as Claude Code, which find the gateway's issuer from `/mcp`'s protected-resource
metadata (RFC 9728) and its endpoints from `/.well-known/oauth-authorization-server`.

Only public clients: no secrets, S256 PKCE required, redirect URIs matched exactly and
either https or http on a loopback host (RFC 8252). A problem with the client or its
redirect URI is shown on the page (never redirected to an unchecked URI); any other
problem goes back to the client's redirect URI as RFC 6749's `error`. Registration is
open, as MCP clients need, and throttled per address.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from ..core.config_identity import IdentitySettings
from ..core.errors import AuthenticationFailed, BadRequest, OAuthError, RateLimited
from ..identity import codes
from ..identity.throttle import Throttle
from ..store import Store, UserRecord, oauth
from ..store import accounts as acc
from ..store.identity import GrantError
from ..store.oauth import OAuthClient
from .issuers import OwnIssuer, own_issuer

CODE_GRANT = "authorization_code"
CODE_SECONDS = 600
MAX_REDIRECT_URIS = 10
MAX_URI = 2000
LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")
_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")  # RFC 7636 4.1
_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # base64url of a SHA-256, unpadded


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """A checked request to `/oauth/authorize`, waiting for its person's decision."""

    client: OAuthClient
    redirect_uri: str
    state: str | None
    code_challenge: str
    scope: str

    def fields(self) -> dict[str, str]:
        """The request's parameters, to carry through the sign-in and consent forms."""
        out = {
            "client_id": self.client.client_id,
            "redirect_uri": self.redirect_uri,
            "response_type": "code",
            "code_challenge": self.code_challenge,
            "code_challenge_method": "S256",
            "scope": self.scope,
        }
        if self.state is not None:
            out["state"] = self.state
        return out


class Redirect(Exception):
    """An authorization request refused back to the client: where to send the browser."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


class AuthorizationService:
    def __init__(
        self,
        store: Store,
        auth: IdentitySettings,
        issuer: OwnIssuer | None,
        base_url: Callable[[], str],
        scopes: tuple[str, ...],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._auth = auth
        self._issuer = issuer
        self._base_url = base_url
        self._scopes = scopes
        self._clock = clock
        self._registrations = Throttle(limit=20, window=3600, clock=clock)  # per address

    @property
    def enabled(self) -> bool:
        """The gateway issues tokens itself (with an external issuer, log in there)."""
        return self._issuer is not None

    def metadata(self) -> dict[str, object]:
        """What this issuer adds to its RFC 8414 / OpenID discovery documents."""
        if not self.enabled:
            return {}
        base = self._base_url()
        return {
            "authorization_endpoint": f"{base}/oauth/authorize",
            "registration_endpoint": f"{base}/oauth/register",
            "code_challenge_methods_supported": ["S256"],
        }

    # -- RFC 7591 ----------------------------------------------------------------------------
    async def register(self, metadata: Mapping[str, Any], address: str) -> dict[str, object]:
        """Register a public client: its id, and the metadata it registered with."""
        self._own_issuer()
        if self._registrations.wait(address) > 0:
            raise RateLimited("too many clients registered from this address; wait an hour")
        uris = metadata.get("redirect_uris")
        if not isinstance(uris, list) or not uris or len(uris) > MAX_REDIRECT_URIS:
            raise OAuthError(
                "invalid_redirect_uri", f"redirect_uris must list 1 to {MAX_REDIRECT_URIS} URIs"
            )
        for uri in uris:
            _check_redirect_uri(uri)
        method = metadata.get("token_endpoint_auth_method", "none")
        if method != "none":
            raise OAuthError(
                "invalid_client_metadata",
                "only public clients register here: token_endpoint_auth_method must be 'none'",
            )
        grants = metadata.get("grant_types", [CODE_GRANT, "refresh_token"])
        if not isinstance(grants, list) or not set(grants) <= {CODE_GRANT, "refresh_token"}:
            raise OAuthError(
                "invalid_client_metadata",
                "grant_types may hold authorization_code and refresh_token only",
            )
        name = metadata.get("client_name")
        name = name[:100] if isinstance(name, str) and name.strip() else "an unnamed client"
        client_id = "mcp_" + secrets.token_urlsafe(16)
        self._registrations.failed(address)  # each registration counts
        await self._store.write(lambda c: oauth.add_client(c, client_id, name, uris))
        return {
            "client_id": client_id,
            "client_id_issued_at": int(self._clock()),
            "client_name": name,
            "redirect_uris": uris,
            "grant_types": grants,
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }

    async def client(self, client_id: str) -> OAuthClient | None:
        return await self._store.read(oauth.client, client_id) if client_id else None

    # -- the authorization request -----------------------------------------------------------
    async def request(self, args: Mapping[str, str]) -> AuthorizationRequest:
        """Check an authorization request. A bad client or redirect URI raises BadRequest
        (shown on the page); anything else raises `Redirect` to the client."""
        self._own_issuer()
        client = await self.client(args.get("client_id", ""))
        if client is None:
            raise BadRequest("unknown client_id: the application must register first")
        redirect_uri = args.get("redirect_uri") or (
            client.redirect_uris[0] if len(client.redirect_uris) == 1 else ""
        )
        if redirect_uri not in client.redirect_uris:
            raise BadRequest("redirect_uri is not one this application registered")
        state = args.get("state")

        def refuse(error: str, description: str) -> Redirect:
            return Redirect(self._back(redirect_uri, state, error=error,
                                       error_description=description))  # fmt: skip

        if args.get("response_type") != "code":
            raise refuse("unsupported_response_type", "response_type must be code")
        challenge = args.get("code_challenge", "")
        if args.get("code_challenge_method") != "S256" or not _CHALLENGE.match(challenge):
            raise refuse("invalid_request", "PKCE is required: code_challenge with method S256")
        asked = (args.get("scope") or "").split()
        unknown = [s for s in asked if s not in self._scopes]
        if unknown:
            raise refuse("invalid_scope", f"unknown scope {unknown[0]!r}")
        scope = " ".join(asked) if asked else " ".join(self._scopes)
        return AuthorizationRequest(client, redirect_uri, state, challenge, scope)

    async def approve(self, request: AuthorizationRequest, user: UserRecord) -> str:
        """The person said yes: where to send their browser, with a one-time code."""
        if not user.active:
            raise AuthenticationFailed("this account is disabled")
        code = codes.new_secret("ac_")
        expires_at = int((self._clock() + CODE_SECONDS) * 1000)

        def record(conn: Any) -> None:
            oauth.add_code(conn, codes.digest(code), request.client.client_id, user.id,
                           request.redirect_uri, request.code_challenge, request.scope,
                           expires_at)  # fmt: skip

        await self._store.write(record)
        return self._back(request.redirect_uri, request.state, code=code)

    def deny(self, request: AuthorizationRequest) -> str:
        return self._back(request.redirect_uri, request.state, error="access_denied",
                          error_description="the person declined")  # fmt: skip

    # -- the token endpoint ------------------------------------------------------------------
    async def exchange(self, form: Mapping[str, str]) -> dict[str, object]:
        """RFC 6749 4.1.3 with RFC 7636: a code and its verifier for tokens."""
        issuer = self._own_issuer()
        client = await self.client(form.get("client_id", ""))
        if client is None:
            raise OAuthError("invalid_client", "unknown client_id", status=401)
        code, verifier = form.get("code", ""), form.get("code_verifier", "")
        if not code:
            raise OAuthError("invalid_request", "code is required")
        if not _VERIFIER.match(verifier):
            raise OAuthError("invalid_request", "code_verifier is required (RFC 7636)")
        refresh = codes.new_secret("rt_")
        refresh_expires = int((self._clock() + self._auth.refresh_token_seconds) * 1000)
        redirect_uri, challenge = form.get("redirect_uri", ""), _s256(verifier)

        def use(conn: Any) -> oauth.CodeGrant | GrantError:
            return oauth.use_code(conn, codes.digest(code), client.client_id, redirect_uri,
                                  challenge, codes.digest(refresh), refresh_expires)  # fmt: skip

        outcome = await self._store.write(use)
        if isinstance(outcome, GrantError):
            raise OAuthError(outcome.code, str(outcome))
        user = await self._store.read(acc.user_by_id, outcome.user_id)
        if user is None or not user.active:
            raise OAuthError("invalid_grant", "this account is disabled")
        access, lifetime = await issuer.sign(user, outcome.scope, client.client_id)
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "refresh_token": refresh,
            "scope": outcome.scope,
        }

    def _back(self, redirect_uri: str, state: str | None, **params: str) -> str:
        """The redirect URI with the answer's parameters (RFC 9207's `iss` among them)."""
        params["iss"] = self._base_url()
        if state is not None:
            params["state"] = state
        joiner = "&" if urlsplit(redirect_uri).query else "?"
        return redirect_uri + joiner + urlencode(params)

    def _own_issuer(self) -> OwnIssuer:
        return own_issuer(self._issuer, self._auth)


def _check_redirect_uri(uri: Any) -> None:
    """https anywhere, or http on a loopback host (a native app's local listener)."""
    if not isinstance(uri, str) or not uri or len(uri) > MAX_URI:
        raise OAuthError("invalid_redirect_uri", "each redirect URI must be a string")
    parts = urlsplit(uri)
    loopback = parts.scheme == "http" and parts.hostname in LOOPBACK
    if parts.fragment or not parts.netloc or not (parts.scheme == "https" or loopback):
        raise OAuthError(
            "invalid_redirect_uri",
            f"{uri!r}: a redirect URI must be https, or http on a loopback host, without a "
            "fragment",
        )


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
