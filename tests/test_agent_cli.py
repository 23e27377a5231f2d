"""The docs' agent sequence with the installed `tokenroute` command, `--json` at every step,
an isolated HOME, against a live gateway: login (approved by a second client on /device),
keys create, env into a file the openai SDK then uses, test (402 first, then OK), topup,
keys list/revoke, balance, usage, whoami, models, logout."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import trio

from proxy.core.config import Settings
from proxy.core.money import usd_to_units
from tests.cli_helpers import TOKENROUTE, clean_env, run_cli
from tests.conftest import running_gateway
from tests.fakes.openai_upstream import FakeOpenAI
from tests.test_device_flow import approve_in_browser, person


def cli_env(home: Path, url: str, **extra: str) -> dict[str, str]:
    return clean_env(HOME=str(home), TOKENROUTE_API_URL=url, **extra)


async def agent(env: dict[str, str], *args: str, code: int = 0) -> Any:
    done = await run_cli(*args, "--json", env=env)
    assert done.returncode == code, (args, done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


async def login(env: dict[str, str], browser: httpx.AsyncClient) -> list[dict[str, Any]]:
    """`tokenroute login --json` in the background; the person approves on /device."""
    process = await trio.lowlevel.open_process(
        [TOKENROUTE, "login", "--json"], env=env, stdout=-1, stderr=-1
    )
    assert process.stdout is not None
    buffer = b""
    with trio.fail_after(15):
        while b"\n" not in buffer:
            buffer += await process.stdout.receive_some()
    first = json.loads(buffer.split(b"\n")[0])
    decided = await approve_in_browser(browser, first["user_code"])
    assert "Approved" in decided.text
    with trio.fail_after(30):
        while True:
            chunk = await process.stdout.receive_some()
            if not chunk:
                break
            buffer += chunk
        assert await process.wait() == 0
    return [json.loads(line) for line in buffer.decode().splitlines()]


async def test_the_agent_sequence_end_to_end(
    nursery: trio.Nursery, tmp_path: Path, fast_login: Settings, fake_openai: FakeOpenAI
) -> None:
    home = tmp_path / "home"
    async with (
        running_gateway(nursery, fast_login) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as browser,
    ):
        env = cli_env(home, gateway.url)
        await person(gateway)
        not_yet = await run_cli("whoami", "--json", env=env)
        assert not_yet.returncode == 1 and "tokenroute login" in not_yet.stderr

        lines = await login(env, browser)
        assert set(lines[0]) == {"verification_uri", "verification_uri_complete", "user_code",
                                 "expires_in"}  # fmt: skip
        assert lines[-1]["status"] == "logged_in"
        folder, creds = home / ".tokenroute", home / ".tokenroute" / "credentials.json"
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE(creds.stat().st_mode) == 0o600

        key = await agent(env, "keys", "create", "--name", "fieryeye")
        assert key["raw"].startswith("sk-tr-") and key["name"] == "fieryeye"
        cached = home / ".tokenroute" / "last_key.txt"
        assert cached.read_text().strip() == key["raw"]
        assert stat.S_IMODE(cached.stat().st_mode) == 0o600

        dotenv = await run_cli("env", env=env)
        assert dotenv.returncode == 0
        assert dotenv.stdout.splitlines() == [
            f"OPENAI_API_KEY={key['raw']}", f"OPENAI_BASE_URL={gateway.url}/v1",
        ]  # fmt: skip
        (tmp_path / ".env").write_text(dotenv.stdout)
        values = dict(line.split("=", 1) for line in (tmp_path / ".env").read_text().splitlines())

        broke = await run_cli("test", "--json", env=env)
        assert broke.returncode == 1 and "topup --amount" in broke.stderr  # 402: no credit
        await gateway.services.accounts.grant(key["id"], usd_to_units("2"))
        ok = await agent(env, "test")
        assert ok["ok"] and ok["model"] == "openai/gpt-4o-mini"
        sdk = openai.AsyncOpenAI(api_key=values["OPENAI_API_KEY"],
                                 base_url=values["OPENAI_BASE_URL"], max_retries=0)  # fmt: skip
        async with sdk:
            await sdk.chat.completions.create(
                model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
        topup = await run_cli("topup", "--amount", "5", "--json", env=env)
        assert topup.returncode == 3 and "payments are not set up" in topup.stderr
        assert json.loads(topup.stdout)["error"]["exit_code"] == 3

        await gateway.wait_usage_rows(2)
        usage = await agent(env, "usage", "--days", "7")
        assert usage["total_requests"] == 2 and usage["range_days"] == 7
        rows = gateway.usage_rows()
        assert usage["total_tokens_in"] == sum(r["tokens_in"] for r in rows if r["status"] == 200)
        balance = await agent(env, "balance")
        assert balance["currency"] == "USD"
        assert usd_to_units(balance["balance_usd"]) == usd_to_units("2") - sum(
            r["cost"] for r in rows
        )
        me = await agent(env, "whoami")
        assert set(me) == {"id", "display_name", "email", "logto_sub", "balance_usd", "status"}
        expired = json.loads(creds.read_text())
        creds.write_text(json.dumps({**expired, "expires_at": 0}))  # the hour is up
        assert (await agent(env, "whoami"))["id"] == me["id"]  # refreshed silently
        renewed = json.loads(creds.read_text())
        assert renewed["refresh_token"] != expired["refresh_token"]
        assert renewed["expires_at"] > expired["expires_at"] - 3600
        assert stat.S_IMODE(creds.stat().st_mode) == 0o600
        models = await agent(env, "models")
        assert isinstance(models, list) and "openai/gpt-4o-mini" in [m["id"] for m in models]
        listed = await agent(env, "keys", "list")
        assert [k["id"] for k in listed] == [key["id"]]

        await agent(env, "keys", "revoke", key["id"])
        revoked = await run_cli("test", "--json", env=env)
        assert revoked.returncode == 1 and "revoked" in revoked.stderr

        saved = json.loads(creds.read_text())
        out = await agent(env, "logout")
        assert out["logged_out"] and out["revoked"] and not creds.exists()
        refused = await browser.post("/oauth/token", data={
            "grant_type": "refresh_token", "refresh_token": saved["refresh_token"],
            "client_id": "tokenroute-cli"})  # fmt: skip
        assert refused.json()["error"] == "invalid_grant"
        gone = await run_cli("keys", "list", env=env)
        assert gone.returncode == 1 and "login" in gone.stderr


async def test_an_api_key_alone_skips_login(
    nursery: trio.Nursery, tmp_path: Path, fast_login: Settings, fake_openai: FakeOpenAI
) -> None:
    async with running_gateway(nursery, fast_login) as gateway:
        key_id, raw = gateway.create_key(credit="1")
        env = cli_env(tmp_path / "home", gateway.url, TOKENROUTE_API_KEY=raw)
        assert (await agent(env, "whoami"))["email"] == "dev@example.com"
        assert (await agent(env, "balance"))["balance_usd"] == "1.00"
        assert (await agent(env, "test"))["ok"]
        assert (await agent(env, "usage", "--days", "1"))["total_requests"] == 1
        assert any(m["id"] == "openai/gpt-4o-mini" for m in await agent(env, "models"))
        dotenv = await run_cli("env", env=env)
        assert dotenv.stdout.splitlines()[0] == f"OPENAI_API_KEY={raw}"
        create = await run_cli("keys", "create", "--name", "x", "--json", env=env)
        assert create.returncode == 1 and "tokenroute login" in create.stderr
        assert not (tmp_path / "home" / ".tokenroute").exists()  # nothing written
        assert key_id


async def test_exit_codes(
    nursery: trio.Nursery, tmp_path: Path, fast_login: Settings, fake_openai: FakeOpenAI
) -> None:
    home = tmp_path / "home"
    async with running_gateway(nursery, fast_login) as gateway:
        _, raw = gateway.create_key(credit="1")
        env = cli_env(home, gateway.url, TOKENROUTE_API_KEY=raw)
        assert (await run_cli("usage", "--days", "0", env=env)).returncode == 1
        assert (await run_cli("usage", "--days", "many", env=env)).returncode == 1
        assert (await run_cli("test", "--model", "nope/x", env=env)).returncode == 1
        unknown_key = cli_env(home, gateway.url, TOKENROUTE_API_KEY="sk-tr-" + "x" * 40)
        assert (await run_cli("balance", env=unknown_key)).returncode == 1
        no_key = cli_env(home, gateway.url)
        assert (await run_cli("env", env=no_key)).returncode == 1
        url = gateway.url
    refused = await run_cli("balance", "--json", env=cli_env(home, url, TOKENROUTE_API_KEY=raw))
    assert refused.returncode == 2 and url in refused.stderr  # the gateway is gone
    nowhere = cli_env(home, "http://127.0.0.1:9", TOKENROUTE_API_KEY=raw)
    assert (await run_cli("whoami", env=nowhere)).returncode == 2
    assert os.environ.get("HOME") != str(home)


async def test_a_denied_login_exits_3_and_says_what_to_do(
    nursery: trio.Nursery, tmp_path: Path, fast_login: Settings, fake_openai: FakeOpenAI
) -> None:
    async with (
        running_gateway(nursery, fast_login) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as browser,
    ):
        await person(gateway)
        env = cli_env(tmp_path / "home", gateway.url)
        process = await trio.lowlevel.open_process(
            [TOKENROUTE, "login"], env=env, stdout=-1, stderr=-1
        )
        assert process.stdout is not None and process.stderr is not None
        text = b""
        with trio.fail_after(15):
            while b"Waiting for authorization..." not in text:
                text += await process.stdout.receive_some()
        lines = text.decode().splitlines()
        assert lines[0].startswith("Visit: " + gateway.url + "/device")
        code = lines[1].removeprefix("And enter code: ")
        await approve_in_browser(browser, code, decision="deny")
        with trio.fail_after(30):
            assert await process.wait() == 3
        error = (await process.stderr.receive_some()).decode()
        assert "denied" in error and "tokenroute login" in error
        assert not (tmp_path / "home" / ".tokenroute" / "credentials.json").exists()


async def answer_500(stream: trio.SocketStream) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some()
        if not chunk:
            return
        data += chunk
    body = b'{"error": {"message": "boom", "type": "server_error", "code": 500}}'
    await stream.send_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json"
                          b"\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
                          % (len(body), body))  # fmt: skip
    await stream.aclose()


async def test_a_server_error_exits_3(nursery: trio.Nursery, tmp_path: Path) -> None:
    from functools import partial

    listeners = await nursery.start(partial(trio.serve_tcp, answer_500, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    env = cli_env(tmp_path / "home", f"http://127.0.0.1:{port}", TOKENROUTE_API_KEY="sk-tr-x")
    done = await run_cli("balance", "--json", env=env)
    assert done.returncode == 3 and "boom" in done.stderr
    assert json.loads(done.stdout)["error"]["exit_code"] == 3
    nursery.cancel_scope.cancel()


async def test_env_and_help_start_without_the_gateway(tmp_path: Path) -> None:
    """`env` and `--help` import none of the server stack (they must start fast)."""
    import sys

    for args in (["env", "--key", "sk-tr-abc"], ["--help"]):
        done = await trio.to_thread.run_sync(lambda a=args: __import__("subprocess").run(
            [sys.executable, "-X", "importtime", "-m", "cli.main", *a],
            capture_output=True, text=True, timeout=60,
            env=clean_env(HOME=str(tmp_path))))  # fmt: skip
        assert done.returncode == 0, done.stderr[-500:]
        imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}
        heavy = {m for m in imported if m.split(".")[0] in ("proxy", "trio", "quart", "httpx2")}
        assert heavy == set(), sorted(heavy)[:10]
