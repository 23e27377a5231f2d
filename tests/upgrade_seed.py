"""A database as an older tokenroute left it: schema N, and rows as that version wrote them.

`seed(conn)` reads the schema version and fills every table that exists at it, giving
each row only the columns its table has then (`put` drops the others), so one description
of the data serves every version. Where a version wrote differently, the seed does too:
before migration 2 (billing) a usage row's cost had no ledger debit. A new migration that
adds a table adds its rows here; `test_upgrades` fails until it does.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from proxy.access import keys as apikeys
from proxy.identity.tokens import new_signing_key

NANO = 10**9
T0 = 1_795_000_000_000  # unix ms: three days of history start here
DAY = 86_400_000
PASSWORD_HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"


@dataclass(frozen=True)
class Seeded:
    """What the tests need to reach the seeded data again."""

    version: int
    raw_key: str  # an active key with credit, made before the upgrade
    key_id: str
    email: str


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def put(conn: sqlite3.Connection, table: str, **row: Any) -> None:
    """Insert the row's columns that `table` has at this version; no table, no row."""
    have = set(columns(conn, table))
    if not have:
        return
    values = {name: value for name, value in row.items() if name in have}
    names = ", ".join(values)
    conn.execute(
        f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(values))})",
        tuple(values.values()),
    )


def seed(conn: sqlite3.Connection) -> Seeded:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    raw = apikeys.generate_key()
    conn.execute("BEGIN")
    _people(conn, raw)
    _usage(conn, version)
    _money(conn)
    _identity(conn)
    _payments(conn)
    # Every balance is what its ledger says, as the code of every version kept it.
    conn.execute(
        "UPDATE api_keys SET balance = "
        "(SELECT coalesce(sum(amount), 0) FROM ledger WHERE key_id = api_keys.id)"
    )
    if version >= 11:  # what the dead gateway leased is out of the free balance
        conn.execute(
            "UPDATE api_keys SET leased = "
            "(SELECT coalesce(sum(amount), 0) FROM leases WHERE key_id = api_keys.id)"
        )
    conn.execute("COMMIT")
    return Seeded(version, raw, "k-alice-prod", "alice@example.com")


def _people(conn: sqlite3.Connection, raw: str) -> None:
    put(conn, "users", id="u-alice", email="alice@example.com", display_name="Alice",
        is_admin=1, status="active", created_at=T0, issuer=None, subject=None,
        password_hash=PASSWORD_HASH)  # fmt: skip
    put(conn, "users", id="u-bob", email="Bob@Example.com", display_name="", is_admin=0,
        status="disabled", created_at=T0 + 1, issuer="https://auth.example.com",
        subject="bob-sub")  # fmt: skip
    keys = [
        ("k-alice-prod", "u-alice", "prod", raw, "active", None),
        ("k-alice-dev", "u-alice", "dev", apikeys.generate_key(), "active", None),
        ("k-bob", "u-bob", "old", apikeys.generate_key(), "revoked", T0 + DAY),
    ]
    for key_id, user_id, name, key, status, revoked_at in keys:
        put(conn, "api_keys", id=key_id, user_id=user_id, name=name,
            key_hash=apikeys.hash_key(key), key_prefix=apikeys.display_prefix(key), balance=0,
            status=status, created_at=T0 + 2, revoked_at=revoked_at,
            rps=20.0 if key_id == "k-alice-prod" else None,
            burst=40 if key_id == "k-alice-prod" else None, max_streams=8, tier=None)  # fmt: skip
    grants = [
        ("k-alice-prod", "grant", 10 * NANO, None, "cli", "opening credit"),
        ("k-alice-prod", "adjustment", -NANO // 2, None, "cli", "goodwill taken back"),
        ("k-alice-prod", "transfer", -NANO, "tr-1", "u-alice", "to dev"),
        ("k-alice-dev", "transfer", NANO, "tr-1", "u-alice", "from prod"),
        ("k-bob", "grant", 2 * NANO, None, "cli", None),
        ("k-bob", "adjustment", -2 * NANO, None, "cli", "closed"),
    ]
    for n, (key_id, kind, amount, reference, actor, note) in enumerate(grants):
        put(conn, "ledger", key_id=key_id, kind=kind, amount=amount, reference=reference,
            actor=actor, note=note, created_at=T0 + 10 + n)  # fmt: skip


def _usage(conn: sqlite3.Connection, version: int) -> None:
    """Requests over three days: paid, failed, streamed, one with no key; each paid one
    with its ledger debit from version 2 on (before, nothing was debited)."""
    rows = [
        # id, key, status, cost, stream, error, day
        (1, "k-alice-prod", 200, 1_234_567, 0, None, 0),
        (2, "k-alice-prod", 200, 98_765, 1, None, 0),
        (3, "k-alice-prod", 502, 0, 0, "upstream_error", 1),
        (4, "k-alice-dev", 200, 5_000, 1, None, 1),
        (5, None, 401, 0, 0, "authentication_error", 2),
        (6, "k-alice-prod", 200, 700_001, 0, None, 2),
    ]
    for usage_id, key_id, status, cost, stream, error, day in rows:
        created = T0 + day * DAY + 1000 * usage_id
        put(conn, "usage", id=usage_id, request_id=f"req-{usage_id}", key_id=key_id,
            user_id="u-alice" if key_id else None, requested_model="openai/gpt-4o-mini",
            served_model="openai/gpt-4o-mini" if status == 200 else None,
            provider="openai" if status == 200 else None, tokens_in=120 * usage_id,
            tokens_out=40 * usage_id, cached_tokens=0, estimated=int(stream), cost=cost,
            status=status, error=error, latency_ms=300 + usage_id, ttft_ms=90, stream=stream,
            created_at=created, reserved=2 * cost, unbilled=0, fallbacks=usage_id % 2,
            attempts=json.dumps([{"model": "openai/gpt-4o", "status": 503, "error": "x"}]),
            tier="SIMPLE", score=0.125)  # fmt: skip
        if cost and version >= 2 and key_id:
            put(conn, "ledger", key_id=key_id, kind="usage", amount=-cost,
                reference=f"req-{usage_id}", actor="gateway", created_at=created,
                usage_id=usage_id)  # fmt: skip
    # Retention has run, up to the midnight before the first request: nothing pruned yet.
    put(conn, "usage_retention", id=1, horizon_ms=T0 - T0 % DAY, pruned_rows=0,
        updated_at=T0 + 3 * DAY)  # fmt: skip


def _money(conn: sqlite3.Connection) -> None:
    """A hold a gateway that died left behind: released when the gateway starts again."""
    put(conn, "holds", id="h-stale", key_id="k-alice-prod", request_id="req-dead",
        amount=NANO // 10, created_at=T0 + 3 * DAY, owner="o-dead")  # fmt: skip
    put(conn, "owners", id="o-dead", host="old-host", pid=4242, started_at=T0,
        heartbeat_at=T0 + 3 * DAY)  # fmt: skip
    put(conn, "leases", key_id="k-alice-prod", owner="o-dead", amount=NANO // 20,
        updated_at=T0 + 3 * DAY)  # fmt: skip


def _identity(conn: sqlite3.Connection) -> None:
    kid, jwk = new_signing_key()
    put(conn, "signing_keys", kid=kid, private_jwk=jwk, created_at=T0)
    put(conn, "device_codes", device_hash=digest("dc-used"), user_code="BCDF-GHJK",
        client_id="tokenroute-cli", scope="", status="used", user_id="u-alice", interval=5,
        last_poll_at=T0 + 5000, expires_at=T0 + 600_000, created_at=T0)  # fmt: skip
    put(conn, "device_codes", device_hash=digest("dc-pending"), user_code="LMNP-QRST",
        client_id="tokenroute-cli", interval=5, expires_at=T0 + 600_000,
        created_at=T0 + 1)  # fmt: skip
    put(conn, "refresh_tokens", token_hash=digest("rt-1"), family="fam-1", user_id="u-alice",
        client_id="tokenroute-cli", status="used", expires_at=T0 + 30 * DAY,
        created_at=T0)  # fmt: skip
    put(conn, "refresh_tokens", token_hash=digest("rt-2"), family="fam-1", user_id="u-alice",
        client_id="tokenroute-cli", status="active", expires_at=T0 + 30 * DAY,
        created_at=T0 + 1)  # fmt: skip
    put(conn, "audit_log", actor="cli", action="create-key", target="alice@example.com",
        detail="name=prod", address="terminal", created_at=T0 + 2)  # fmt: skip
    put(conn, "password_resets", token_hash=digest("reset-1"), user_id="u-bob",
        expires_at=T0 + DAY, used_at=None, created_at=T0)  # fmt: skip
    put(conn, "oauth_clients", client_id="mcp-client-1", client_name="Claude Code",
        redirect_uris=json.dumps(["http://127.0.0.1:33418/callback"]), created_at=T0)  # fmt: skip
    put(conn, "authorization_codes", code_hash=digest("code-1"), client_id="mcp-client-1",
        user_id="u-alice", redirect_uri="http://127.0.0.1:33418/callback",
        code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", used_at=T0 + 10,
        expires_at=T0 + 600_000, created_at=T0)  # fmt: skip


def _payments(conn: sqlite3.Connection) -> None:
    """A paid top-up, credited once and partly refunded; one checkout still open."""
    if not columns(conn, "payments"):
        return
    put(conn, "payments", id="pay-1", key_id="k-alice-prod", user_id="u-alice",
        amount=5 * NANO, credit=5 * NANO, currency="usd", status="paid", session_id="cs_1",
        payment_intent="pi_1", checkout_url="https://checkout.stripe.com/c/cs_1",
        expires_at=T0 + DAY, credited_at=T0 + 60_000, clawed_back=NANO, owed=0,
        created_at=T0 + 50_000)  # fmt: skip
    put(conn, "payments", id="pay-2", key_id="k-alice-dev", user_id="u-alice",
        amount=10 * NANO, credit=10 * NANO, currency="usd", status="open",
        session_id="cs_2", checkout_url="https://checkout.stripe.com/c/cs_2",
        expires_at=T0 + DAY, created_at=T0 + 70_000)  # fmt: skip
    put(conn, "ledger", key_id="k-alice-prod", kind="topup", amount=5 * NANO,
        reference="cs_1", actor="stripe", created_at=T0 + 60_000)  # fmt: skip
    put(conn, "ledger", key_id="k-alice-prod", kind="refund", amount=-NANO,
        reference="evt_refund_1", actor="stripe", created_at=T0 + 2 * DAY)  # fmt: skip
    for event, kind in (("evt_paid_1", "checkout.session.completed"),
                        ("evt_refund_1", "charge.refunded")):  # fmt: skip
        put(conn, "stripe_events", id=event, type=kind, received_at=T0 + 60_000)
