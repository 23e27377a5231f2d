"""Settling a writer batch: exact debits, never below zero, the books always balance."""

from __future__ import annotations

import sqlite3

from proxy.store import UsageRecord
from proxy.store import accounts as acc
from proxy.store import ledger as books


def make_key(conn: sqlite3.Connection, credit: int, email: str = "a@example.com") -> str:
    with books.transaction(conn):
        user = acc.user_by_email(conn, email) or acc.create_user(conn, email)
        key = acc.create_key(
            conn,
            user_id=user.id,
            name="k",
            key_hash=email.encode() + bytes(32 - len(email)),
            key_prefix="sk-tr-test",
            credit=credit,
        )
    return key.id


def usage(key_id: str, cost: int, request_id: str) -> UsageRecord:
    return UsageRecord(
        request_id, key_id, None, "p/m", "p/m", "p", 10, 5, 0, False, cost, 200, None, 1, 1,
        False, 0,
    )  # fmt: skip


def test_a_batch_debits_each_request_and_clamps_only_a_short_balance(
    tmp_db: sqlite3.Connection,
) -> None:
    rich, poor = make_key(tmp_db, 10**6), make_key(tmp_db, 10_000, "b@example.com")
    holds = [("h1", poor, "r1", 7_000, 0, None), ("h2", poor, "r2", 7_000, 0, None)]
    with books.transaction(tmp_db):
        books.record_batch(tmp_db, holds, [])
    assert tmp_db.execute("SELECT count(*) FROM holds").fetchone()[0] == 2
    settlements = [
        (usage(poor, 6_000, "r1"), "h1"),
        (usage(rich, 500, "r3"), None),
        (usage(poor, 6_000, "r2"), "h2"),  # only 4,000 left: the rest is unbilled
        (usage(poor, 3_000, "r4"), None),
        (usage(rich, 0, "r5"), None),  # a failed request: a row, no debit
    ]
    with books.transaction(tmp_db):
        charged = books.record_batch(tmp_db, [], settlements).charged
    assert charged == [6_000, 500, 4_000, 0, 0]
    rows = tmp_db.execute("SELECT request_id, cost, unbilled FROM usage ORDER BY id").fetchall()
    assert [tuple(r) for r in rows] == [
        ("r1", 6_000, 0),
        ("r3", 500, 0),
        ("r2", 4_000, 2_000),
        ("r4", 0, 3_000),
        ("r5", 0, 0),
    ]
    balance = dict(tmp_db.execute("SELECT id, balance FROM api_keys").fetchall())
    assert balance == {rich: 10**6 - 500, poor: 0}
    assert tmp_db.execute("SELECT count(*) FROM holds").fetchone()[0] == 0
    assert books.check(tmp_db) == []


def test_a_large_batch_splits_its_statements(tmp_db: sqlite3.Connection) -> None:
    key = make_key(tmp_db, 10**9)
    settlements = [(usage(key, 7, f"r{i}"), None) for i in range(5_000)]
    with books.transaction(tmp_db):
        assert sum(books.record_batch(tmp_db, [], settlements).charged) == 35_000
    assert tmp_db.execute("SELECT count(*) FROM ledger WHERE kind = 'usage'").fetchone()[0] == 5_000
    assert books.check(tmp_db) == []


def test_credit_never_takes_a_balance_below_zero(tmp_db: sqlite3.Connection) -> None:
    key = make_key(tmp_db, 1_000)
    with books.transaction(tmp_db):
        assert books.credit(tmp_db, key, 500, note="bonus") == 1_500
        assert books.credit(tmp_db, key, -1_500, kind="adjustment") == 0
    try:
        with books.transaction(tmp_db):
            books.credit(tmp_db, key, -1, kind="adjustment")
        raise AssertionError("went below zero")
    except acc.AccountError as exc:
        assert "below zero" in str(exc)
    kinds = [r[0] for r in tmp_db.execute("SELECT kind FROM ledger ORDER BY id")]
    assert kinds == ["grant", "grant", "adjustment"] and books.check(tmp_db) == []
