"""Bootstrap without a browser: `tokenroute admin` on the database file beside a running server."""

from __future__ import annotations

import openai
import pytest
import trio

from tests.cli_helpers import run_cli, run_json
from tests.conftest import RunningGateway


async def test_create_user_and_key_then_call_the_gateway(gateway: RunningGateway) -> None:
    db = str(gateway.db_path)
    user = await run_json(
        "admin", "create-user", "--email", "ops@example.com", "--admin", "--db", db
    )
    assert user["email"] == "ops@example.com" and user["is_admin"] is True
    key = await run_json(
        "admin",
        "create-key",
        "--email",
        "ops@example.com",
        "--name",
        "fieryeye",
        "--credit",
        "5",
        "--db",
        db,
    )
    assert set(key) >= {"id", "name", "key_prefix", "raw", "balance_usd"}
    assert key["name"] == "fieryeye" and key["balance_usd"] == "5.00"
    assert key["raw"].startswith("sk-tr-") and len(key["raw"]) >= 6 + 32
    assert key["raw"].startswith(key["key_prefix"]) and len(key["key_prefix"]) == 10

    conn = gateway.db()
    stored = conn.execute("SELECT * FROM api_keys WHERE id = ?", (key["id"],)).fetchone()
    ledger = conn.execute(
        "SELECT kind, amount FROM ledger WHERE key_id = ?", (key["id"],)
    ).fetchall()
    conn.close()
    assert key["raw"] not in {str(v) for v in dict(stored).values()}  # only its hash is kept
    assert stored["balance"] == 5 * 10**9
    assert [tuple(r) for r in ledger] == [("grant", 5 * 10**9)]

    completion = await gateway.client(key["raw"]).chat.completions.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.content


async def test_revocation_is_honoured_within_one_second(gateway: RunningGateway) -> None:
    key_id, raw = gateway.create_key()
    client = gateway.client(raw)
    await client.models.list()  # the key is now in the server's cache
    revoked = await run_json("admin", "revoke-key", key_id, "--db", str(gateway.db_path))
    assert revoked["status"] == "revoked"
    revoked_at = trio.current_time()
    with trio.fail_after(5):
        while True:
            try:
                await client.models.list()
            except openai.AuthenticationError as exc:
                assert "revoked" in str(exc)
                break
            await trio.sleep(0.02)
    assert trio.current_time() - revoked_at < 1.0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("admin", "create-key", "--email", "nobody@example.com", "--name", "x"), "no user"),
        (("admin", "create-user", "--email", "not-an-email"), "not an email"),
        (("admin", "revoke-key", "missing-id"), "no key"),
        (
            ("admin", "create-key", "--email", "a@b.c", "--name", "x", "--credit", "1.5.0"),
            "--credit",
        ),
    ],
)
async def test_user_errors_exit_1_with_one_line(
    tmp_path, args: tuple[str, ...], needle: str
) -> None:  # type: ignore[no-untyped-def]
    done = await run_cli(*args, "--db", str(tmp_path / "x.db"))
    assert done.returncode == 1
    assert needle in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


async def test_duplicate_user_is_a_user_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = str(tmp_path / "x.db")
    await run_json("admin", "create-user", "--email", "a@example.com", "--db", db)
    done = await run_cli("admin", "create-user", "--email", "A@example.com", "--db", db)
    assert done.returncode == 1 and "already exists" in done.stderr


async def test_migrate_reports_the_schema_version(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = str(tmp_path / "m.db")
    first = await run_json("migrate", "--db", db)
    assert first["applied"] == [
        "0001_init.sql",
        "0002_money.sql",
        "0003_routes.sql",
        "0004_auto.sql",
        "0005_identity.sql",
        "0006_payments.sql",
        "0007_usage_daily.sql",
        "0008_password_resets.sql",
        "0009_oauth_clients.sql",
        "0010_usage_retention.sql",
        "0011_leases.sql",
    ]
    assert first["schema_version"] == 11
    again = await run_json("migrate", "--db", db)
    assert again["applied"] == [] and again["schema_version"] == 11
