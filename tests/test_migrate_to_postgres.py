"""`tokenroute migrate-to-postgres --from FILE --to URL`: every row of a populated SQLite
database arrives, the books check passes on both sides, the target's sequences continue
after the copied ids, a second copy into the same database is refused, and a bad URL,
a refused connection or a wrong password is one line without the password.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from proxy.store import open_database
from tests.cli_helpers import clean_env, run_cli, run_json
from tests.pg_cluster import PASSWORD, Cluster, free_port
from tests.test_upgrades import LATEST, database_at
from tests.upgrade_seed import columns

pytestmark = pytest.mark.scaleout


def sqlite_rows(db: Path) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    conn = sqlite3.connect(db)
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'schema_migrations'"
        )]  # fmt: skip
        found = {}
        for table in tables:
            names = columns(conn, table)
            rows = conn.execute(f"SELECT {', '.join(names)} FROM {table}").fetchall()
            found[table] = (names, sorted((tuple(r) for r in rows), key=repr))
        return found
    finally:
        conn.close()


def pg_rows(url: str, table: str, names: list[str]) -> list[tuple[Any, ...]]:
    conn = open_database(url)
    try:
        rows = conn.execute(f"SELECT {', '.join(names)} FROM {table}").fetchall()
        return sorted((tuple(r) for r in rows), key=repr)
    finally:
        conn.close()


async def test_every_row_arrives_and_the_books_balance_on_both_sides(
    tmp_path: Path, pg_url: str
) -> None:
    db = tmp_path / "live.db"
    database_at(db, LATEST)
    before = sqlite_rows(db)
    assert {"users", "api_keys", "ledger", "usage", "payments", "oauth_clients",
            "authorization_codes"} <= {t for t, (_, rows) in before.items() if rows}  # fmt: skip

    done = await run_cli("migrate-to-postgres", "--from", str(db), "--to", pg_url)
    assert done.returncode == 0, done.stderr
    assert "the books check passes on both sides" in done.stdout
    assert PASSWORD not in done.stdout + done.stderr and ":***@" in done.stdout

    for table, (names, rows) in before.items():
        assert pg_rows(pg_url, table, names) == rows, f"{table}: not copied as it was"
    env = clean_env(TOKENROUTE_DATABASE_URL=pg_url)
    on_pg = await run_json("admin", "check", env=env)
    on_sqlite = await run_json("admin", "check", "--db", str(db))
    assert on_pg["problems"] == on_sqlite["problems"] == []
    assert on_pg["open_holds"] == on_sqlite["open_holds"] == 1

    # The sequences continue after the copied ids: new rows do not collide.
    key = await run_json("admin", "create-key", "--email", "alice@example.com", "--name",
                         "after", "--credit", "3", env=env)  # fmt: skip
    conn = open_database(pg_url)
    try:
        [(grant_id,)] = conn.execute(
            "SELECT id FROM ledger WHERE key_id = ?", (key["id"],)
        ).fetchall()
        assert grant_id > max(row[0] for row in before["ledger"][1])
        assert conn.execute("SELECT max(id) FROM audit_log").fetchone()[0] > max(
            row[0] for row in before["audit_log"][1]
        )
    finally:
        conn.close()
    assert (await run_json("admin", "check", env=env))["problems"] == []

    again = await run_cli("migrate-to-postgres", "--from", str(db), "--to", pg_url)
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1 and "is not empty" in again.stderr
    assert PASSWORD not in again.stderr and "Traceback" not in again.stderr


async def test_a_bad_target_is_one_line_without_the_password(
    tmp_path: Path, pg_cluster: Cluster, pg_url: str
) -> None:
    db = tmp_path / "live.db"
    database_at(db, LATEST)
    wrong = pg_url.replace(PASSWORD, "not-the-password-123")
    refused = f"postgresql://tokenroute:{PASSWORD}@127.0.0.1:{free_port()}/x"
    cases = {
        wrong: "password authentication failed",
        refused: "refused",
        "postgresql://tokenroute:pw@[bad/x": "cannot use the database",
        "mysql://root@localhost/x": "expected a postgresql:// URL",
    }
    for url, said in cases.items():
        done = await run_cli("migrate-to-postgres", "--from", str(db), "--to", url)
        assert done.returncode == 1, (url, done.stderr)
        assert said in done.stderr and done.stderr.count("\n") == 1, done.stderr
        assert "Traceback" not in done.stderr
        for secret in (PASSWORD, "not-the-password-123", ":pw@"):
            assert secret not in done.stderr + done.stdout
    missing = await run_cli("migrate-to-postgres", "--from", str(tmp_path / "no.db"), "--to",
                            pg_url)  # fmt: skip
    assert missing.returncode == 1 and "no SQLite database" in missing.stderr
    env = clean_env(TOKENROUTE_DATABASE_URL=wrong)
    served = await run_cli("admin", "check", env=env)
    assert served.returncode == 1 and "password authentication failed" in served.stderr
    assert "not-the-password-123" not in served.stderr and "Traceback" not in served.stderr
