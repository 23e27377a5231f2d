#!/usr/bin/env python3
"""Two gateways on PostgreSQL + Redis (B) against one gateway on SQLite (A), on one machine.

  .venv/bin/python ops/bench/scaleout.py                     # 3 rounds, c=1,16,64, 8 s each
  .venv/bin/python ops/bench/scaleout.py --rounds 1 --duration 2 --concs 16   # smoke run

Run from the repository root with the project's venv python: it imports tests/pg_cluster.py and
tests/redis_helpers.py to start a PostgreSQL cluster (Debian's binaries, `nobody` when run as
root) and a redis-server of its own, each on a free port in a temporary directory, and stops
them at the end. One ops/bench/fake_upstream.py serves both sides.

- A: one `tokenroute serve --workers 1` on a temporary SQLite file.
- B: two `tokenroute serve --workers 1`, each on its own port, both with
  TOKENROUTE_DATABASE_URL (one database) and TOKENROUTE_REDIS_URL (one redis-server).

Each side has its own user and a key made with the CLI (`--credit 1000`, limits raised with
`admin set-limits`). Per round and side (A then B in odd rounds, B then A in even ones) fresh
gateway processes, a 2 s warm-up (discarded), then for each --concs C a closed-loop wrk run with
post.lua (non-streaming) for --duration s. A gets one `wrk -t1 -cC`; B gets two wrk processes at
the same time, `-t1 -c(C/2)` each, one per gateway (no balancer): req/s is their sum, p50 the
request-weighted mean of the two p50s and p99 the larger p99 (wrk reports percentiles, not
histograms; both halves carry the same load). At c=1 B's single connection goes to one gateway,
the first in odd rounds and the second in even ones. During each run it reads the CPU time
(/proc) of the gateways, PostgreSQL (postmaster and backends), redis-server, the fake upstream
and wrk (this script's reaped children), and the machine's busy time (/proc/stat): the rest is
other load. Reports per side and C the median req/s, p50/p99, errors, CPU in cores per process
group and CPU ms per request, and the median of the same-round ratios B/A.
At the end it counts the usage rows each store holds against the answers wrk counted.
Writes ops/bench/out/scaleout-<timestamp>/{results.json,report.md} and the process logs.
Every process it starts is stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))  # tests.pg_cluster and tests.redis_helpers
from tests.pg_cluster import Cluster  # noqa: E402
from tests.redis_helpers import redis_server  # noqa: E402

from run_bench import (  # noqa: E402
    MODEL,
    UPSTREAM_KEY,
    Proc,
    clean_env,
    cpu_s,
    ensure_wrk,
    free_port,
    git_commit,
    log,
    machine_cpu,
    stop_all,
    tokenroute_cmd,
    tree_pids,
    wait_ready,
)

LIMITS = ["--rps", "100000", "--burst", "100000", "--max-streams", "10000"]
GROUPS = ("gateways", "postgres", "redis", "upstream", "wrk", "other")


def cpu_map(pids: list[int]) -> dict[int, float]:
    return {p: cpu_s([p]) for p in pids}


def wrk_cmd(wrk_bin: str, url: str, conc: int, duration: float) -> list[str]:
    return [wrk_bin, "-t1", f"-c{conc}", f"-d{duration:g}s", "--timeout", "10s", "-s", str(HERE / "post.lua"),
            url + "/v1/chat/completions"]  # fmt: skip


def wrk_result(p: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    out, err = p.communicate(timeout=timeout)
    line = next((ln for ln in out.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk said: {out}{err}")
    return json.loads(line[len("WRKJSON ") :])  # type: ignore[no-any-return]


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class Scaleout:
    def __init__(self, a: argparse.Namespace, out: Path, tmp: Path) -> None:
        self.a, self.out, self.tmp = a, out, tmp
        self.wrk = ensure_wrk()
        self.records: list[dict[str, Any]] = []
        self.keys: dict[str, str] = {}
        self.env: dict[str, dict[str, str]] = {}
        self.db = {"A": str(tmp / "a.db"), "B": str(tmp / "b-unused.db")}
        self.cluster: Cluster | None = None
        self.redis_pid: int | None = None
        self.upstream: Proc | None = None
        self.loads: list[tuple[float, float, float]] = []
        self.served = {"A": 0, "B": 0}  # 200s wrk counted, warm-ups included

    # ------------------------------------------------------------------ setup
    def start_upstream(self) -> None:
        port = free_port()
        cmd = [sys.executable, str(HERE / "fake_upstream.py"), "--port", str(port), "--max-seconds", "7200"]
        self.upstream = Proc("fake-upstream", cmd, dict(os.environ), self.out / "fake_upstream.log")
        wait_ready(self.upstream, f"http://127.0.0.1:{port}/health", 20)
        base = clean_env() | {"OPENAI_API_KEY": UPSTREAM_KEY, "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
                              "TOKENROUTE_SHUTDOWN_GRACE": "5"}  # fmt: skip
        self.env["A"] = dict(base)
        self.env["B"] = dict(base)

    def make_key(self, side: str) -> None:
        cli, db = tokenroute_cmd(), ["--db", self.db[side], "--json"]
        run = {"check": True, "env": self.env[side], "capture_output": True, "text": True, "timeout": 60}
        email = f"{side.lower()}@example.com"
        subprocess.run([*cli, "admin", "create-user", "--email", email, *db], **run)  # type: ignore[call-overload]
        made = subprocess.run(  # type: ignore[call-overload]
            [*cli, "admin", "create-key", "--email", email, "--name", side, "--credit", "1000", *db], **run
        )
        key = json.loads(made.stdout.strip().splitlines()[-1])
        self.keys[side] = key["raw"]
        subprocess.run([*cli, "admin", "set-limits", "--key", key["id"], *LIMITS, *db], **run)  # type: ignore[call-overload]

    def gateways(self, side: str, rnd: int) -> list[Proc]:
        procs = []
        for i in range(1 if side == "A" else 2):
            port = free_port()
            cmd = [*tokenroute_cmd(), "serve", "--db", self.db[side], "--port", str(port), "--workers", "1"]
            name = f"gateway-{side}{i + 1}-r{rnd}"
            gw = Proc(name, cmd, self.env[side], self.out / f"{name}.log", cwd=str(self.tmp))
            gw.port = port  # type: ignore[attr-defined]
            procs.append(gw)
        for gw in procs:
            wait_ready(gw, f"http://127.0.0.1:{gw.port}/healthz", 60)  # type: ignore[attr-defined]
        return procs

    # ------------------------------------------------------------------ load
    def split(self, side: str, conc: int, rnd: int, gws: list[Proc]) -> list[tuple[Proc, int]]:
        if side == "A":
            return [(gws[0], conc)]
        if conc == 1:
            return [(gws[(rnd - 1) % 2], 1)]
        return [(gws[0], conc // 2), (gws[1], conc - conc // 2)]

    def load(self, side: str, conc: int, rnd: int, gws: list[Proc], duration: float) -> dict[str, Any]:
        pg = self.cluster.process.pid if side == "B" and self.cluster and self.cluster.process else None
        roots = {
            "gateways": [g.pid for g in gws],
            "postgres": [pg] if pg else [],
            "redis": [self.redis_pid] if side == "B" and self.redis_pid else [],
            "upstream": [self.upstream.pid] if self.upstream else [],
        }
        groups = {g: [p for root in r for p in tree_pids(root)] for g, r in roots.items()}
        before = {g: cpu_map(pids) for g, pids in groups.items()}
        busy0, _ = machine_cpu()
        wrk0, t0 = children_cpu(), time.monotonic()
        env = dict(os.environ, BENCH_MODEL=MODEL, BENCH_STREAM="", BENCH_KEY=self.keys[side])
        procs = [
            subprocess.Popen(wrk_cmd(self.wrk, f"http://127.0.0.1:{gw.port}", c, duration),  # type: ignore[attr-defined]
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for gw, c in self.split(side, conc, rnd, gws)
        ]  # fmt: skip
        results = [wrk_result(p, duration + 60) for p in procs]
        wall = time.monotonic() - t0
        wrk_cpu = children_cpu() - wrk0
        busy1, _ = machine_cpu()
        self.loads.append(os.getloadavg())
        cpu = {}
        for g, pids in groups.items():  # processes started during the run count from zero
            pids_now = set(pids) | {p for root in roots[g] for p in tree_pids(root)}
            cpu[g] = sum(cpu_s([p]) - before[g].get(p, 0.0) for p in pids_now)
        cpu["wrk"] = wrk_cpu
        clk = os.sysconf("SC_CLK_TCK")
        cpu["other"] = max(0.0, (busy1 - busy0) / clk - sum(cpu.values()))
        requests = sum(r["requests"] for r in results)
        p50 = sum(r["p50_ms"] * r["requests"] for r in results) / requests if requests else None
        return {
            "side": side, "round": rnd, "conc": conc, "wall_s": round(wall, 2),
            "rps": round(sum(r["rps"] for r in results), 1), "requests": requests,
            "p50_ms": round(p50, 2) if p50 is not None else None,
            "p99_ms": max(r["p99_ms"] for r in results),
            "errors": sum(r["socket_errors"] + r["non2xx"] for r in results),
            "per_wrk": [{k: r[k] for k in ("rps", "requests", "p50_ms", "p99_ms", "non2xx", "socket_errors")}
                        for r in results],
            "cores": {g: round(v / wall, 3) for g, v in cpu.items()},
            "cpu_ms_per_req": {g: round(1000 * v / requests, 3) if requests else None for g, v in cpu.items()},
            "loadavg": os.getloadavg(),
        }  # fmt: skip

    def measure(self, side: str, rnd: int) -> None:
        gws = self.gateways(side, rnd)
        try:
            warm = self.load(side, 16, rnd, gws, 2.0)  # warm-up, discarded
            self.served[side] += warm["requests"] - warm["errors"]
            for conc in self.a.concs:
                rec = self.load(side, conc, rnd, gws, self.a.duration)
                self.records.append(rec)
                self.served[side] += rec["requests"] - rec["errors"]
                log(json.dumps({k: rec[k] for k in ("side", "round", "conc", "rps", "p50_ms", "p99_ms", "errors",
                                                    "cores")}))  # fmt: skip
                dead = [g.name for g in gws if not g.alive()]
                if dead:
                    raise RuntimeError(f"gateway exited under load: {dead}")
        finally:
            for gw in gws:
                gw.stop()

    def run(self) -> dict[str, Any]:
        meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "commit": git_commit(), "argv": sys.argv,
                "nproc": os.cpu_count(), "cpu_model": cpu_model(), "loadavg_start": os.getloadavg(),
                "rounds": self.a.rounds, "duration_s": self.a.duration, "concs": self.a.concs}  # fmt: skip
        self.start_upstream()
        self.cluster = Cluster().start()
        try:
            log(f"PostgreSQL on port {self.cluster.port} (pid {self.cluster.process.pid})")  # type: ignore[union-attr]
            db_url = self.cluster.create_database()
            with redis_server(self.tmp / "redis") as redis_url:
                port = int(redis_url.rsplit(":", 1)[1])
                self.redis_pid = redis_pid(port)
                log(f"redis-server on port {port} (pid {self.redis_pid})")
                self.env["B"] |= {"TOKENROUTE_DATABASE_URL": db_url, "TOKENROUTE_REDIS_URL": redis_url}
                meta["versions"] = versions(self.cluster)
                for side in ("A", "B"):
                    self.make_key(side)
                for rnd in range(1, self.a.rounds + 1):
                    for side in ("A", "B") if rnd % 2 else ("B", "A"):
                        self.measure(side, rnd)
                # every gateway stopped gracefully: each answered request left its usage row
                meta["usage_rows"] = {"A": usage_rows(self.db["A"]), "B": usage_rows(db_url)}
                meta["ok_counted_by_wrk"] = dict(self.served)
        finally:
            self.cluster.stop()
        meta["loadavg_end"] = os.getloadavg()
        meta["loadavg_1min_range"] = [min(x[0] for x in self.loads), max(x[0] for x in self.loads)]
        return meta

    # ------------------------------------------------------------------ report
    def report(self, meta: dict[str, Any]) -> str:
        def med(side: str, conc: int, get: Any) -> float:
            return statistics.median(get(r) for r in self.records if r["side"] == side and r["conc"] == conc)

        def ratio(conc: int, get: Any) -> tuple[float, list[float]]:
            same = []
            for rnd in range(1, self.a.rounds + 1):
                a = next(r for r in self.records if r["side"] == "A" and r["conc"] == conc and r["round"] == rnd)
                b = next(r for r in self.records if r["side"] == "B" and r["conc"] == conc and r["round"] == rnd)
                same.append(get(b) / get(a))
            return statistics.median(same), same

        lines = [
            f"scaleout: {meta['date']}, commit {meta['commit']}, nproc {meta['nproc']} ({meta['cpu_model']}), "
            f"{self.a.rounds} rounds × {self.a.duration:g} s, load average (1 min) during the runs "
            f"{meta['loadavg_1min_range'][0]:.2f}-{meta['loadavg_1min_range'][1]:.2f}",
            "",
            "| c | A req/s | B req/s | B/A req/s (same round) | A p50 / p99 ms | B p50 / p99 ms | B/A p50 | B/A p99 "
            "| errors A / B |",
            "|---|---|---|---|---|---|---|---|---|",
        ]  # fmt: skip
        rows, ok = meta.get("usage_rows", {}), meta.get("ok_counted_by_wrk", {})
        note = ", ".join(f"{s}: {rows.get(s)} usage rows for {ok.get(s)} answers wrk counted" for s in "AB")
        lines[1:1] = [f"usage rows after the graceful stops (warm-ups included; wrk does not count the requests "
                      f"in flight when it stops): {note}", ""]  # fmt: skip
        for c in self.a.concs:
            rps, each = ratio(c, lambda r: r["rps"])
            p50, _ = ratio(c, lambda r: r["p50_ms"])
            p99, _ = ratio(c, lambda r: r["p99_ms"])
            err = [sum(r["errors"] for r in self.records if r["side"] == s and r["conc"] == c) for s in "AB"]
            lines.append(
                f"| {c} | {med('A', c, lambda r: r['rps']):.0f} | {med('B', c, lambda r: r['rps']):.0f} "
                f"| {rps:.2f} ({', '.join(f'{x:.2f}' for x in each)}) "
                f"| {med('A', c, lambda r: r['p50_ms']):.1f} / {med('A', c, lambda r: r['p99_ms']):.1f} "
                f"| {med('B', c, lambda r: r['p50_ms']):.1f} / {med('B', c, lambda r: r['p99_ms']):.1f} "
                f"| {p50:.2f} | {p99:.2f} | {err[0]} / {err[1]} |"
            )
        lines += ["", "CPU during the runs, medians over rounds: cores (ms of CPU per request)", "",
                  "| side | c | " + " | ".join(GROUPS) + " |", "|---|---|" + "---|" * len(GROUPS)]  # fmt: skip
        for c in self.a.concs:
            for s in "AB":
                cells = [
                    f"{med(s, c, lambda r, g=g: r['cores'][g]):.2f} "
                    f"({med(s, c, lambda r, g=g: r['cpu_ms_per_req'][g] or 0):.2f})"
                    for g in GROUPS
                ]
                lines.append(f"| {s} | {c} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def usage_rows(db: str) -> int:
    from proxy.store import open_database

    conn = open_database(db)  # the SQLite file, or the PostgreSQL URL
    try:
        return int(conn.execute("SELECT count(*) FROM usage").fetchone()[0])
    finally:
        conn.close()


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "?"


def redis_pid(port: int) -> int | None:
    out = subprocess.run(["ss", "-tlpnH", f"( sport = :{port} )"], capture_output=True, text=True, timeout=10).stdout
    for part in out.split("pid=")[1:]:
        return int(part.split(",")[0])
    return None


def versions(cluster: Cluster) -> dict[str, str]:
    import psycopg

    found = {"python": sys.version.split()[0]}
    with contextlib.suppress(Exception), psycopg.connect(cluster.url()) as conn:
        found["postgresql"] = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    with contextlib.suppress(Exception):
        found["redis"] = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.strip()
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--concs", default="1,16,64")
    a = p.parse_args()
    a.concs = [int(c) for c in a.concs.split(",")]
    out = HERE / "out" / time.strftime("scaleout-%Y%m%d-%H%M%S")
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="tokenroute-scaleout-") as tmp:
        bench = Scaleout(a, out, Path(tmp))
        try:
            meta = bench.run()
        finally:
            stop_all()
            (out / "results.json").write_text(json.dumps({"records": bench.records}, indent=1))
        report = bench.report(meta)
        (out / "results.json").write_text(json.dumps({"meta": meta, "records": bench.records}, indent=1))
        (out / "report.md").write_text(report)
        print(report)


if __name__ == "__main__":
    main()
