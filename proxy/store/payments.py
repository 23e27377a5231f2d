"""Top-up rows and what Stripe's events do to them: plain SQL inside one transaction each.

Exactly once is the database's job: an event id is recorded (primary key) in the same
transaction as its ledger row, a session credits under a unique index on the ledger's
`topup` reference, and a claw-back under one on its event id. A key is debited to zero at
most; what it could not give back is recorded as owed, for the operator.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from . import ledger as books
from .accounts import new_id, now_ms

COLUMNS = (
    "id, key_id, user_id, amount, credit, currency, status, session_id, payment_intent, "
    "checkout_url, expires_at, credited_at, clawed_back, owed, created_at"
)


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    id: str
    key_id: str
    user_id: str
    amount: int  # paid, nano-USD
    credit: int  # given to the key
    currency: str
    status: str
    session_id: str | None
    payment_intent: str | None
    checkout_url: str | None
    expires_at: int | None  # unix seconds (Stripe's)
    credited_at: int | None
    clawed_back: int
    owed: int
    created_at: int


@dataclass(frozen=True, slots=True)
class Effect:
    """What an event changed: the key whose balance moved (if any), by how much, and owed."""

    key_id: str | None = None
    amount: int = 0
    owed: int = 0


def add_pending(
    conn: sqlite3.Connection, key_id: str, user_id: str, amount: int, credit: int, currency: str
) -> PaymentRecord:
    payment_id = "pay_" + new_id()
    conn.execute(
        "INSERT INTO payments (id, key_id, user_id, amount, credit, currency, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (payment_id, key_id, user_id, amount, credit, currency, now_ms()),
    )
    found = payment(conn, payment_id)
    assert found is not None
    return found


def attach_session(
    conn: sqlite3.Connection, payment_id: str, session_id: str, url: str, expires_at: int | None
) -> None:
    conn.execute(
        "UPDATE payments SET session_id = ?, checkout_url = ?, expires_at = ?, "
        "status = CASE WHEN status = 'pending' THEN 'open' ELSE status END WHERE id = ?",
        (session_id, url, expires_at, payment_id),
    )


def set_failed(conn: sqlite3.Connection, payment_id: str) -> None:
    conn.execute(
        "UPDATE payments SET status = 'failed' WHERE id = ? AND status IN ('pending', 'open')",
        (payment_id,),
    )


def payment(conn: sqlite3.Connection, payment_id: str) -> PaymentRecord | None:
    row = conn.execute(f"SELECT {COLUMNS} FROM payments WHERE id = ?", (payment_id,)).fetchone()
    return PaymentRecord(*row) if row else None


def payments_of(
    conn: sqlite3.Connection, *, user_id: str | None = None, limit: int = 100
) -> list[PaymentRecord]:
    where, args = ("WHERE user_id = ?", (user_id,)) if user_id else ("", ())
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM payments {where} ORDER BY created_at DESC, id LIMIT ?",
        (*args, limit),
    ).fetchall()
    return [PaymentRecord(*row) for row in rows]


def first_time(conn: sqlite3.Connection, event_id: str, event_type: str) -> bool:
    """Record the event; False when it was handled before (then change nothing)."""
    cursor = conn.execute(
        "INSERT INTO stripe_events (id, type, received_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        (event_id, event_type, now_ms()),
    )
    return cursor.rowcount == 1


def credit_session(
    conn: sqlite3.Connection,
    event_id: str,
    event_type: str,
    session_id: str,
    payment_id: str | None,
    payment_intent: str | None,
) -> Effect:
    """A paid session's credit onto its key, once, whichever event (or reconciliation) says so."""
    if not first_time(conn, event_id, event_type):
        return Effect()
    row = conn.execute(
        f"SELECT {COLUMNS} FROM payments WHERE session_id = ? OR id = ?",
        (session_id, payment_id or ""),
    ).fetchone()
    if row is None:
        return Effect()
    paid = PaymentRecord(*row)
    conn.execute(
        "UPDATE payments SET session_id = coalesce(session_id, ?), "
        "payment_intent = coalesce(payment_intent, ?) WHERE id = ?",
        (session_id, payment_intent, paid.id),
    )
    if paid.credited_at is not None:
        return Effect()
    books.credit(conn, paid.key_id, paid.credit, kind="topup", reference=session_id,
                 actor="stripe", note=f"payment {paid.id}")  # fmt: skip
    conn.execute(
        "UPDATE payments SET status = 'paid', credited_at = ? WHERE id = ?", (now_ms(), paid.id)
    )
    return Effect(paid.key_id, paid.credit)


def end_session(conn: sqlite3.Connection, event_id: str, event_type: str, session_id: str,
                status: str) -> None:  # fmt: skip
    """An expired or failed session: nothing to credit (a paid one stays paid)."""
    if first_time(conn, event_id, event_type):
        conn.execute(
            "UPDATE payments SET status = ? WHERE session_id = ? AND credited_at IS NULL",
            (status, session_id),
        )


def claw_back(
    conn: sqlite3.Connection,
    event_id: str,
    event_type: str,
    kind: str,
    payment_intent: str,
    paid_back: int,
    cumulative: bool,
) -> Effect:
    """Debit what a refund or dispute takes back (`paid_back` nano-USD of the payment; a
    refund's figure is its running total), as the credit it bought; to zero at most."""
    if not first_time(conn, event_id, event_type):
        return Effect()
    row = conn.execute(
        f"SELECT {COLUMNS} FROM payments WHERE payment_intent = ?", (payment_intent,)
    ).fetchone()
    if row is None:
        return Effect()
    paid = PaymentRecord(*row)
    if paid.credited_at is None:
        return Effect()
    share = min(paid_back, paid.amount) * paid.credit // paid.amount
    target = share if cumulative else paid.clawed_back + share
    wanted = max(0, min(target, paid.credit) - paid.clawed_back)
    if wanted == 0:
        return Effect()
    free = conn.execute(  # money leased to requests in flight cannot be taken back
        "SELECT balance - leased FROM api_keys WHERE id = ?", (paid.key_id,)
    ).fetchone()
    debit = min(wanted, max(0, int(free[0])))
    if debit:
        books.credit(conn, paid.key_id, -debit, kind=kind, reference=event_id, actor="stripe",
                     note=f"{event_type} on payment {paid.id}")  # fmt: skip
    conn.execute(
        "UPDATE payments SET clawed_back = clawed_back + ?, owed = owed + ? WHERE id = ?",
        (wanted, wanted - debit, paid.id),
    )
    return Effect(paid.key_id, -debit, wanted - debit)
