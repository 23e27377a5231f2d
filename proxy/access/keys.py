"""API key material: `sk-tr-` + 40 base62 characters, stored only as a SHA-256 digest."""

from __future__ import annotations

import hashlib
import secrets
import string

PREFIX = "sk-tr-"
_ALPHABET = string.ascii_letters + string.digits
_RANDOM_CHARS = 40  # ~238 bits
_DISPLAY_CHARS = 4


def generate_key() -> str:
    return PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_CHARS))


def hash_key(raw: str) -> bytes:
    return hashlib.sha256(raw.encode("utf-8", errors="surrogateescape")).digest()


def display_prefix(raw: str) -> str:
    """What may be shown again later: `sk-tr-abcd`."""
    return raw[: len(PREFIX) + _DISPLAY_CHARS]


def looks_like_key(raw: str) -> bool:
    body = raw[len(PREFIX) :]
    return raw.startswith(PREFIX) and len(body) >= 32 and all(c in _ALPHABET for c in body)
