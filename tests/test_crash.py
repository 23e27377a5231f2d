"""SIGKILL mid-stream: on restart the books still balance and no hold is left hanging."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2 as httpx
import trio

from proxy.store import connect
from tests.cli_helpers import run_cli
from tests.fakes.openai_upstream import FakeOpenAI
from tests.process_helpers import create_key, process_env, serving, wait_until

STREAMS = 50


async def hold_stream(url: str, raw: str, started: list[int]) -> None:
    body = {
        "model": "openai/gpt-4o-mini",
        "stream": True,
        "messages": [{"role": "user", "content": "a long answer please"}],
    }
    try:
        async with (
            httpx.AsyncClient(timeout=30) as client,
            client.stream(
                "POST",
                url + "/v1/chat/completions",
                json=body,
                headers={"authorization": f"Bearer {raw}"},
            ) as response,
        ):
            assert response.status_code == 200
            async for _ in response.aiter_lines():
                if not started or started[-1] != id(response):
                    started.append(id(response))
    except httpx.TransportError:
        pass  # the server was killed under us: expected


def count(db: str, sql: str) -> int:
    conn = connect(db)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


async def check(db: str, env: dict[str, str]) -> dict[str, object]:
    done = await run_cli("admin", "check", "--db", db, "--json", env=env)
    report = json.loads(done.stdout)
    assert done.returncode == (0 if report["ok"] else 1), done.stderr
    return report  # type: ignore[no-any-return]


async def test_sigkill_with_streams_in_flight_leaves_the_books_whole(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    db, env, log = str(tmp_path / "gw.db"), process_env(fake_openai), tmp_path / "gateway.log"
    key = await create_key(db, env, credit="5")
    limits = ("--rps", "1000", "--burst", "1000", "--max-streams", "100")
    done = await run_cli("admin", "set-limits", "--key", key["id"], *limits, "--db", db, env=env)
    assert done.returncode == 0, done.stderr
    fake_openai.chunk_delay = 0.2
    fake_openai.words = [f" w{i}" for i in range(200)]  # ~40 s: still running at the kill

    async with serving(db, env, log) as (process, url):
        async with httpx.AsyncClient() as client:  # two finished requests, billed before the kill
            for _ in range(2):
                reply = await client.post(
                    url + "/v1/chat/completions",
                    headers={"authorization": f"Bearer {key['raw']}"},
                    json={
                        "model": "openai/gpt-4o-mini",
                        "messages": [{"role": "user", "content": "a"}],
                    },
                )
                assert reply.status_code == 200
        started: list[int] = []
        async with trio.open_nursery() as nursery:
            for _ in range(STREAMS):
                nursery.start_soon(hold_stream, url, key["raw"], started)
            await wait_until(
                lambda: (
                    len(set(started)) >= STREAMS
                    and count(db, "SELECT count(*) FROM holds") >= STREAMS
                ),
                20,
            )
            process.kill()  # SIGKILL: nothing gets to run
            await process.wait()
            nursery.cancel_scope.cancel()

    assert count(db, "SELECT count(*) FROM holds") == STREAMS  # left by the dead process
    assert count(db, "SELECT count(*) FROM usage") == 2

    async with serving(db, env, log) as (_, url):
        report = await check(db, env)
        assert report["ok"] and report["problems"] == [] and report["open_holds"] == 0
        async with httpx.AsyncClient() as client:  # and the key spends normally afterwards
            fake_openai.words = ["ok"]
            reply = await client.post(
                url + "/v1/chat/completions",
                headers={"authorization": f"Bearer {key['raw']}"},
                json={
                    "model": "openai/gpt-4o-mini",
                    "messages": [{"role": "user", "content": "a"}],
                },
            )
            assert reply.status_code == 200
        await wait_until(lambda: count(db, "SELECT count(*) FROM usage") >= 3, 5)
    assert f"released {STREAMS} holds" in log.read_text()
    report = await check(db, env)
    assert report["ok"] and report["open_holds"] == 0
    assert count(db, "SELECT count(*) FROM ledger WHERE kind = 'usage'") == 3
    assert count(db, "SELECT balance FROM api_keys") == count(db, "SELECT sum(amount) FROM ledger")


async def test_check_names_rows_that_disagree(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    db, env = str(tmp_path / "gw.db"), process_env(fake_openai)
    key = await create_key(db, env, credit="5")
    assert (await check(db, env))["ok"]
    conn = connect(db)
    conn.execute("UPDATE api_keys SET balance = balance + 1 WHERE id = ?", (key["id"],))
    conn.execute(
        "INSERT INTO usage (request_id, key_id, requested_model, cost, status, created_at) "
        "VALUES ('req_lost', ?, 'openai/gpt-4o-mini', 42, 200, 0)",
        (key["id"],),
    )
    conn.close()
    report = await check(db, env)
    assert not report["ok"]
    problems = "\n".join(report["problems"])  # type: ignore[arg-type]
    assert f"key {key['id']}: balance 5000000001 but its ledger sums to 5000000000" in problems
    assert "request req_lost): cost 42 but no debit" in problems
