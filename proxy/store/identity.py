"""Identity rows: passwords, issuer subjects, signing keys, device codes, refresh tokens,
the audit log. Plain SQL on a connection (sync), inside the writer's transaction.

State changes that must happen once (a device code's approval turning into tokens, a
refresh token's rotation) are single statements or run in one transaction, so two
concurrent polls or refreshes cannot both win.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from .accounts import (
    USER_COLUMNS,
    AccountError,
    Duplicate,
    Missing,
    UserRecord,
    new_id,
    now_ms,
    user_by_id,
    user_row,
)
from .dialect import INTEGRITY_ERRORS


class GrantError(AccountError):
    """An OAuth grant refused, with its RFC error code (`authorization_pending`, ...)."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.code = code


# -- users -------------------------------------------------------------------------------------
def login_of(conn: sqlite3.Connection, email: str) -> tuple[UserRecord | None, str | None]:
    """The user with this email and their password hash (None, None if there is none)."""
    row = conn.execute(
        "SELECT " + USER_COLUMNS + ", password_hash FROM users WHERE email = ?", (email.strip(),)
    ).fetchone()
    return (user_row(row), row[-1]) if row else (None, None)


def set_password(conn: sqlite3.Connection, email: str, password_hash: str) -> UserRecord:
    row = conn.execute(
        "UPDATE users SET password_hash = ? WHERE email = ? RETURNING " + USER_COLUMNS,
        (password_hash, email.strip()),
    ).fetchone()
    if row is None:
        raise Missing(f"no user with email {email}")
    return user_row(row)


def set_user_status(conn: sqlite3.Connection, email: str, status: str) -> UserRecord:
    row = conn.execute(
        "UPDATE users SET status = ? WHERE email = ? RETURNING " + USER_COLUMNS,
        (status, email.strip()),
    ).fetchone()
    if row is None:
        raise Missing(f"no user with email {email}")
    if status == "disabled":  # their sessions end with them
        conn.execute(
            "UPDATE refresh_tokens SET status = 'revoked' WHERE user_id = ? AND status = 'active'",
            (row[0],),
        )
    return user_row(row)


def user_by_subject(conn: sqlite3.Connection, issuer: str, subject: str) -> UserRecord | None:
    row = conn.execute(
        "SELECT " + USER_COLUMNS + " FROM users WHERE issuer = ? AND subject = ?",
        (issuer, subject),
    ).fetchone()
    return user_row(row) if row else None


def create_subject_user(
    conn: sqlite3.Connection, issuer: str, subject: str, email: str | None, name: str
) -> UserRecord:
    """A user first seen in an external issuer's token. Without a usable email (or with one
    taken), the subject stands in: emails are unique, subjects are what identify."""
    existing = user_by_subject(conn, issuer, subject)
    if existing is not None:
        return existing
    address = (email or "").strip()
    taken = address and conn.execute("SELECT 1 FROM users WHERE email = ?", (address,)).fetchone()
    if "@" not in address or taken:
        address = f"{subject}@{issuer.split('://', 1)[-1].split('/')[0]}"
    user_id = new_id()
    conn.execute(
        "INSERT INTO users (id, email, display_name, is_admin, status, created_at, issuer, "
        "subject) VALUES (?, ?, ?, 0, 'active', ?, ?, ?)",
        (user_id, address, name, now_ms(), issuer, subject),
    )
    user = user_by_id(conn, user_id)
    assert user is not None
    return user


# -- signing keys ------------------------------------------------------------------------------
def signing_keys(conn: sqlite3.Connection) -> list[tuple[str, str, bool]]:
    rows = conn.execute(
        "SELECT kid, private_jwk, retired_at IS NOT NULL FROM signing_keys ORDER BY created_at, kid"
    ).fetchall()
    return [(r[0], r[1], bool(r[2])) for r in rows]


def add_signing_key(conn: sqlite3.Connection, kid: str, private_jwk: str, *, rotate: bool) -> bool:
    """Store a new key; with `rotate`, retire the others (they keep verifying). Without it,
    only when there is none yet (two processes starting at once make one key)."""
    if not rotate and conn.execute("SELECT 1 FROM signing_keys LIMIT 1").fetchone():
        return False
    now = now_ms()
    if rotate:
        conn.execute("UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL", (now,))
    conn.execute(
        "INSERT INTO signing_keys (kid, private_jwk, created_at) VALUES (?, ?, ?)",
        (kid, private_jwk, now),
    )
    return True


# -- device codes (RFC 8628) -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DeviceRequest:
    user_code: str
    client_id: str
    scope: str
    status: str
    expires_at: int


def add_device_code(
    conn: sqlite3.Connection,
    device_hash: bytes,
    user_code: str,
    client_id: str,
    scope: str,
    interval: int,
    expires_at: int,
) -> None:
    now = now_ms()
    conn.execute("DELETE FROM device_codes WHERE expires_at < ?", (now - 86_400_000,))
    try:
        conn.execute(
            "INSERT INTO device_codes (device_hash, user_code, client_id, scope, interval, "
            "expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (device_hash, user_code, client_id, scope, interval, expires_at, now),
        )
    except INTEGRITY_ERRORS as exc:
        raise Duplicate(f"user code {user_code} is in use") from exc


def device_request(conn: sqlite3.Connection, user_code: str) -> DeviceRequest | None:
    row = conn.execute(
        "SELECT user_code, client_id, scope, status, expires_at FROM device_codes "
        "WHERE user_code = ?",
        (user_code,),
    ).fetchone()
    return DeviceRequest(*row) if row else None


def decide_device_code(
    conn: sqlite3.Connection, user_code: str, user_id: str | None, approve: bool
) -> DeviceRequest:
    """Approve (for `user_id`) or deny a pending, unexpired code."""
    row = conn.execute(
        "UPDATE device_codes SET status = ?, user_id = ? "
        "WHERE user_code = ? AND status = 'pending' AND expires_at > ? "
        "RETURNING user_code, client_id, scope, status, expires_at",
        ("approved" if approve else "denied", user_id, user_code, now_ms()),
    ).fetchone()
    if row is None:
        raise Missing(f"no pending code {user_code}: it is unknown, expired or already decided")
    return DeviceRequest(*row)


def poll_device_code(
    conn: sqlite3.Connection, device_hash: bytes, client_id: str
) -> tuple[str, str] | GrantError:
    """(user id, scope) of an approved code, which is used up by this; else a `GrantError`
    with RFC 8628's code, returned (not raised) so that the poll's record commits. Polling
    faster than the interval adds 5 s to it (`slow_down`)."""
    now = now_ms()
    row = conn.execute(
        "SELECT client_id, scope, status, user_id, interval, last_poll_at, expires_at "
        "FROM device_codes WHERE device_hash = ?",
        (device_hash,),
    ).fetchone()
    if row is None or row[0] != client_id:
        return GrantError("invalid_grant", "unknown device code")
    _, scope, status, user_id, interval, last_poll, expires_at = row
    if status == "used":
        return GrantError("invalid_grant", "this device code was used already")
    if expires_at <= now:
        return GrantError("expired_token", "the device code expired; start again")
    if status == "denied":
        return GrantError("access_denied", "the request was denied")
    too_soon = last_poll is not None and now - last_poll < interval * 1000
    conn.execute(
        "UPDATE device_codes SET last_poll_at = ?, interval = ?, "
        "status = CASE WHEN status = 'approved' THEN 'used' ELSE status END "
        "WHERE device_hash = ?",
        (now, interval + 5 if too_soon else interval, device_hash),
    )
    if status == "approved":
        return user_id, scope
    if too_soon:
        return GrantError("slow_down", f"polling too fast: wait {interval + 5} s between polls")
    return GrantError("authorization_pending", "waiting for the user to approve")


# -- refresh tokens ----------------------------------------------------------------------------
def add_refresh_token(
    conn: sqlite3.Connection,
    token_hash: bytes,
    user_id: str,
    client_id: str,
    scope: str,
    expires_at: int,
    family: str | None = None,
) -> None:
    conn.execute(
        "INSERT INTO refresh_tokens (token_hash, family, user_id, client_id, scope, "
        "expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (token_hash, family or new_id(), user_id, client_id, scope, expires_at, now_ms()),
    )


def rotate_refresh_token(
    conn: sqlite3.Connection, old_hash: bytes, new_hash: bytes, client_id: str, expires_at: int
) -> tuple[str, str] | GrantError:
    """Use a refresh token once, replacing it by `new_hash`: (user id, scope). A token
    presented again revokes its family (someone else holds a copy); refusals are returned,
    not raised, so that the revocation commits."""
    row = conn.execute(
        "SELECT family, user_id, client_id, scope, status, expires_at FROM refresh_tokens "
        "WHERE token_hash = ?",
        (old_hash,),
    ).fetchone()
    if row is None or row[2] != client_id:
        return GrantError("invalid_grant", "unknown refresh token")
    family, user_id, _, scope, status, expires = row
    if status != "active":
        if status == "used":
            revoke_family(conn, family)
        return GrantError("invalid_grant", "this refresh token was used or revoked")
    if expires <= now_ms():
        return GrantError("invalid_grant", "the refresh token expired; log in again")
    conn.execute("UPDATE refresh_tokens SET status = 'used' WHERE token_hash = ?", (old_hash,))
    add_refresh_token(conn, new_hash, user_id, client_id, scope, expires_at, family)
    return user_id, scope


def revoke_refresh_token(conn: sqlite3.Connection, token_hash: bytes) -> bool:
    row = conn.execute(
        "SELECT family FROM refresh_tokens WHERE token_hash = ?", (token_hash,)
    ).fetchone()
    if row is None:
        return False
    revoke_family(conn, row[0])
    return True


def revoke_family(conn: sqlite3.Connection, family: str) -> None:
    conn.execute(
        "UPDATE refresh_tokens SET status = 'revoked' WHERE family = ? AND status != 'revoked'",
        (family,),
    )


# -- audit -------------------------------------------------------------------------------------
def audit(
    conn: sqlite3.Connection,
    actor: str,
    action: str,
    target: str | None = None,
    detail: str | None = None,
    address: str | None = None,
) -> None:
    conn.execute(
        "INSERT INTO audit_log (actor, action, target, detail, address, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (actor, action, target, detail, address, now_ms()),
    )


def audit_rows(
    conn: sqlite3.Connection, limit: int, action: str = "", actor: str = "", target: str = ""
) -> list[dict[str, object]]:
    """The newest audit rows, each filter a substring of its column (empty: any)."""
    rows = conn.execute(
        "SELECT id, actor, action, target, detail, address, created_at FROM audit_log "
        "WHERE instr(action, ?) > 0 AND instr(actor, ?) > 0 AND instr(coalesce(target, ''), ?) > 0 "
        "ORDER BY id DESC LIMIT ?",
        (action, actor, target, limit),
    ).fetchall()
    names = ("id", "actor", "action", "target", "detail", "address", "created_at")
    return [dict(zip(names, row, strict=True)) for row in rows]


# -- password resets ---------------------------------------------------------------------------
def add_reset(conn: sqlite3.Connection, token_hash: bytes, user_id: str, expires_at: int) -> None:
    conn.execute(
        "INSERT INTO password_resets (token_hash, user_id, expires_at, created_at) "
        "VALUES (?, ?, ?, ?)",
        (token_hash, user_id, expires_at, now_ms()),
    )


def reset_user(conn: sqlite3.Connection, token_hash: bytes) -> str | None:
    """The user a live, unused reset link is for (None: unknown, used or expired)."""
    row = conn.execute(
        "SELECT user_id FROM password_resets WHERE token_hash = ? AND used_at IS NULL "
        "AND expires_at > ?",
        (token_hash, now_ms()),
    ).fetchone()
    return row[0] if row else None


def use_reset(conn: sqlite3.Connection, token_hash: bytes, password_hash: str) -> UserRecord:
    """Set the password through a live link, once; `Missing` when the link is not live."""
    row = conn.execute(
        "UPDATE password_resets SET used_at = ? WHERE token_hash = ? AND used_at IS NULL "
        "AND expires_at > ? RETURNING user_id",
        (now_ms(), token_hash, now_ms()),
    ).fetchone()
    if row is None:
        raise Missing("this link is used or expired: ask the operator for a new one")
    user = user_by_id(conn, row[0])
    assert user is not None
    return set_password(conn, user.email, password_hash)
