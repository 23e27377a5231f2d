"""Upgrades: every migration, applied to a copy of a database an older release left with
data in it, keeps every row and balance, passes `tokenroute admin check`, and the gateway
serves a key made before the upgrade. `tokenroute migrate --check` names what would run
and changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import trio

from cli.main import main
from proxy.core.config import Settings
from proxy.store import connect, migrate
from proxy.store.db import migrations
from tests.cli_helpers import run_cli, run_json
from tests.conftest import running_gateway
from tests.upgrade_seed import Seeded, columns, seed

LATEST = len(migrations())
NAMES = [m.name for m in migrations()]
# Kept by triggers, or by the migration code itself: compared through `admin check`.
DERIVED = {"usage_daily", "usage_days", "usage_key_days", "schema_migrations"}


def database_at(path: Path, version: int) -> Seeded:
    """A file at schema `version` with the rows that version wrote; closed when returned."""
    conn = connect(path)
    try:
        migrate(conn, until=version)
        return seed(conn)
    finally:
        conn.close()


def tables(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]


Snapshot = dict[str, tuple[list[str], list[tuple[Any, ...]]]]


def snapshot(path: Path) -> Snapshot:
    """Every table's columns and rows, sorted: what an upgrade must keep."""
    conn = sqlite3.connect(path)
    try:
        shot = {}
        for table in tables(conn):
            names = columns(conn, table)
            rows = conn.execute(f"SELECT {', '.join(names)} FROM {table}")
            shot[table] = (names, sorted((tuple(r) for r in rows), key=repr))
        return shot
    finally:
        conn.close()


def kept(after: Snapshot, table: str, names: list[str]) -> list[tuple[Any, ...]]:
    """The rows of `table` after the upgrade, cut to the columns it had before."""
    now, rows = after[table]
    picks = [now.index(name) for name in names]
    return sorted((tuple(row[i] for i in picks) for row in rows), key=repr)


def books(path: Path) -> dict[str, tuple[int, int]]:
    """key id -> (balance, sum of its ledger)."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT k.id, k.balance, (SELECT coalesce(sum(amount), 0) FROM ledger "
            "WHERE key_id = k.id) FROM api_keys k"
        )
        return {key_id: (balance, total) for key_id, balance, total in rows}
    finally:
        conn.close()


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    """The real `tokenroute` command, in this process (quicker than a subprocess each)."""
    capsys.readouterr()
    code = main([*args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def files(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


@pytest.mark.parametrize("previous", range(1, LATEST))
def test_every_migration_keeps_the_data_of_the_release_before_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], previous: int
) -> None:
    db = tmp_path / "tokenroute.db"
    database_at(db, previous)
    before, money_before = snapshot(db), books(db)
    assert all(balance == total for balance, total in money_before.values())
    assert sum(1 for _, rows in before.values() if rows) >= 4, "the seed wrote next to nothing"

    untouched = files(tmp_path)
    code, plan = cli(capsys, "migrate", "--check", "--db", str(db))
    assert (code, plan["schema_version"], plan["latest_version"]) == (4, previous, LATEST)
    assert [m["name"] for m in plan["pending"]] == NAMES[previous:]
    assert all(m["summary"].endswith(".") for m in plan["pending"])
    assert files(tmp_path) == untouched, "migrate --check wrote to the database folder"

    code, applied = cli(capsys, "migrate", "--db", str(db))
    assert code == 0 and applied == {"applied": NAMES[previous:], "schema_version": LATEST}

    after = snapshot(db)
    for table, (names, rows) in before.items():
        if table in DERIVED:
            continue
        expected = rows
        if table == "usage" and previous < 2:  # migration 2: priced, never charged
            cost = names.index("cost")
            expected = sorted(((*r[:cost], 0, *r[cost + 1 :]) for r in rows), key=repr)
        assert kept(after, table, names) == expected, f"{table}: changed by the upgrade"
    assert books(db) == money_before  # balances as they were, each its ledger's sum
    if previous < 2:
        unbilled = read(db, "SELECT id, unbilled FROM usage WHERE unbilled != 0 ORDER BY id")
        assert unbilled == [(1, 1_234_567), (2, 98_765), (4, 5_000), (6, 700_001)]

    code, check = cli(capsys, "admin", "check", "--db", str(db))
    assert check["problems"] == [] and code == 0
    assert check["open_holds"] == (1 if previous >= 2 else 0)
    assert cli(capsys, "migrate", "--check", "--db", str(db))[0] == 0


def read(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return [tuple(r) for r in conn.execute(sql)]
    finally:
        conn.close()


@pytest.mark.parametrize("previous", sorted({1, LATEST - 1}))
async def test_a_key_made_before_the_upgrade_is_served_after_it(
    nursery: trio.Nursery, gateway_settings: Settings, previous: int
) -> None:
    """The gateway upgrades the file as it starts, then serves, bills and signs with what
    the older release left: its keys, balances, signing key, stale holds."""
    db = gateway_settings.db_path
    seeded = await trio.to_thread.run_sync(database_at, db, previous)
    balance_before = books(db)[seeded.key_id][0]
    async with running_gateway(nursery, gateway_settings) as gateway:
        client = gateway.client(seeded.raw_key)
        reply = await client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.choices[0].message.content
        rows = await gateway.wait_usage_rows(7)
        async with httpx.AsyncClient() as http:
            jwks = (await http.get(gateway.url + "/oauth/jwks.json")).json()
        old_kids = read(db, "SELECT kid FROM signing_keys")
    new = rows[-1]
    assert (new["key_id"], new["status"]) == (seeded.key_id, 200) and new["cost"] > 0
    balance, total = books(db)[seeded.key_id]
    assert balance == total == balance_before - new["cost"]
    assert read(db, "SELECT count(*) FROM holds") == [(0,)]  # the dead gateway's, released
    assert {kid for (kid,) in old_kids} <= {key["kid"] for key in jwks["keys"]}
    check = await run_json("admin", "check", "--db", str(db))
    assert check == {"ok": True, "problems": [], "open_holds": 0}


def test_every_table_of_the_latest_schema_gets_rows(tmp_path: Path) -> None:
    """A migration that adds a table adds its rows to the seed, or its upgrade goes untested."""
    db = tmp_path / "latest.db"
    database_at(db, LATEST)
    empty = [table for table, (_, rows) in snapshot(db).items() if not rows]
    assert empty == [], f"add rows for these tables to tests/upgrade_seed.py: {empty}"


def test_every_migration_says_what_it_does() -> None:
    for migration in migrations():
        assert migration.sql.startswith("-- "), f"{migration.name}: open with a comment"
        assert 10 < len(migration.summary) < 300 and migration.summary.endswith(".")


async def test_check_reads_a_database_a_gateway_has_open(tmp_path: Path) -> None:
    """Beside a running gateway (its -wal and -shm files exist) the check reads through
    them; with no file it creates none; a newer schema is refused; exit 4 is the script's."""
    db = tmp_path / "live.db"
    missing = await run_cli("migrate", "--check", "--db", str(tmp_path / "no" / "such.db"))
    assert missing.returncode == 4 and "no schema in" in missing.stdout
    assert not await trio.Path(tmp_path / "no").exists()

    conn = connect(db)  # as a gateway holds it: WAL, with a write not yet checkpointed
    try:
        migrate(conn, until=LATEST - 1)
        conn.execute("INSERT INTO users (id, email, created_at) VALUES ('u', 'a@b.c', 0)")
        assert (await trio.Path(f"{db}-wal").stat()).st_size > 0
        pending = await run_cli("migrate", "--check", "--db", str(db))
        assert pending.returncode == 4, pending.stderr
        assert f"schema version {LATEST - 1}, this tokenroute has {LATEST}" in pending.stdout
        assert f"  {NAMES[-1]}  {migrations()[-1].summary}" in pending.stdout
        migrate(conn)
        done = await run_cli("migrate", "--check", "--db", str(db))
        assert (done.returncode, done.stdout) == (0, f"schema version {LATEST}: up to date\n")
        conn.execute(f"PRAGMA user_version = {LATEST + 1}")
        newer = await run_cli("migrate", "--check", "--db", str(db))
        assert newer.returncode == 1 and "newer than this tokenroute" in newer.stderr
    finally:
        conn.close()
    usage = await run_cli("migrate", "--help")
    assert "0 up to date, 4 migrations pending" in " ".join(usage.stdout.split())
