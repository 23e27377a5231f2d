"""A key's rate limit and stream cap hold for the key as a whole, across real processes:
two workers behind one supervisor (the kernel picks the worker of each connection), and
two gateways on PostgreSQL with Redis (requests alternate between them)."""

from __future__ import annotations

import math
from pathlib import Path

import httpx2 as httpx
import pytest
import trio

from tests.cli_helpers import run_cli
from tests.deployments import deployed, setup, stop
from tests.fakes.openai_upstream import FakeOpenAI
from tests.process_helpers import create_key
from tests.test_workers import served_by

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
KINDS = pytest.mark.parametrize(
    "kind", ["workers", pytest.param("postgres-redis", marks=pytest.mark.scaleout)]
)


async def post(url: str, raw: str, **extra: object) -> httpx.Response:
    """On a new connection each time: behind the supervisor, any worker may take it."""
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(url + "/v1/chat/completions", json={**CHAT, **extra},
                                 headers={"authorization": f"Bearer {raw}"})  # fmt: skip


@KINDS
async def test_a_keys_rate_and_stream_cap_hold_across_processes(
    tmp_path: Path, fake_openai: FakeOpenAI, kind: str, place: dict[str, str]
) -> None:
    (db, env), log = setup(tmp_path, fake_openai, place), tmp_path / "log"
    env["TOKENROUTE_LOG_FORMAT"] = "json"  # which worker served what
    key = await create_key(db, env, credit="5")
    limits = ("--rps", "2", "--burst", "6", "--max-streams", "1")
    done = await run_cli("admin", "set-limits", "--key", key["id"], *limits, "--db", db, env=env)
    assert done.returncode == 0, done.stderr
    async with deployed(kind, db, env, log) as deployment:
        began, codes = trio.current_time(), []
        for i in range(40):
            codes.append((await post(deployment.url(i), key["raw"])).status_code)
        elapsed = trio.current_time() - began
        assert set(codes) <= {200, 429}
        # One count per process would admit 6 on each, and 2 a second on each.
        allowed = 6 + math.ceil(elapsed * 2)
        assert 6 <= codes.count(200) <= allowed * 1.1, (codes.count(200), elapsed)
        if kind == "workers":
            assert len(served_by(log, "/v1/chat/completions")) == 2  # both workers served

        # One stream open on one process: a second is refused on every process.
        fake_openai.chunk_delay = 0.2
        fake_openai.words = [f" w{i}" for i in range(30)]
        await trio.sleep(3.5)  # the bucket refills: 429s below are the stream cap's
        opened = trio.Event()

        async def hold() -> None:
            async with (
                httpx.AsyncClient(timeout=30) as client,
                client.stream("POST", deployment.url(0) + "/v1/chat/completions",
                              json={**CHAT, "stream": True},
                              headers={"authorization": f"Bearer {key['raw']}"}) as reply,
            ):  # fmt: skip
                assert reply.status_code == 200
                async for _ in reply.aiter_lines():
                    opened.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(hold)
            await opened.wait()
            for i in range(4):
                refused = await post(deployment.url(i), key["raw"], stream=True)
                assert refused.status_code == 429, refused.text
                assert "streams open" in refused.json()["error"]["message"]
            nursery.cancel_scope.cancel()
        await stop(deployment)
