"""Which gateway a command talks to, and as whom: a login (refreshed silently) or a key.

The gateway: `--api-url`, else `TOKENROUTE_API_URL`, else the one the login was made
against, else `http://127.0.0.1:8080`. A command a key may run uses
`TOKENROUTE_API_KEY` when it is set (an agent scoping a sub-agent to one key), else the
login; key management needs the login.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from . import client, credentials
from .output import EXIT_USER, UserFacingError

DEFAULT_API_URL = "http://127.0.0.1:8080"
REFRESH_MARGIN = 60  # seconds before expiry when the access token is renewed


class Session:
    def __init__(self, args: argparse.Namespace) -> None:
        self._creds = credentials.load_credentials()
        given = getattr(args, "api_url", None) or os.environ.get("TOKENROUTE_API_URL")
        remembered = self._creds.get("api_url") if self._creds else None
        self.api_url = (given or remembered or DEFAULT_API_URL).rstrip("/")
        if not self.api_url.startswith(("http://", "https://")):
            raise UserFacingError(
                "the gateway URL (--api-url, TOKENROUTE_API_URL) must start with http:// or "
                f"https://, got {self.api_url!r}"
            )
        if self._creds and remembered and remembered.rstrip("/") != self.api_url:
            self._creds = None  # a login for another gateway
        self.env_key = os.environ.get("TOKENROUTE_API_KEY") or None

    def call(self, method: str, path: str, *, key_ok: bool = True, **kwargs: Any) -> Any:
        """A request to the management API as the login (or the key, where a key may)."""
        return client.request(method, self.api_url + path, bearer=self.bearer(key_ok), **kwargs)

    def bearer(self, key_ok: bool = True) -> str:
        if key_ok and self.env_key:
            return self.env_key
        if self._creds is not None:
            return self._fresh_token(self._creds)
        if self.env_key:
            raise UserFacingError(
                "this needs a login, not an API key: run `tokenroute login` "
                "(TOKENROUTE_API_KEY cannot manage keys)"
            )
        raise UserFacingError("not logged in: run `tokenroute login` (or set TOKENROUTE_API_KEY)")

    def api_key(self, given: str | None = None) -> str:
        """The key `env`, `test` and `models` use: `--key`, the env, or the last one made."""
        key = given or self.env_key or credentials.last_key()
        if not key:
            raise UserFacingError(
                "no API key available: run `tokenroute keys create --name NAME` first", EXIT_USER
            )
        return key

    def _fresh_token(self, creds: dict[str, Any]) -> str:
        if float(creds.get("expires_at", 0)) - REFRESH_MARGIN > time.time():
            return str(creds["access_token"])
        refresh, endpoint = creds.get("refresh_token"), creds.get("token_endpoint")
        if not refresh or not endpoint:
            raise UserFacingError("your login expired: run `tokenroute login` again")
        try:
            tokens = client.request("POST", endpoint, form={
                "grant_type": "refresh_token", "refresh_token": refresh,
                "client_id": creds.get("client_id", ""),
            })  # fmt: skip
        except client.HTTPFailure as exc:
            if exc.status >= 500:
                raise
            credentials.forget_credentials()
            raise UserFacingError("your login expired: run `tokenroute login` again") from exc
        updated = {**creds, **login_record(tokens)}
        credentials.save_credentials(updated)
        self._creds = updated
        return str(updated["access_token"])


def login_record(tokens: dict[str, Any]) -> dict[str, Any]:
    """What is kept of a token response."""
    return {
        "access_token": tokens["access_token"],
        "refresh_token": tokens.get("refresh_token"),
        "expires_at": int(time.time()) + int(tokens.get("expires_in", 3600)),
    }
