"""Users and API keys: plain SQL on a connection (sync), without transaction control.

Writes run inside the writer's batch transaction (`Store.write`), or inside
`ledger.transaction()` on a connection of one's own.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from dataclasses import dataclass

from .dialect import INTEGRITY_ERRORS, is_postgres


class AccountError(Exception):
    """A problem with an account operation the caller can fix (bad input); one line."""


class Missing(AccountError):
    """The user or key named does not exist."""


class Duplicate(AccountError):
    """Something that must be unique already exists."""


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: str
    email: str
    display_name: str
    is_admin: bool
    status: str
    created_at: int
    subject: str | None = None  # the issuer's `sub`; None: the embedded issuer's (the id)

    @property
    def active(self) -> bool:
        return self.status == "active"


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
) -> UserRecord:
    email = email.strip()
    if "@" not in email or len(email) > 320:
        raise AccountError(f"not an email address: {email!r}")
    user = UserRecord(new_id(), email, display_name, admin, "active", now_ms())
    try:
        conn.execute(
            "INSERT INTO users (id, email, display_name, is_admin, status, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (user.id, user.email, user.display_name, int(admin), user.status, user.created_at),
        )
    except INTEGRITY_ERRORS as exc:
        raise Duplicate(f"a user with email {email} already exists") from exc
    return user


def user_by_email(conn: sqlite3.Connection, email: str) -> UserRecord | None:
    row = conn.execute(
        "SELECT " + USER_COLUMNS + " FROM users WHERE email = ?", (email.strip(),)
    ).fetchone()
    return user_row(row) if row else None


def user_by_id(conn: sqlite3.Connection, user_id: str) -> UserRecord | None:
    row = conn.execute("SELECT " + USER_COLUMNS + " FROM users WHERE id = ?", (user_id,)).fetchone()
    return user_row(row) if row else None


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
    """Insert a key and, with credit, its opening grant (run it in one transaction)."""
    if not name.strip():
        raise AccountError("a key needs a name")
    if credit < 0:
        raise AccountError("credit cannot be negative")
    record = KeyRecord(new_id(), user_id, name.strip(), key_prefix, credit, "active", now_ms())
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
    return record


def revoke_key(conn: sqlite3.Connection, key_id: str) -> KeyRecord:
    row = conn.execute(
        "UPDATE api_keys SET status = 'revoked', revoked_at = coalesce(revoked_at, ?) "
        "WHERE id = ? RETURNING " + _KEY_COLUMNS,
        (now_ms(), key_id),
    ).fetchone()
    if row is None:
        raise Missing(f"no key with id {key_id}")
    return KeyRecord(*row)


def key_by_hash(conn: sqlite3.Connection, key_hash: bytes) -> KeyRecord | None:
    """The key with this digest; an active key of a disabled user says `disabled`."""
    columns = (
        "k.id, k.user_id, k.name, k.key_prefix, k.balance, "
        "CASE WHEN u.status = 'disabled' AND k.status = 'active' THEN 'disabled' "
        "ELSE k.status END, "
        "k.created_at, k.tier, k.rps, k.burst, k.max_streams"
    )
    row = conn.execute(
        "SELECT " + columns + " FROM api_keys k JOIN users u ON u.id = k.user_id "
        "WHERE k.key_hash = ?",
        (key_hash,),
    ).fetchone()
    return KeyRecord(*row) if row else None


def key_hashes_since(conn: sqlite3.Connection, rowid: int) -> tuple[int, list[bytes]]:
    """The digests of keys added after `rowid` (all for 0), and the last rowid seen.

    PostgreSQL has no rowid in commit order (gateways insert at once), so there the
    position is a transaction id: every transaction older than the snapshot's `xmin` has
    finished, and keys inserted by newer ones are read again next time (the caller keeps
    a set). A key committed late is never skipped."""
    if is_postgres(conn):
        horizon = conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text").fetchone()
        found = conn.execute(
            "SELECT key_hash FROM api_keys WHERE txid >= CAST(? AS xid8)", (str(rowid),)
        ).fetchall()
        return int(horizon[0]), [bytes(r[0]) for r in found]
    rows = conn.execute(
        "SELECT rowid, key_hash FROM api_keys WHERE rowid > ? ORDER BY rowid", (rowid,)
    ).fetchall()
    return (rows[-1][0] if rows else rowid), [bytes(r[1]) for r in rows]


def keys_of_user(conn: sqlite3.Connection, user_id: str) -> list[tuple[KeyRecord, int | None]]:
    """A user's keys, oldest first, each with the time of its last request (None: never)."""
    rows = conn.execute(
        "SELECT " + _KEY_COLUMNS + ", (SELECT max(created_at) FROM usage u WHERE u.key_id = k.id) "
        "FROM api_keys k WHERE user_id = ? ORDER BY created_at, id",
        (user_id,),
    ).fetchall()
    return [(KeyRecord(*row[:-1]), row[-1]) for row in rows]


def key_by_id(conn: sqlite3.Connection, key_id: str) -> KeyRecord | None:
    row = conn.execute(
        "SELECT " + _KEY_COLUMNS + " FROM api_keys WHERE id = ?", (key_id,)
    ).fetchone()
    return KeyRecord(*row) if row else None


_KEY_COLUMNS = (
    "id, user_id, name, key_prefix, balance, status, created_at, tier, rps, burst, max_streams"
)


USER_COLUMNS = "id, email, display_name, is_admin, status, created_at, subject"


def user_row(row: sqlite3.Row) -> UserRecord:
    return UserRecord(row[0], row[1], row[2], bool(row[3]), row[4], row[5], row[6])
