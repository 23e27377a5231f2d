"""Codes the device flow and refresh tokens hand out: random, stored only as digests.

User codes follow RFC 8628 section 6.1: eight letters from an alphabet without vowels
(no words) or look-alikes, shown as `XXXX-XXXX`, typed back in any case, with or
without the dash.
"""

from __future__ import annotations

import hashlib
import secrets

USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # 20 letters: 8 of them carry ~34.6 bits
USER_CODE_LENGTH = 8


def new_user_code() -> str:
    letters = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))
    return f"{letters[:4]}-{letters[4:]}"


def normalize_user_code(typed: str) -> str | None:
    """The stored form (`XXXX-XXXX`) of what a person typed; None when it cannot be one."""
    letters = "".join(c for c in typed.upper() if c not in "- \t")
    if len(letters) != USER_CODE_LENGTH or any(c not in USER_CODE_ALPHABET for c in letters):
        return None
    return f"{letters[:4]}-{letters[4:]}"


def new_secret(prefix: str) -> str:
    """A bearer secret (device code, refresh token): 256 random bits."""
    return prefix + secrets.token_urlsafe(32)


def digest(secret: str) -> bytes:
    """What is stored of a secret: its SHA-256 (the secret has too much entropy to guess)."""
    return hashlib.sha256(secret.encode("utf-8", errors="surrogateescape")).digest()
