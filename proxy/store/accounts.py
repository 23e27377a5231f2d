"""Users, API keys and credit grants: plain SQL on a connection (sync).

Used by the server through the store's writer and readers, and by
`tokenroute admin` directly on the database file.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from dataclasses import dataclass


class AccountError(Exception):
    """A user-facing problem with an admin operation (unknown email, duplicate...)."""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    user_id: str
    name: str
    key_prefix: str
    balance: int
    status: str
    created_at: int
    tier: str | None = None
    rps: float | None = None  # None: the tier's
    burst: int | None = None
    max_streams: int | None = None

    @property
    def active(self) -> bool:
        return self.status == "active"


def now_ms() -> int:
    return int(time.time() * 1000)


def new_id() -> str:
    return uuid.uuid4().hex


def create_user(
    conn: sqlite3.Connection, email: str, *, admin: bool = False, display_name: str = ""
) -> dict[str, object]:
    email = email.strip()
    if "@" not in email or len(email) > 320:
        raise AccountError(f"not an email address: {email!r}")
    user = {
        "id": new_id(),
        "email": email,
        "display_name": display_name,
        "is_admin": int(admin),
        "status": "active",
        "created_at": now_ms(),
    }
    try:
        conn.execute(
            "INSERT INTO users (id, email, display_name, is_admin, status, created_at) "
            "VALUES (:id, :email, :display_name, :is_admin, :status, :created_at)",
            user,
        )
    except sqlite3.IntegrityError as exc:
        raise AccountError(f"a user with email {email} already exists") from exc
    return user


def user_by_email(conn: sqlite3.Connection, email: str) -> dict[str, object] | None:
    row = conn.execute("SELECT * FROM users WHERE email = ?", (email.strip(),)).fetchone()
    return dict(row) if row else None


def create_key(
    conn: sqlite3.Connection,
    *,
    user_id: str,
    name: str,
    key_hash: bytes,
    key_prefix: str,
    credit: int = 0,
    actor: str = "admin",
) -> KeyRecord:
    """Insert a key and, with credit, its opening grant: one transaction."""
    if not name.strip():
        raise AccountError("a key needs a name")
    if credit < 0:
        raise AccountError("credit cannot be negative")
    record = KeyRecord(new_id(), user_id, name.strip(), key_prefix, credit, "active", now_ms())
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "INSERT INTO api_keys (id, user_id, name, key_hash, key_prefix, balance, status, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, 'active', ?)",
            (record.id, user_id, record.name, key_hash, key_prefix, credit, record.created_at),
        )
        if credit:
            conn.execute(
                "INSERT INTO ledger (key_id, kind, amount, reference, actor, note, created_at) "
                "VALUES (?, 'grant', ?, ?, ?, 'opening credit', ?)",
                (record.id, credit, record.id, actor, record.created_at),
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return record


def revoke_key(conn: sqlite3.Connection, key_id: str) -> KeyRecord:
    row = conn.execute(
        "UPDATE api_keys SET status = 'revoked', revoked_at = coalesce(revoked_at, ?) "
        "WHERE id = ? RETURNING " + _KEY_COLUMNS,
        (now_ms(), key_id),
    ).fetchone()
    if row is None:
        raise AccountError(f"no key with id {key_id}")
    return KeyRecord(*row)


def key_by_hash(conn: sqlite3.Connection, key_hash: bytes) -> KeyRecord | None:
    row = conn.execute(
        "SELECT " + _KEY_COLUMNS + " FROM api_keys WHERE key_hash = ?", (key_hash,)
    ).fetchone()
    return KeyRecord(*row) if row else None


def key_by_id(conn: sqlite3.Connection, key_id: str) -> KeyRecord | None:
    row = conn.execute(
        "SELECT " + _KEY_COLUMNS + " FROM api_keys WHERE id = ?", (key_id,)
    ).fetchone()
    return KeyRecord(*row) if row else None


_KEY_COLUMNS = (
    "id, user_id, name, key_prefix, balance, status, created_at, tier, rps, burst, max_streams"
)
