#!/usr/bin/env python3
"""Soak: mixed traffic against one gateway for a set time. Does anything grow, or get lost?

  python ops/bench/soak.py --minutes 30          # from the repository root, the venv's python
  python ops/bench/soak.py --minutes 2 --quick   # a smoke run

Starts the fast fake upstream (`fake_upstream.py`), two faulty ones in this process (one
that answers 500, behind a fallback route, and one whose streams break after three
chunks), and `tokenroute serve` on a temporary database with JSON logs. Eight keys then
send, from `--concurrency` workers, a mix of non-streaming requests, streams read to the
end, streams the client abandons after two chunks, requests whose first upstream fails
(served by the fallback), streams that break mid-way, and bad requests (400, no usage).
Every `--interval` seconds it samples the gateway's RSS and open files, the database's
size (with its WAL), the writer's queue (`/readyz`) and the counts so far. At the end it
stops the gateway gracefully, runs `tokenroute admin check` and compares the requests that
should have left a usage row with the rows there are. Writes
ops/bench/out/soak-<timestamp>/{report.md,samples.json,gateway.log}.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx2 as httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, for the fakes
from tests.fakes.openai_upstream import FakeOpenAI

from run_bench import (  # beside this script, not in a package
    BENCH_LIMITS,
    HERE,
    Proc,
    clean_env,
    ensure_tools_python,
    fd_count,
    free_port,
    log,
    rss_mb,
    stop_all,
    tokenroute_cmd,
    tree_pids,
    wait_ready,
)

KEYS = 8
MIX = {"plain": 45, "stream": 25, "abandon": 10, "fallback": 10, "broken": 5, "bad": 5}
# What each scenario should get: a broken stream starts (200, then an error event), or finds
# its only upstream cooling down after the breaks (503).
EXPECTED = {"bad": {400}, "broken": {200, 503}}
HI = [{"role": "user", "content": "Tell me something in twenty words."}]
CONFIG = """
[providers.flaky]
base_url = "{flaky}/v1"
api_key_env = "SOAK_UPSTREAM_KEY"
models = ["gpt-4o-mini"]

[providers.broken]
base_url = "{broken}/v1"
api_key_env = "SOAK_UPSTREAM_KEY"
models = ["gpt-4o-mini"]

[routes]
"flaky/gpt-4o-mini" = ["openai/gpt-4o-mini"]
"""


class Soak:
    def __init__(self, a: argparse.Namespace, out: Path, tmp: Path) -> None:
        self.a, self.out, self.tmp = a, out, tmp
        self.db = tmp / "soak.db"
        self.cli = tokenroute_cmd()
        self.keys: list[str] = []
        self.counts: Counter[str] = Counter()  # scenario/status -> requests
        self.metered = 0  # requests that must leave a usage row
        self.unexpected: Counter[str] = Counter()
        self.samples: list[dict[str, Any]] = []
        self.gw_url = f"http://127.0.0.1:{free_port()}"

    # ---- setup
    def admin(self, *args: str) -> dict[str, Any]:
        done = subprocess.run([*self.cli, "admin", *args, "--db", str(self.db), "--json"],
                              env=clean_env(), capture_output=True, text=True, timeout=60)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"admin {args[0]}: {done.stderr.strip()}")
        return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    def make_keys(self) -> None:
        self.admin("create-user", "--email", "soak@example.com")
        for i in range(KEYS):
            made = self.admin("create-key", "--email", "soak@example.com", "--name", f"soak{i}",
                              "--credit", "1000000")  # fmt: skip
            self.admin("set-limits", "--key", made["id"], *BENCH_LIMITS)
            self.keys.append(made["raw"])

    def start_gateway(self, flaky: str, broken: str) -> Proc:
        config = self.tmp / "tokenroute.toml"
        config.write_text(CONFIG.format(flaky=flaky, broken=broken))
        port = self.gw_url.rsplit(":", 1)[1]
        env = {**clean_env(), "OPENAI_API_KEY": "sk-soak", "OPENAI_BASE_URL": self.up_url + "/v1",
               "SOAK_UPSTREAM_KEY": "sk-soak", "TOKENROUTE_SHUTDOWN_GRACE": "10",
               "TOKENROUTE_LOG_FORMAT": "json"}  # fmt: skip
        cmd = [*self.cli, "serve", "--db", str(self.db), "--host", "127.0.0.1", "--port", port,
               "--config", str(config)]  # fmt: skip
        gw = Proc("gateway", cmd, env, self.out / "gateway.log", cwd=str(self.tmp))
        wait_ready(gw, self.gw_url + "/healthz", 60)
        return gw

    # ---- load
    async def one(self, http: httpx.AsyncClient, rng: random.Random) -> None:
        scenario = rng.choices(list(MIX), weights=list(MIX.values()))[0]
        key = rng.choice(self.keys)
        headers = {"authorization": f"Bearer {key}"}
        model = {"fallback": "flaky/gpt-4o-mini", "broken": "broken/gpt-4o-mini"}.get(scenario, "openai/gpt-4o-mini")
        body: dict[str, Any] = {"model": model, "messages": HI}
        if scenario == "bad":
            body = {"model": model, "messages": []}
        streamed = scenario in ("stream", "abandon", "broken")
        if streamed:
            body["stream"] = True
        try:
            async with http.stream("POST", "/v1/chat/completions", json=body,
                                   headers=headers) as response:  # fmt: skip
                chunks = 0
                async for _ in response.aiter_lines():
                    chunks += 1
                    if scenario == "abandon" and chunks >= 4:
                        break
                status = response.status_code
        except httpx.HTTPError as exc:
            self.unexpected[f"{scenario}: {type(exc).__name__}"] += 1
            return
        self.counts[f"{scenario} {status}"] += 1
        if scenario != "bad":
            self.metered += 1
        if status not in EXPECTED.get(scenario, {200}):
            self.unexpected[f"{scenario} {status}"] += 1

    async def worker(self, http: httpx.AsyncClient, seed: int, until: float) -> None:
        rng = random.Random(seed)
        while trio.current_time() < until:
            await self.one(http, rng)

    async def sampler(self, gw: Proc, started: float, until: float) -> None:
        async with httpx.AsyncClient(base_url=self.gw_url, timeout=10) as http:
            while True:
                pids = tree_pids(gw.pid)
                ready = (await http.get("/readyz")).json()
                size = sum(p.stat().st_size for p in self.tmp.glob("soak.db*") if p.is_file())
                sample = {
                    "t": round(trio.current_time() - started),
                    "rss_mb": round(rss_mb(pids), 1),
                    "fds": fd_count(pids),
                    "db_mb": round(size / 2**20, 2),
                    "queued_writes": ready.get("queued_writes"),
                    "requests": sum(self.counts.values()),
                    "unexpected": sum(self.unexpected.values()),
                }
                self.samples.append(sample)
                log(" ".join(f"{k}={v}" for k, v in sample.items()))
                if trio.current_time() >= until:
                    return
                await trio.sleep(min(self.a.interval, max(0.0, until - trio.current_time())))

    async def load(self, gw: Proc) -> None:
        started = trio.current_time()
        until = started + self.a.minutes * 60
        limits = httpx.Limits(max_connections=self.a.concurrency * 2)
        async with (
            httpx.AsyncClient(base_url=self.gw_url, timeout=60, limits=limits) as http,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(self.sampler, gw, started, until + 1)
            for i in range(self.a.concurrency):
                nursery.start_soon(self.worker, http, i, until)

    # ---- the end
    def verify(self) -> dict[str, Any]:
        check = subprocess.run([*self.cli, "admin", "check", "--db", str(self.db), "--json"],
                               env=clean_env(), capture_output=True, text=True, timeout=120)  # fmt: skip
        conn = sqlite3.connect(self.db)
        try:
            rows = conn.execute("SELECT count(*) FROM usage").fetchone()[0]
            by_status = dict(conn.execute("SELECT status, count(*) FROM usage GROUP BY 1"))
        finally:
            conn.close()
        return {
            "admin_check_exit": check.returncode,
            "admin_check": check.stdout.strip()[-400:],
            "usage_rows": rows,
            "metered_requests": self.metered,
            "rows_by_status": by_status,
        }


async def run_fakes(task_status: trio.TaskStatus[tuple[str, str]]) -> None:
    """The faulty upstreams, served from this process."""
    flaky = FakeOpenAI(status=500)
    broken = FakeOpenAI(fail_mid_stream_after=3, chunk_delay=0.005)
    async with trio.open_nursery() as nursery:
        await nursery.start(flaky.run)
        await nursery.start(broken.run)
        task_status.started((flaky.url, broken.url))


def report(soak: Soak, result: dict[str, Any]) -> str:
    lines = ["# Soak", "", f"{soak.a.minutes} min, {soak.a.concurrency} workers, {KEYS} keys, "
             f"mix {MIX}", "", "| t (s) | RSS MB | fds | DB MB | queued writes | requests | "
             "unexpected |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for s in soak.samples:
        lines.append(f"| {s['t']} | {s['rss_mb']} | {s['fds']} | {s['db_mb']} | "
                     f"{s['queued_writes']} | {s['requests']} | {s['unexpected']} |")  # fmt: skip
    lines += ["", "Requests by scenario and status: " + json.dumps(dict(sorted(soak.counts.items()))),
              "", "Unexpected: " + json.dumps(dict(soak.unexpected)), "",
              "End: " + json.dumps(result)]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--interval", type=float, default=30.0, help="seconds between samples")
    p.add_argument("--quick", action="store_true", help="sample every 10 s")
    a = p.parse_args()
    if a.quick:
        a.interval = 10.0
    out = HERE / "out" / time.strftime("soak-%Y%m%d-%H%M%S")
    out.mkdir(parents=True)
    tmp = Path(tempfile.mkdtemp(prefix="tokenroute-soak-"))
    soak = Soak(a, out, tmp)
    try:
        port = free_port()
        soak.up_url = f"http://127.0.0.1:{port}"
        upstream = Proc("fake-upstream", [ensure_tools_python(True), str(HERE / "fake_upstream.py"),
                        "--port", str(port), "--stream-delay", "0.005",
                        "--max-seconds", str(int(a.minutes * 60 + 600))],
                        clean_env(), out / "fake_upstream.log")  # fmt: skip
        wait_ready(upstream, soak.up_url + "/health", 20)
        soak.make_keys()

        async def go() -> None:
            async with trio.open_nursery() as nursery:
                flaky, broken = await nursery.start(run_fakes)
                gw = await trio.to_thread.run_sync(soak.start_gateway, flaky, broken)
                await soak.load(gw)
                await trio.sleep(2)  # the last usage rows reach the writer
                await trio.to_thread.run_sync(gw.stop, 60.0)
                nursery.cancel_scope.cancel()

        trio.run(go)
        result = soak.verify()
    finally:
        stop_all()
    text = report(soak, result)
    (out / "report.md").write_text(text)
    (out / "samples.json").write_text(json.dumps({"samples": soak.samples, "end": result}))
    print(text)
    ok = result["admin_check_exit"] == 0 and result["usage_rows"] == result["metered_requests"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
