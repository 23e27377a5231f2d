"""`tokenroute admin` identity commands, run as the real command on the database file
while the gateway serves it: passwords from stdin, approving a device code, disabling
a user, rotating the signing key."""

from __future__ import annotations

import sqlite3
import subprocess

import httpx2 as httpx
import trio

from proxy.core.config import Settings
from tests.cli_helpers import TOKENROUTE, run_cli, run_json
from tests.conftest import running_gateway
from tests.fakes.openai_upstream import FakeOpenAI
from tests.test_device_flow import approve_in_browser, ask_code, poll

EMAIL = "ada@example.com"


async def test_operator_commands_beside_a_running_gateway(
    nursery: trio.Nursery, gateway_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    db = str(gateway_settings.db_path)
    async with (
        running_gateway(nursery, gateway_settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
        httpx.AsyncClient(base_url=gateway.url) as browser,
    ):
        short = await run_cli("admin", "create-user", "--email", EMAIL, "--password-stdin",
                              "--db", db, stdin="short\n")  # fmt: skip
        assert short.returncode == 1 and "8 characters" in short.stderr
        assert "Traceback" not in short.stderr
        empty = await run_cli("admin", "set-password", "--email", EMAIL, "--password-stdin",
                              "--db", db, stdin="")  # fmt: skip
        assert empty.returncode == 1 and "standard input" in empty.stderr
        user = await run_json("admin", "create-user", "--email", EMAIL, "--name", "Ada",
                              "--password-stdin", "--db", db,
                              stdin="correct horse battery\n")  # fmt: skip
        assert user["email"] == EMAIL and user["status"] == "active"

        # The password works on the sign-in page (the flow's own test module drives it).
        code = await ask_code(client)
        decided = await approve_in_browser(browser, code["user_code"])
        assert "Approved" in decided.text

        # Approved from the terminal instead of the page.
        second = await ask_code(client)
        bad = await run_cli("admin", "approve-device", "NOT-A-CODE", "--email", EMAIL, "--db", db)
        assert bad.returncode == 1 and "user code" in bad.stderr
        approved = await run_json("admin", "approve-device", second["user_code"].lower(),
                                  "--email", EMAIL, "--db", db)  # fmt: skip
        assert approved["user_code"] == second["user_code"]
        tokens = (await poll(client, second["device_code"])).json()
        auth = {"authorization": f"Bearer {tokens['access_token']}"}
        assert (await client.get("/api/v1/me", headers=auth)).status_code == 200

        rotated = await run_json("admin", "rotate-signing-key", "--db", db)
        assert (await client.get("/api/v1/me", headers=auth)).status_code == 200  # still valid
        conn = gateway.db()
        try:
            keys = conn.execute("SELECT kid, retired_at FROM signing_keys ORDER BY created_at")
            newest = [(kid, retired is None) for kid, retired in keys][-1]
        finally:
            conn.close()
        assert newest == (rotated["kid"], True)  # signs from now on; the old one still verifies

        await run_json("admin", "disable-user", "--email", EMAIL, "--db", db)
        assert (await client.get("/api/v1/me", headers=auth)).status_code == 401
        await run_json("admin", "enable-user", "--email", EMAIL, "--db", db)
        assert (await client.get("/api/v1/me", headers=auth)).status_code == 200
        unknown = await run_cli("admin", "disable-user", "--email", "nobody@example.com",
                                "--db", db)  # fmt: skip
        assert unknown.returncode == 1 and "nobody@example.com" in unknown.stderr


async def test_operator_commands_are_audited_and_a_closed_pipe_is_quiet(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = str(tmp_path / "a.db")
    await run_json("admin", "create-user", "--email", "q@example.com", "--db", db)
    await run_json("admin", "create-key", "--email", "q@example.com", "--name", "k",
                   "--credit", "1", "--db", db)  # fmt: skip
    await run_cli("admin", "ledger", "--key", "nope", "--db", db)  # reads: not audited
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT actor, action, target, address FROM audit_log ORDER BY id"
    ).fetchall()
    conn.close()
    assert rows == [("cli", "create-user", "q@example.com", "terminal"),
                    ("cli", "create-key", "q@example.com", "terminal")]  # fmt: skip
    command = f"{TOKENROUTE} admin create-key --email q@example.com --name k2 --db {db} --json"
    piped = await trio.to_thread.run_sync(
        lambda: subprocess.run(
            command + " | head -c 5", shell=True, capture_output=True, text=True, timeout=60
        )
    )
    assert "Traceback" not in piped.stderr
