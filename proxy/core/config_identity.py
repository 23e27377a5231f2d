"""The `[auth]` and `[accounts]` tables: who issues login tokens, and who may sign up.

By default the gateway is its own OAuth issuer (RFC 8628 device flow, signed JWTs).
With `[auth] issuer` set, it trusts that external issuer's tokens instead and issues
none itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config_values import parse_seconds
from .errors import ConfigError

DEFAULT_CLIENT_ID = "tokenroute-cli"
SIGNUP_POLICIES = ("closed", "open")


@dataclass(frozen=True)
class IdentitySettings:
    issuer: str | None = None  # an external issuer's URL; None: the gateway issues tokens
    client_id: str = DEFAULT_CLIENT_ID  # the public client the CLI logs in as
    audience: str | None = None  # the resource tokens are for; None: the gateway's URL
    device_code_seconds: float = 600.0
    poll_interval_seconds: int = 5  # RFC 8628 `interval`
    access_token_seconds: float = 3600.0
    refresh_token_seconds: float = 30 * 86400.0
    signup: str = "closed"  # closed: the operator creates users; open: /device can
    # An external issuer's JWKS is fetched again for an unknown kid at most this often.
    jwks_refetch_seconds: float = 60.0

    @property
    def external(self) -> bool:
        return self.issuer is not None


_AUTH_KEYS = {
    "issuer",
    "client_id",
    "audience",
    "device_code_seconds",
    "poll_interval_seconds",
    "access_token_seconds",
    "refresh_token_seconds",
    "jwks_refetch_seconds",
}


def parse_identity(auth: Mapping[str, Any], accounts: Mapping[str, Any]) -> IdentitySettings:
    unknown = set(auth) - _AUTH_KEYS
    if unknown:
        raise ConfigError(f"config [auth]: unknown setting {sorted(unknown)[0]!r}")
    unknown = set(accounts) - {"signup"}
    if unknown:
        raise ConfigError(f"config [accounts]: unknown setting {sorted(unknown)[0]!r}")
    values: dict[str, Any] = {}
    issuer = auth.get("issuer")
    if issuer is not None:
        values["issuer"] = parse_url("[auth] issuer", issuer)
        if "audience" not in auth:
            raise ConfigError("[auth] audience: required with an external issuer")
    for name in ("client_id", "audience"):
        if name in auth:
            text = str(auth[name]).strip()
            if not text:
                raise ConfigError(f"[auth] {name}: empty")
            values[name] = text
    for name in ("device_code_seconds", "access_token_seconds", "refresh_token_seconds"):
        if name in auth:
            seconds = parse_seconds(f"[auth] {name}", auth[name])
            if seconds < 60:
                raise ConfigError(f"[auth] {name}: expected at least 60 seconds, got {seconds:g}")
            values[name] = seconds
    if "poll_interval_seconds" in auth:
        interval = parse_seconds("[auth] poll_interval_seconds", auth["poll_interval_seconds"])
        if not 1 <= interval <= 60:
            raise ConfigError("[auth] poll_interval_seconds: expected 1 to 60 seconds")
        values["poll_interval_seconds"] = int(interval)
    if "jwks_refetch_seconds" in auth:
        seconds = parse_seconds("[auth] jwks_refetch_seconds", auth["jwks_refetch_seconds"])
        if not 1 <= seconds <= 86400:
            raise ConfigError("[auth] jwks_refetch_seconds: expected 1 to 86400 seconds")
        values["jwks_refetch_seconds"] = seconds
    if "signup" in accounts:
        signup = str(accounts["signup"])
        if signup not in SIGNUP_POLICIES:
            raise ConfigError(
                f"[accounts] signup: expected one of {', '.join(SIGNUP_POLICIES)}, got {signup!r}"
            )
        values["signup"] = signup
    return IdentitySettings(**values)


def parse_url(setting: str, value: Any) -> str:
    """An absolute http(s) URL without a trailing slash, or one line saying what is wrong."""
    text = str(value).strip().rstrip("/")
    scheme, _, rest = text.partition("://")
    if scheme not in ("http", "https") or not rest.split("/")[0]:
        raise ConfigError(f"{setting}: expected an http(s) URL, got {value!r}")
    if any(c.isspace() for c in text) or "?" in text or "#" in text:
        raise ConfigError(f"{setting}: expected a URL without spaces, query or fragment")
    return text
