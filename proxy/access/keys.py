"""API key material: `sk-tr-` + 40 base62 characters, stored only as a SHA-256 digest."""

from __future__ import annotations

import hashlib
import re
import secrets
import string

PREFIX = "sk-tr-"
_ALPHABET = string.ascii_letters + string.digits
_RANDOM_CHARS = 40  # ~238 bits
_DISPLAY_CHARS = 4
_SHAPE = re.compile(r"sk-tr-[A-Za-z0-9]{32,}")  # what a key of ours can look like


def generate_key() -> str:
    return PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_CHARS))


def hash_key(raw: str) -> bytes:
    return hashlib.sha256(raw.encode("utf-8", errors="surrogateescape")).digest()


def display_prefix(raw: str) -> str:
    """What may be shown again later: `sk-tr-abcd`."""
    return raw[: len(PREFIX) + _DISPLAY_CHARS]


def looks_like_key(raw: str) -> bool:
    return _SHAPE.fullmatch(raw) is not None
