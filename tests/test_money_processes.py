"""Several gateway processes on one database file spend the same keys: never more than a key
holds, every charge in the ledger, and a killed process's leases come back.

Two deployments, real `tokenroute serve` subprocesses beside one fake upstream: two
gateways on the one file, requests alternating between them as a load balancer would
spread them ("gateways"), and one gateway with two workers behind its supervisor
("workers"), where the kernel spreads the connections; and two gateways on PostgreSQL with
their limits in Redis ("postgres-redis"), as on two machines behind a load balancer.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import httpx2 as httpx
import trio

from tests.cli_helpers import run_cli
from tests.deployments import KINDS, RECLAIM_AFTER, deployed, one, query, setup, stop
from tests.fakes.openai_upstream import FakeOpenAI
from tests.process_helpers import create_key, wait_until

MODEL = "openai/gpt-4o-mini"  # 150 / 600 nano-USD a token; the fake: 11 in, 7 out
COST = 11 * 150 + 7 * 600


async def books_ok(db: str, env: dict[str, str]) -> dict[str, object]:
    done = await run_cli("admin", "check", "--db", db, "--json", env=env)
    report: dict[str, object] = json.loads(done.stdout)
    assert report["ok"] and report["problems"] == [], report
    return report


@KINDS
async def test_two_processes_never_spend_more_than_the_key_holds(
    tmp_path: Path, fake_openai: FakeOpenAI, kind: str, place: dict[str, str]
) -> None:
    (db, env), log = setup(tmp_path, fake_openai, place), tmp_path / "log"
    key = await create_key(db, env, credit=f"{20 * COST / 1e9:.9f}")  # pays for 20
    limits = ("--rps", "10000", "--burst", "1000")
    assert (await run_cli("admin", "set-limits", "--key", key["id"], *limits, "--db", db,
                          env=env)).returncode == 0  # fmt: skip
    fake_openai.chunk_delay = 0.0
    outcomes: list[int] = []

    async def request(client: httpx.AsyncClient, url: str) -> None:
        reply = await client.post(
            url + "/v1/chat/completions",
            headers={"authorization": f"Bearer {key['raw']}"},
            json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                  "max_tokens": 7},
        )  # fmt: skip
        assert reply.status_code in (200, 402), reply.text
        outcomes.append(reply.status_code)

    async with deployed(kind, db, env, log) as deployment:
        pool = httpx.Limits(max_connections=400)
        async with (
            httpx.AsyncClient(timeout=30, limits=pool) as client,
            trio.open_nursery() as nursery,
        ):
            for i in range(200):
                nursery.start_soon(request, client, deployment.url(i))
        ok = outcomes.count(200)
        print(f"{ok} of 200 succeeded on a key that pays for 20")
        assert ok + outcomes.count(402) == 200 and 5 <= ok <= 20, outcomes
        await wait_until(lambda: one(db, "SELECT count(*) FROM usage") == ok, 10)
        await stop(deployment)

    costs = query(db, "SELECT cost, unbilled, status FROM usage")
    assert costs == [(COST, 0, 200)] * ok  # successes == charges, nothing unbilled
    balance = one(db, "SELECT balance FROM api_keys WHERE id = ?", key["id"])
    assert balance == 20 * COST - ok * COST >= 0
    assert balance == one(db, "SELECT sum(amount) FROM ledger WHERE key_id = ?", key["id"])
    assert len(fake_openai.requests) == ok  # a refused request never reached the upstream
    # Both processes returned their leases when they stopped.
    assert one(db, "SELECT leased FROM api_keys WHERE id = ?", key["id"]) == 0
    assert query(db, "SELECT * FROM leases") == [] and query(db, "SELECT * FROM owners") == []
    await books_ok(db, env)


@KINDS
async def test_a_killed_process_leaks_no_lease_past_its_reclaim_time(
    tmp_path: Path, fake_openai: FakeOpenAI, kind: str, place: dict[str, str]
) -> None:
    """SIGKILL one gateway (a live gateway's heartbeat reclaims it) or one worker (its
    supervisor reclaims it and starts another); nothing is lost either way."""
    (db, env), log = setup(tmp_path, fake_openai, place), tmp_path / "log"
    key = await create_key(db, env, credit="5")
    limits = ("--rps", "10000", "--burst", "1000", "--max-streams", "100")
    assert (await run_cli("admin", "set-limits", "--key", key["id"], *limits, "--db", db,
                          env=env)).returncode == 0  # fmt: skip
    fake_openai.chunk_delay = 0.2
    fake_openai.words = [f" w{i}" for i in range(100)]  # ~20 s: still running at the kill
    headers = {"authorization": f"Bearer {key['raw']}"}
    body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "a"}]}
    streaming: list[int] = []

    async def stream(url: str) -> None:
        try:
            async with (
                httpx.AsyncClient(timeout=60) as client,
                client.stream("POST", url + "/v1/chat/completions", json=body,
                              headers=headers) as reply,
            ):  # fmt: skip
                assert reply.status_code == 200
                async for _ in reply.aiter_lines():
                    if not streaming or streaming[-1] != id(reply):
                        streaming.append(id(reply))
        except httpx.TransportError:
            pass  # the process serving it was killed

    async with deployed(kind, db, env, log) as deployment:
        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(stream, deployment.url(i))
            await wait_until(lambda: len(set(streaming)) >= 20, 20)
            owners = dict(query(db, "SELECT pid, id FROM owners"))
            assert len(owners) == 2
            # The one with streams (in "workers", the kernel may have put them all on one)
            pid = next(p for p in owners if one(
                db, "SELECT count(*) FROM holds WHERE owner = ?", owners[p]))  # fmt: skip
            doomed_lease = one(db, "SELECT coalesce(sum(amount), 0) FROM leases WHERE owner = ?",
                               owners[pid])  # fmt: skip
            assert doomed_lease > 0
            os.kill(pid, signal.SIGKILL)  # nothing of it gets to run
            # The survivor's heartbeat takes the silent process for dead and reclaims.
            gone = owners[pid]
            await wait_until(
                lambda: not query(db, "SELECT 1 FROM owners WHERE id = ?", gone),
                RECLAIM_AFTER * 2 + 5,
            )
            assert query(db, "SELECT 1 FROM leases WHERE owner = ?", owners[pid]) == []
            assert query(db, "SELECT 1 FROM holds WHERE owner = ?", owners[pid]) == []
            leased = one(db, "SELECT leased FROM api_keys WHERE id = ?", key["id"])
            assert leased == one(db, "SELECT coalesce(sum(amount), 0) FROM leases")
            await books_ok(db, env)
            nursery.cancel_scope.cancel()
        # The survivor goes on spending the key: what the dead process held is spendable.
        fake_openai.chunk_delay, fake_openai.words = 0.0, ["ok"]
        live = [u for u, p in zip(deployment.urls, deployment.processes, strict=True)
                if p.pid != pid or kind == "workers"]  # fmt: skip
        async with httpx.AsyncClient(timeout=30) as client:
            for url in live * 2:
                plain = {**body, "stream": False}
                reply = await client.post(url + "/v1/chat/completions", headers=headers, json=plain)
                assert reply.status_code == 200
        if kind != "workers":
            deployment.processes = [p for p in deployment.processes if p.pid != pid]
        await stop(deployment)
    assert "reclaimed $" in log.read_text() or "released" in log.read_text()
    assert one(db, "SELECT leased FROM api_keys WHERE id = ?", key["id"]) == 0
    balance = one(db, "SELECT balance FROM api_keys WHERE id = ?", key["id"])
    charged = one(db, "SELECT coalesce(sum(cost), 0) FROM usage WHERE key_id = ?", key["id"])
    assert balance == 5 * 10**9 - charged
    await books_ok(db, env)
