"""Passwords: argon2id, compared in constant time. Hashing is slow on purpose (tens of
milliseconds of CPU): callers run these functions in a worker thread, never on the loop."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 8
MAX_LENGTH = 1024  # bounds the work an attacker can ask of the KDF


class Passwords:
    def __init__(self) -> None:
        self._hasher = PasswordHasher()  # argon2id, RFC 9106's second recommended profile
        # Compared against when the email is unknown, so that both cases cost the same.
        self._decoy = self._hasher.hash("not a password of anyone's")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored or self._decoy, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None."""
    if len(password) < MIN_LENGTH:
        return f"a password needs at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"a password has at most {MAX_LENGTH} characters"
    return None
