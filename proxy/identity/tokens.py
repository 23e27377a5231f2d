"""Login tokens: JWTs the gateway signs (ES256, `kid` in the header) and verifies.

The newest signing key signs; every key stays in the JWKS, so a token signed before a
rotation stays valid until it expires. Verification names the algorithms it accepts
(never `none`), picks the key by `kid`, and checks issuer, audience and expiry; every
refusal is one `TokenError` line (for the log), the client gets a plain 401.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet

SIGNING_ALGORITHM = "ES256"
# What an external issuer may sign with (Keycloak, Auth0 and Zitadel default to RS256).
ACCEPTED_ALGORITHMS = ("ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "EdDSA")
LEEWAY = 30  # seconds of clock skew tolerated on exp/nbf/iat


class TokenError(Exception):
    """A token that is refused, with the reason (for the log, not for the client)."""


def new_signing_key() -> tuple[str, str]:
    """(kid, private JWK as JSON) of a new P-256 key."""
    kid = time.strftime("%Y%m%d") + "-" + secrets.token_hex(4)
    key = ECKey.generate_key(
        "P-256", parameters={"kid": kid, "alg": SIGNING_ALGORITHM, "use": "sig"}, private=True
    )
    return kid, json.dumps(key.as_dict(private=True))


class SigningKeys:
    """The gateway's own keys, newest last; the newest unretired one signs."""

    def __init__(self, keys: Iterable[tuple[str, str, bool]]) -> None:
        """`keys`: (kid, private JWK JSON, retired) in the order they were made."""
        loaded = [(kid, ECKey.import_key(json.loads(jwk)), retired) for kid, jwk, retired in keys]
        active = [(kid, key) for kid, key, retired in loaded if not retired]
        if not active:
            raise ValueError("no active signing key")
        self.kid, self._key = active[-1]
        self.key_set = KeySet([key for _, key, _ in loaded])

    def sign(self, claims: Mapping[str, Any]) -> str:
        header = {"alg": SIGNING_ALGORITHM, "kid": self.kid, "typ": "at+jwt"}
        return jwt.encode(header, dict(claims), self._key)

    def derive(self, label: bytes) -> bytes:
        """A secret of its own for `label`, from the signing key's private part: the same
        in every process on this database, and changed by a rotation."""
        private = self._key.as_dict(private=True)["d"].encode()
        return hashlib.sha256(label + b"\0" + private).digest()

    def jwks(self) -> dict[str, Any]:
        return self.key_set.as_dict(private=False)  # type: ignore[no-any-return]


def key_set_from_jwks(document: Mapping[str, Any]) -> KeySet:
    """An issuer's published keys; `ValueError` if the document is not a usable JWKS."""
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise ValueError("the JWKS has no keys")
    usable = [k for k in keys if isinstance(k, dict) and k.get("use", "sig") == "sig"]
    try:
        return KeySet.import_key_set({"keys": usable})
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"the JWKS cannot be read: {exc}") from exc


def verify(
    token: str,
    keys: KeySet,
    *,
    issuer: str,
    audience: str,
    algorithms: Iterable[str] = (SIGNING_ALGORITHM,),
    now: float | None = None,
) -> dict[str, Any]:
    """The claims of a valid token; `TokenError` saying why otherwise."""
    if token.count(".") != 2:
        raise TokenError("not a JWS compact token")
    try:
        decoded = jwt.decode(token, keys, algorithms=list(algorithms))
    except JoseError as exc:
        raise TokenError(f"signature: {exc}") from exc
    except (ValueError, TypeError, KeyError) as exc:  # malformed base64 or JSON
        raise TokenError(f"malformed token: {exc}") from exc
    claims = decoded.claims
    registry = jwt.JWTClaimsRegistry(
        now=int(now if now is not None else time.time()),
        leeway=LEEWAY,
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": audience},
        exp={"essential": True},
        sub={"essential": True},
    )
    try:
        registry.validate(claims)
    except JoseError as exc:
        raise TokenError(f"claims: {exc}") from exc
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise TokenError("claims: sub is not a string")
    return claims  # type: ignore[no-any-return]
