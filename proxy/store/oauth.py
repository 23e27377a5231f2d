"""Self-registered OAuth clients and their authorization codes (plain SQL, in the writer).

A code turns into tokens once: `use_code` marks it used in the same transaction that reads
it, so two exchanges of one code cannot both win; a second one is refused and revokes the
refresh tokens the first one got (RFC 6749 4.1.2: a code used twice was stolen).
"""

from __future__ import annotations

import hmac
import sqlite3
from dataclasses import dataclass

import orjson

from .accounts import now_ms
from .identity import GrantError, add_refresh_token


@dataclass(frozen=True, slots=True)
class OAuthClient:
    client_id: str
    client_name: str
    redirect_uris: tuple[str, ...]
    created_at: int


@dataclass(frozen=True, slots=True)
class CodeGrant:
    user_id: str
    scope: str


def add_client(
    conn: sqlite3.Connection, client_id: str, client_name: str, redirect_uris: list[str]
) -> OAuthClient:
    created = now_ms()
    conn.execute(
        "INSERT INTO oauth_clients (client_id, client_name, redirect_uris, created_at) "
        "VALUES (?, ?, ?, ?)",
        (client_id, client_name, orjson.dumps(redirect_uris).decode(), created),
    )
    return OAuthClient(client_id, client_name, tuple(redirect_uris), created)


def client(conn: sqlite3.Connection, client_id: str) -> OAuthClient | None:
    row = conn.execute(
        "SELECT client_id, client_name, redirect_uris, created_at FROM oauth_clients "
        "WHERE client_id = ?",
        (client_id,),
    ).fetchone()
    if row is None:
        return None
    return OAuthClient(row[0], row[1], tuple(orjson.loads(row[2])), row[3])


def add_code(
    conn: sqlite3.Connection,
    code_hash: bytes,
    client_id: str,
    user_id: str,
    redirect_uri: str,
    code_challenge: str,
    scope: str,
    expires_at: int,
) -> None:
    conn.execute(
        "INSERT INTO authorization_codes (code_hash, client_id, user_id, redirect_uri, "
        "code_challenge, scope, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (code_hash, client_id, user_id, redirect_uri, code_challenge, scope, expires_at,
         now_ms()),
    )  # fmt: skip


def use_code(
    conn: sqlite3.Connection,
    code_hash: bytes,
    client_id: str,
    redirect_uri: str,
    challenge: str,
    refresh_hash: bytes,
    refresh_expires_at: int,
) -> CodeGrant | GrantError:
    """Use a code once, for the client that asked for it, at the same redirect URI and
    with the PKCE verifier whose S256 is `challenge`: its grant, and a refresh token
    (whose family is the code's, so a second use can revoke it). Refusals are returned,
    not raised, so that a revocation commits."""
    row = conn.execute(
        "SELECT client_id, user_id, redirect_uri, code_challenge, scope, used_at, expires_at "
        "FROM authorization_codes WHERE code_hash = ?",
        (code_hash,),
    ).fetchone()
    if row is None or row[0] != client_id:
        return GrantError("invalid_grant", "unknown authorization code")
    _, user_id, sent_to, expected, scope, used_at, expires_at = row
    family = code_hash.hex()
    if used_at is not None:
        conn.execute(
            "UPDATE refresh_tokens SET status = 'revoked' WHERE family = ? AND status != 'revoked'",
            (family,),
        )
        return GrantError("invalid_grant", "this authorization code was used already")
    if expires_at <= now_ms():
        return GrantError("invalid_grant", "the authorization code expired; log in again")
    if sent_to != redirect_uri:
        return GrantError("invalid_grant", "redirect_uri differs from the authorization request")
    if not hmac.compare_digest(expected.encode(), challenge.encode()):
        return GrantError("invalid_grant", "code_verifier does not match the code_challenge")
    conn.execute(
        "UPDATE authorization_codes SET used_at = ? WHERE code_hash = ?", (now_ms(), code_hash)
    )
    add_refresh_token(conn, refresh_hash, user_id, client_id, scope, refresh_expires_at, family)
    return CodeGrant(user_id, scope)
