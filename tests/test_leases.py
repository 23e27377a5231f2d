"""Money leases in the store: the invariants of SCALING.md, step by step, on a real file."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from proxy.store import leases
from proxy.store import ledger as books
from proxy.store.accounts import AccountError
from tests.test_ledger import make_key, usage


def leased(conn: sqlite3.Connection, key_id: str) -> tuple[int, int]:
    row = conn.execute("SELECT balance, leased FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    return int(row[0]), int(row[1])


def lease_of(conn: sqlite3.Connection, key_id: str, owner: str) -> int:
    row = conn.execute(
        "SELECT amount FROM leases WHERE key_id = ? AND owner = ?", (key_id, owner)
    ).fetchone()
    return int(row[0]) if row else 0


def step(conn: sqlite3.Connection, fn, *args):  # type: ignore[no-untyped-def]
    with books.transaction(conn):
        return fn(conn, *args)


def test_a_take_is_a_fair_share_and_exact_when_the_key_runs_low(
    tmp_db: sqlite3.Connection,
) -> None:
    key = make_key(tmp_db, 10_000)
    for owner in ("a", "b"):
        step(tmp_db, leases.register_owner, owner)
    first = step(tmp_db, leases.take, key, "a", 100, 9_000, 2)
    assert (first.granted, first.free, first.exact) == (2_500, 7_500, False)  # 10,000 / (2 x 2)
    second = step(tmp_db, leases.take, key, "b", 100, 9_000, 2)
    assert (second.granted, second.free) == (1_875, 5_625)
    # A need above the fair share: exact, just the need.
    exact = step(tmp_db, leases.take, key, "b", 5_000, 9_000, 2)
    assert (exact.granted, exact.free, exact.exact) == (5_000, 625, True)
    # More than is free: what is left, and nothing once nothing is.
    assert step(tmp_db, leases.take, key, "a", 5_000, 5_000, 2).granted == 625
    assert step(tmp_db, leases.take, key, "a", 1, 5_000, 2).granted == 0
    assert leased(tmp_db, key) == (10_000, 10_000)
    assert lease_of(tmp_db, key, "a") + lease_of(tmp_db, key, "b") == 10_000
    assert books.check(tmp_db) == []


def test_settlement_spends_the_lease_and_never_money_another_process_leased(
    tmp_db: sqlite3.Connection,
) -> None:
    key = make_key(tmp_db, 10_000)
    step(tmp_db, leases.take, key, "a", 4_000, 4_000, 1)
    step(tmp_db, leases.take, key, "b", 4_000, 4_000, 1)  # free: 2,000
    settled = step(tmp_db, books.record_batch, [], [(usage(key, 3_000, "r1"), None)], "a")
    assert settled.charged == [3_000] and settled.from_lease == {key: 3_000}
    assert leased(tmp_db, key) == (7_000, 5_000) and lease_of(tmp_db, key, "a") == 1_000
    # Beyond a's lease: the rest from the free balance (2,000), never from b's 4,000.
    settled = step(tmp_db, books.record_batch, [], [(usage(key, 5_000, "r2"), None)], "a")
    assert settled.charged == [3_000] and settled.from_lease == {key: 1_000}
    assert leased(tmp_db, key) == (4_000, 4_000) and lease_of(tmp_db, key, "b") == 4_000
    row = tmp_db.execute("SELECT cost, unbilled FROM usage WHERE request_id = 'r2'").fetchone()
    assert tuple(row) == (3_000, 2_000)
    assert books.check(tmp_db) == []


def test_give_back_and_reclaim_return_leases_once(tmp_db: sqlite3.Connection) -> None:
    key = make_key(tmp_db, 10_000)
    step(tmp_db, leases.register_owner, "a")
    step(tmp_db, leases.take, key, "a", 3_000, 3_000, 1)
    step(tmp_db, leases.take, key, "ghost", 2_000, 2_000, 1)  # no owner row: an orphan
    assert step(tmp_db, leases.give_back, key, "a", 1_000) == 1_000
    assert leased(tmp_db, key) == (10_000, 4_000)
    tmp_db.execute("UPDATE owners SET heartbeat_at = 0 WHERE id = 'a'")
    tmp_db.execute(
        "INSERT INTO holds (id, key_id, request_id, amount, created_at, owner) "
        "VALUES ('h1', ?, 'r1', 500, 0, 'a')",
        (key,),
    )
    beat = step(tmp_db, leases.heartbeat, "b", 15_000)
    assert beat.alive is False and beat.processes == 1  # b registered itself
    gone = {r.owner: (r.leases, r.holds) for r in beat.reclaimed}
    assert gone == {"a": (2_000, 1), "ghost": (2_000, 0)}
    assert leased(tmp_db, key) == (10_000, 0)
    assert tmp_db.execute("SELECT count(*) FROM holds").fetchone()[0] == 0
    # Reclaimed owners get nothing back by returning: it is gone already.
    assert step(tmp_db, leases.give_back, key, "a", 2_000) == 0
    assert step(tmp_db, leases.heartbeat, "b", 15_000).reclaimed == ()
    assert books.check(tmp_db) == []


def test_dead_processes_on_this_host_are_reclaimed_at_once(tmp_db: sqlite3.Connection) -> None:
    key = make_key(tmp_db, 10_000)
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    dead_pid = int(child.stdout)
    step(tmp_db, leases.register_owner, "alive")
    step(tmp_db, leases.register_owner, "dead")
    tmp_db.execute("UPDATE owners SET pid = ? WHERE id = 'dead'", (dead_pid,))
    tmp_db.execute("UPDATE owners SET pid = 1 WHERE id = 'alive'")  # init: always running
    step(tmp_db, leases.take, key, "dead", 1_000, 1_000, 1)
    step(tmp_db, leases.take, key, "alive", 1_000, 1_000, 1)
    assert os.getpid() != dead_pid
    gone = step(tmp_db, leases.reclaim_dead_here)
    assert [(r.owner, r.leases) for r in gone] == [("dead", 1_000)]
    assert leased(tmp_db, key) == (10_000, 1_000)


def test_leased_money_cannot_be_taken_by_a_debit_and_check_finds_a_mismatch(
    tmp_db: sqlite3.Connection,
) -> None:
    key = make_key(tmp_db, 10_000)
    step(tmp_db, leases.take, key, "a", 8_000, 8_000, 1)
    with pytest.raises(AccountError, match="requests in flight hold"):
        step(tmp_db, lambda c: books.credit(c, key, -3_000, kind="adjustment"))
    assert step(tmp_db, lambda c: books.credit(c, key, -2_000, kind="adjustment")) == 8_000
    with pytest.raises(sqlite3.IntegrityError):  # the CHECK backstop
        tmp_db.execute("UPDATE api_keys SET balance = 7999 WHERE id = ?", (key,))
    tmp_db.execute("UPDATE leases SET amount = 7000 WHERE key_id = ?", (key,))
    assert books.check(tmp_db) == [f"key {key}: leased 8000 but its leases sum to 7000"]
