"""A login issuer the operator might run (Logto, Keycloak...): discovery, a JWKS, RS256."""

from __future__ import annotations

import time
from typing import Any

import trio
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from quart import jsonify
from quart_trio import QuartTrio

from .serving import FakeServer


class FakeIssuer(FakeServer):
    def __init__(self) -> None:
        self._shutdown = trio.Event()
        self.keys: list[RSAKey] = []
        self.jwks_fetches = 0
        self.rotate()

    def rotate(self) -> None:
        """A new signing key; the JWKS publishes only the new one (as a hard rotation does)."""
        kid = f"issuer-key-{len(self.keys) + 1}"
        self.keys.append(RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig"}))

    def sign(self, **claims: Any) -> str:
        now = int(time.time())
        full = {"iss": self.url, "iat": now, "exp": now + 600, **claims}
        key = self.keys[-1]
        return jwt.encode({"alg": "RS256", "kid": key.kid}, full, key)

    def app(self) -> QuartTrio:
        app = QuartTrio("fake-issuer")

        @app.get("/.well-known/openid-configuration")
        async def configuration() -> Any:
            return jsonify({"issuer": self.url, "jwks_uri": f"{self.url}/jwks",
                            "device_authorization_endpoint": f"{self.url}/oauth/device/code",
                            "token_endpoint": f"{self.url}/oauth/token"})  # fmt: skip

        @app.get("/jwks")
        async def jwks() -> Any:
            self.jwks_fetches += 1
            return jsonify(KeySet([self.keys[-1]]).as_dict(private=False))

        return app
