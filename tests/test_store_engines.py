"""The store's money and schema code on both engines: SQLite, and a real PostgreSQL server.

Each test runs twice through `conn` (the `postgresql` run is marked `scaleout`): the
same store functions, the same SQL, the same answers. Money checks stay in SQL on both:
a balance never goes below zero, a reference credits once, `admin check` finds a balance
that disagrees with its ledger.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.store import AccountError, migrate, oauth, open_database, schema_version
from proxy.store import accounts as acc
from proxy.store import identity as ids
from proxy.store import ledger as books
from proxy.store import payments as pay
from proxy.store import reports as rep
from proxy.store import retention as rt
from proxy.store.db import migrations
from proxy.store.usage import UsageRecord, usage_summary
from tests.pg_cluster import Cluster

LATEST = len(migrations())
T0 = 1_795_000_000_000
ENGINES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.scaleout)]


@pytest.fixture(params=ENGINES)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    """A fresh, empty database: a SQLite file or a PostgreSQL URL."""
    if request.param == "sqlite":
        yield tmp_path / "t.db"
        return
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    url = cluster.create_database()
    yield url
    cluster.drop_database(url)


@pytest.fixture
def conn(target: str | Path) -> Iterator[Any]:
    connection = open_database(target)
    migrate(connection)
    yield connection
    connection.close()


def key(conn: Any, credit: int, email: str = "dev@example.com", name: str = "k") -> str:
    with books.transaction(conn):
        user = acc.user_by_email(conn, email) or acc.create_user(conn, email)
        record = acc.create_key(conn, user_id=user.id, name=name, key_hash=name.encode() * 4,
                                key_prefix="sk-tr-x", credit=credit)  # fmt: skip
    return record.id


def usage(key_id: str | None, cost: int, n: int, status: int = 200) -> UsageRecord:
    return UsageRecord(
        request_id=f"req-{n}", key_id=key_id, user_id=None, requested_model="m",
        served_model="m", provider="p", tokens_in=10, tokens_out=5, cached_tokens=0,
        estimated=False, cost=cost, status=status, error=None, latency_ms=3, ttft_ms=None,
        stream=True, created_at=T0 + n,
    )  # fmt: skip


def ledger_sum(conn: Any, key_id: str) -> int:
    return int(conn.execute("SELECT coalesce(sum(amount), 0) FROM ledger WHERE key_id = ?",
                            (key_id,)).fetchone()[0])  # fmt: skip


def balance(conn: Any, key_id: str) -> int:
    return int(conn.execute("SELECT balance FROM api_keys WHERE id = ?", (key_id,)).fetchone()[0])


def test_credit_and_debit_keep_balance_equal_to_the_ledger(conn: Any) -> None:
    key_id = key(conn, 1_000)
    with books.transaction(conn):
        assert books.credit(conn, key_id, 500, kind="topup", reference="cs_1") == 1_500
        assert books.credit(conn, key_id, -1_200, kind="adjustment") == 300
    with pytest.raises(AccountError, match="below zero"), books.transaction(conn):
        books.credit(conn, key_id, -301, kind="adjustment")
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"), books.transaction(conn):
        books.credit(conn, key_id, 500, kind="topup", reference="cs_1")
    with pytest.raises(Exception, match=r"(?i)check|constraint"), books.transaction(conn):
        conn.execute("UPDATE api_keys SET balance = -1 WHERE id = ?", (key_id,))
    assert balance(conn, key_id) == ledger_sum(conn, key_id) == 300
    assert books.check(conn) == []
    rows = books.ledger_rows(conn, key_id, 10)
    assert [r["amount"] for r in rows] == [-1_200, 500, 1_000]
    assert isinstance(rows[0]["id"], int) and rows[0]["id"] > rows[1]["id"]


def test_a_settlement_batch_writes_usage_debits_and_rollups(conn: Any) -> None:
    rich, poor = key(conn, 10_000, name="rich"), key(conn, 250, name="poor")
    with books.transaction(conn):
        books.record_batch(conn, [("h1", poor, "req-9", 300, T0, None)], [])
    settlements = [(usage(rich, 1_000, 1), None), (usage(poor, 200, 2), None),
                   (usage(poor, 200, 3), "h1"), (usage(None, 0, 4, status=401), None),
                   (usage(rich, 0, 5, status=502), None)]  # fmt: skip
    with books.transaction(conn):
        charged = books.record_batch(conn, [], settlements).charged
    assert charged == [1_000, 200, 50, 0, 0]  # the poor key's second request: what was left
    rows = conn.execute("SELECT id, key_id, cost, unbilled FROM usage ORDER BY id").fetchall()
    assert [(r["cost"], r["unbilled"]) for r in rows] == [(1000, 0), (200, 0), (50, 150),
                                                          (0, 0), (0, 0)]  # fmt: skip
    assert len({r["id"] for r in rows}) == 5
    debits = conn.execute(
        "SELECT l.usage_id, l.amount, u.cost FROM ledger l JOIN usage u ON u.id = l.usage_id"
    ).fetchall()
    assert sorted((-d[1], d[2]) for d in debits) == [(50, 50), (200, 200), (1000, 1000)]
    assert (balance(conn, rich), balance(conn, poor)) == (9_000, 0)
    assert conn.execute("SELECT count(*) FROM holds").fetchone()[0] == 0
    assert books.check(conn) == []
    day = conn.execute("SELECT day, requests, cost FROM usage_days WHERE ok = 1").fetchall()
    assert [tuple(r) for r in day] == [("2026-11-18", 3, 1_250)]
    summary = usage_summary(conn, "2026-11-01", key_id=poor)
    assert (summary["requests"], summary["cost"]) == (2, 250)
    with books.transaction(conn):  # a second batch adds to the same rollup rows
        books.record_batch(conn, [], [(usage(rich, 7, 6), None)])
    assert books.check(conn) == []
    totals = rep.totals(conn, T0 - 1)
    assert (totals["requests"], totals["cost"], totals["errors"]) == (6, 1_257, 2)
    assert rt.days_not_rolled_up(conn, T0 - rt.DAY_MS, T0 + rt.DAY_MS) == []


def test_admin_check_finds_a_tampered_balance_and_a_lost_debit(conn: Any) -> None:
    key_id = key(conn, 5_000)
    with books.transaction(conn):
        books.record_batch(conn, [], [(usage(key_id, 700, 1), None)])
    assert books.check(conn) == []
    with books.transaction(conn):
        conn.execute("UPDATE api_keys SET balance = balance + 1 WHERE id = ?", (key_id,))
        conn.execute("DELETE FROM ledger WHERE kind = 'usage'")
    problems = books.check(conn)
    assert f"key {key_id}: balance 4301 but its ledger sums to 5000" in problems
    assert any("cost 700 but no debit" in p for p in problems), problems


def test_reports_and_payments_read_the_same_on_both(conn: Any) -> None:
    key_id = key(conn, 1_000, email="Ann@Example.com")
    with books.transaction(conn):
        books.record_batch(conn, [], [(usage(key_id, 10, 1), None)])
        record = pay.add_pending(conn, key_id, acc.key_by_id(conn, key_id).user_id, 5, 4, "usd")
        pay.attach_session(conn, record.id, "cs_9", "https://pay", None)
        effect = pay.credit_session(conn, "evt_1", "checkout.session.completed", "cs_9", None, "pi")
        again = pay.credit_session(conn, "evt_1", "checkout.session.completed", "cs_9", None, "pi")
    assert (effect.amount, again.amount) == (4, 0)  # a redelivered event credits nothing
    assert acc.user_by_email(conn, "ann@example.COM") is not None  # emails ignore case
    assert [u["email"] for u in rep.users(conn, "ann")] == ["Ann@Example.com"]
    assert [k["id"] for k in rep.keys(conn, owner="ann", idle_days=0)] == [key_id]
    flow = rep.money_flow(conn, T0 - 1)
    assert (flow["granted"], flow["sold"], flow["spent"]) == (1_000, 4, 10)
    assert rep.recent_models(conn, "2026-01-01") == ["m"]
    assert (
        rep.rolled_totals(conn, *rep.UsageFilter(T0 - 1, T0 + rt.DAY_MS).rollup_where())["requests"]
        == 1
    )
    where, args = rep.UsageFilter(T0 - 1, T0 + 10, key_id=key_id).where()
    assert [r["cost"] for r in rep.usage_page(conn, where, args, None, 10)] == [10]
    count, digests = acc.key_hashes_since(conn, 0)
    assert digests == [b"kkkk"] and acc.key_hashes_since(conn, count)[1] in ([], [b"kkkk"])
    assert books.check(conn) == []


def test_logins_are_used_once_on_both(conn: Any) -> None:
    """Device codes, refresh tokens, authorization codes, resets and the audit log."""
    far = acc.now_ms() + 600_000
    with books.transaction(conn):
        user = acc.create_user(conn, "who@example.com")
        ids.add_device_code(conn, b"dev", "ABCD-EFGH", "cli", "", 5, far)
    with pytest.raises(acc.Duplicate), books.transaction(conn):
        ids.add_device_code(conn, b"dev2", "ABCD-EFGH", "cli", "", 5, far)
    with books.transaction(conn):
        assert ids.decide_device_code(conn, "ABCD-EFGH", user.id, True).status == "approved"
        assert ids.poll_device_code(conn, b"dev", "cli") == (user.id, "")
        assert ids.poll_device_code(conn, b"dev", "cli").code == "invalid_grant"  # type: ignore[union-attr]
        ids.add_refresh_token(conn, b"r1", user.id, "cli", "", far)
        assert ids.rotate_refresh_token(conn, b"r1", b"r2", "cli", far) == (user.id, "")
        reused = ids.rotate_refresh_token(conn, b"r1", b"r3", "cli", far)
        assert reused.code == "invalid_grant"  # type: ignore[union-attr]
        oauth.add_client(conn, "mcp-1", "Claude", ["http://127.0.0.1:9/cb"])
        oauth.add_code(conn, b"c1", "mcp-1", user.id, "http://127.0.0.1:9/cb", "ch", "", far)
        grant = oauth.use_code(conn, b"c1", "mcp-1", "http://127.0.0.1:9/cb", "ch", b"r9", far)
        again = oauth.use_code(conn, b"c1", "mcp-1", "http://127.0.0.1:9/cb", "ch", b"r8", far)
        ids.add_reset(conn, b"reset", user.id, far)
        ids.use_reset(conn, b"reset", "$argon2id$x")
        ids.audit(conn, "cli", "create-key", "who@example.com", "credit=5", "terminal")
        ids.add_signing_key(conn, "kid-1", "{}", rotate=False)
        assert not ids.add_signing_key(conn, "kid-2", "{}", rotate=False)
    assert grant == oauth.CodeGrant(user.id, "") and again.code == "invalid_grant"  # type: ignore[union-attr]
    assert oauth.client(conn, "mcp-1").redirect_uris == ("http://127.0.0.1:9/cb",)  # type: ignore[union-attr]
    assert ids.reset_user(conn, b"reset") is None
    assert ids.login_of(conn, "WHO@example.com")[1] == "$argon2id$x"
    assert [r["action"] for r in ids.audit_rows(conn, 10, action="key", target="who")] == [
        "create-key"
    ]
    assert ids.audit_rows(conn, 10, actor="nobody") == []
    assert ids.signing_keys(conn) == [("kid-1", "{}", False)]
    families = conn.execute("SELECT status FROM refresh_tokens ORDER BY created_at").fetchall()
    assert {r[0] for r in families} == {"revoked"}  # a reused token revokes its family


def test_migrations_from_empty_and_again(target: str | Path) -> None:
    conn = open_database(target)
    try:
        assert migrate(conn) == [m.name for m in migrations()]
        assert schema_version(conn) == LATEST
        assert migrate(conn) == []  # idempotent
        names = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY version")]
        assert names == [m.name for m in migrations()]
    finally:
        conn.close()


MIGRATE = """
import sys
from proxy.store import migrate, open_database
conn = open_database(sys.argv[1])
print(len(migrate(conn)))
conn.close()
"""


def test_two_processes_migrating_at_once_migrate_once(target: str | Path) -> None:
    runs = [subprocess.Popen([sys.executable, "-c", MIGRATE, str(target)], text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(2)]  # fmt: skip
    outs = [run.communicate(timeout=60) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outs
    applied = sorted(int(out) for out, _ in outs)
    assert sum(applied) == LATEST  # each migration by exactly one of them
    conn = open_database(target)
    try:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
        assert sorted(versions) == list(range(1, LATEST + 1))
    finally:
        conn.close()


@pytest.mark.scaleout
def test_gateways_settling_at_once_never_share_an_id_or_lose_a_debit(pg_url: str) -> None:
    """Four connections (four gateways' writers) settle on the same keys at the same time:
    usage ids come from the sequence, lock order and retried conflicts keep every debit."""
    conn = open_database(pg_url)
    migrate(conn)
    keys = [key(conn, 10**9, name=f"k{i}") for i in range(3)]
    errors: list[BaseException] = []

    def settle(worker: int) -> None:
        own = open_database(pg_url)
        try:
            for batch in range(20):
                records = [(usage(keys[(worker + i) % 3], 3, worker * 10_000 + batch * 10 + i),
                            None) for i in range(6)]  # fmt: skip
                for _ in range(100):  # what the writer does with a `Conflict`
                    try:
                        with books.transaction(own):
                            books.record_batch(own, [], records)
                        break
                    except Exception as exc:
                        if getattr(exc, "sqlstate", None) not in ("40001", "40P01"):
                            raise
        except BaseException as exc:
            errors.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=settle, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert conn.execute("SELECT count(*), count(DISTINCT id) FROM usage").fetchone() == (
            480, 480)  # fmt: skip
        assert sum(balance(conn, k) for k in keys) == 3 * 10**9 - 480 * 3
        assert books.check(conn) == []
    finally:
        conn.close()
