"""A key changed beside running gateway processes (revoked, its limits changed) is seen by
every one of them within a second."""

from __future__ import annotations

from pathlib import Path

import httpx2 as httpx
import trio

from tests.cli_helpers import run_cli
from tests.fakes.openai_upstream import FakeOpenAI
from tests.process_helpers import create_key, process_env, serving

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def bearer(raw: str) -> dict[str, str]:
    return {"authorization": f"Bearer {raw}"}


async def seen_within(seconds: float, urls: list[str], raw: str, expect) -> None:  # type: ignore[no-untyped-def]
    """Poll every process until `expect(reply)` holds on each, failing after `seconds`."""
    async with httpx.AsyncClient(timeout=10) as client:
        with trio.fail_after(seconds):
            for url in urls:
                while True:
                    reply = await client.post(url + "/v1/chat/completions", json=CHAT,
                                              headers=bearer(raw))  # fmt: skip
                    if expect(reply):
                        break
                    await trio.sleep(0.02)


async def test_a_revocation_and_new_limits_reach_every_process_within_a_second(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    db, env, log = str(tmp_path / "gw.db"), process_env(fake_openai), tmp_path / "log"
    key = await create_key(db, env, credit="1")
    async with (
        serving(db, env, log, "--workers", "1") as (_, url_a),
        serving(db, env, log, "--workers", "1") as (_, url_b),
    ):
        urls = [url_a, url_b]
        await seen_within(5, urls, key["raw"], lambda r: r.status_code == 200)  # warm caches
        done = await run_cli("admin", "set-limits", "--key", key["id"], "--burst", "7",
                             "--rps", "50", "--db", db, env=env)  # fmt: skip
        assert done.returncode == 0, done.stderr
        await seen_within(
            1.0, urls, key["raw"], lambda r: r.headers["x-ratelimit-limit-requests"] == "7"
        )
        done = await run_cli("admin", "revoke-key", key["id"], "--db", db, env=env)
        assert done.returncode == 0, done.stderr
        await seen_within(1.0, urls, key["raw"], lambda r: r.status_code == 401)
        async with httpx.AsyncClient() as client:  # and it stays refused everywhere
            for url in urls * 3:
                reply = await client.post(url + "/v1/chat/completions", json=CHAT,
                                          headers=bearer(key["raw"]))  # fmt: skip
                assert reply.status_code == 401
                assert "revoked" in reply.json()["error"]["message"]
