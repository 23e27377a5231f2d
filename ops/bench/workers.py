#!/usr/bin/env python3
"""How `tokenroute serve --workers N` spreads load, and what it serves (loopback only).

  .venv/bin/python ops/bench/workers.py                       # w1 vs w2, 3 rounds, 8 s each
  .venv/bin/python ops/bench/workers.py --variants w1:1,w2:2 --rounds 3 --duration 8
  .venv/bin/python ops/bench/workers.py --variants w2:2,w2-alt:2:SOME_ENV=1   # A/B a patch
  .venv/bin/python ops/bench/workers.py --close               # a new connection per request
  .venv/bin/python ops/bench/workers.py --variants w2:2 --spread 4 --trials 25   # no load
  .venv/bin/python ops/bench/workers.py --checkout ../tr-pinned     # the gateway from a fixed commit

Starts ops/bench/fake_upstream.py and a temporary database with a funded key, then per
round and per variant (interleaved, order reversed on even rounds) a fresh gateway:
a 2 s warm-up (wrk -c16, discarded), then for each --concs C: wrk -t1 -cC -dD with
post.lua, while it samples (at mid-run) which process holds each established connection
to the port (`ss -tnp`), and reads before and after the run each worker's own request
counter (its metrics socket in the supervisor's run directory, found with `ss -xlp`)
and CPU time (/proc). Reports req/s, p50/p99, the split of connections and of requests
between the workers (the smaller share; 0.5 is even) and each worker's CPU seconds.
With --close every request comes on a new connection. With --spread N there is no
load: N keep-alive connections are opened at once on idle workers, --trials times a
round, and the report gives the smaller worker's count each time.
The machine's other load (cores busy outside this benchmark) and load average are recorded
with each run. --checkout DIR runs the gateway from another checkout (a `git worktree` at a
fixed commit, as compare.py does), so commits landing in this one during a run change nothing.
Writes ops/bench/out/workers-<timestamp>/{results.json,report.md} and the gateway logs.
A variant is NAME:WORKERS[:ENV=VALUE,...]. Every process is stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run_bench import (  # noqa: E402
    BENCH_LIMITS,
    MODEL,
    REPO,
    UPSTREAM_KEY,
    Proc,
    Sampler,
    _children_map,
    clean_env,
    cpu_s,
    ensure_wrk,
    free_port,
    git_commit,
    log,
    stop_all,
    tokenroute_cmd,
    wait_ready,
)

REQUESTS = re.compile(rb'^tokenroute_requests_total\{[^}]*status="200"[^}]*\} ([0-9.e+]+)$', re.M)


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (any of its threads: trio starts them from one)."""
    return sorted(_children_map().get(pid, []))


def worker_sockets(pids: list[int]) -> dict[int, str]:
    """pid -> its metrics socket path (`ss -xlp`: unix listeners and their owners)."""
    out = subprocess.run(["ss", "-xlpn"], capture_output=True, text=True, timeout=10).stdout
    found = {}
    for line in out.splitlines():
        m = re.search(r"(/\S+/metrics-\d+\.sock)\s.*pid=(\d+)", line)
        if m and int(m.group(2)) in pids:
            found[int(m.group(2))] = m.group(1)
    return found


def own_requests(path: str) -> float:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return sum(float(v) for v in REQUESTS.findall(data[16:]))  # after the length and the pid


def connections(port: int, pids: list[int]) -> dict[int, int]:
    """pid -> established connections it holds on `port` (server side)."""
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True, timeout=10
    ).stdout
    counts = dict.fromkeys(pids, 0)
    for m in re.finditer(r"pid=(\d+)", out):
        pid = int(m.group(1))
        if pid in counts:
            counts[pid] += 1
    return counts


def connect_burst(port: int, n: int) -> list[socket.socket]:
    """`n` keep-alive connections opened at once, each answered once (so it was accepted)."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]
    for s in socks:
        s.sendall(b"GET /healthz HTTP/1.1\r\nhost: bench\r\n\r\n")
    for s in socks:
        data = b""
        while b'"ok"' not in data:
            chunk = s.recv(4096)
            if not chunk:
                raise RuntimeError("a connection closed before its answer")
            data += chunk
    return socks


def wrk(wrk_bin: str, url: str, key: str, conc: int, duration: float, close: bool = False) -> dict[str, Any]:
    env = dict(os.environ, BENCH_KEY=key, BENCH_MODEL=MODEL, BENCH_STREAM="")
    cmd = [wrk_bin, "-t1", f"-c{conc}", f"-d{duration:g}s", "--timeout", "10s", "-s", str(HERE / "post.lua")]
    if close:  # a new connection for every request: how the workers share accepts under load
        cmd += ["-H", "Connection: close"]
    done = subprocess.run([*cmd, url + "/v1/chat/completions"], capture_output=True, text=True, env=env,
                          timeout=duration + 60)  # fmt: skip
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk said: {done.stdout}{done.stderr}")
    return json.loads(line[len("WRKJSON ") :])  # type: ignore[no-any-return]


class WorkersBench:
    def __init__(self, a: argparse.Namespace, out: Path, tmp: Path) -> None:
        self.a, self.out, self.tmp = a, out, tmp
        self.wrk = ensure_wrk()
        self.db = tmp / "bench.db"
        self.up_port, self.gw_port = free_port(), free_port()
        self.records: list[dict[str, Any]] = []
        self.key = ""
        self.cli, self.cli_env, self.repo = tokenroute_cmd(), {}, None
        if a.checkout:
            from compare import launcher

            self.repo = Path(a.checkout).resolve()
            self.cli, self.cli_env = launcher(self.repo)
        self.commit = git_commit(self.repo or REPO)

    def setup(self) -> None:
        cmd = [sys.executable, str(HERE / "fake_upstream.py"), "--port", str(self.up_port), "--max-seconds", "7200"]
        upstream = Proc("fake-upstream", cmd, dict(os.environ), self.out / "fake_upstream.log")
        wait_ready(upstream, f"http://127.0.0.1:{self.up_port}/health", 20)
        cli, db = self.cli, ["--db", str(self.db), "--json"]
        run = {"check": True, "env": clean_env() | self.cli_env, "capture_output": True, "text": True, "timeout": 60,
               "cwd": str(self.repo) if self.repo else None}  # fmt: skip
        subprocess.run([*cli, "admin", "create-user", "--email", "b@example.com", *db], **run)  # type: ignore[call-overload]
        made = subprocess.run(  # type: ignore[call-overload]
            [*cli, "admin", "create-key", "--email", "b@example.com", "--name", "b", "--credit", "1000000", *db], **run
        )
        key = json.loads(made.stdout.strip().splitlines()[-1])
        self.key = key["raw"]
        subprocess.run([*cli, "admin", "set-limits", "--key", key["id"], *BENCH_LIMITS, *db], **run)  # type: ignore[call-overload]

    def gateway(self, name: str, workers: int, extra: dict[str, str], rnd: int) -> Proc:
        env = clean_env() | self.cli_env | extra
        env.update(OPENAI_API_KEY=UPSTREAM_KEY, OPENAI_BASE_URL=f"http://127.0.0.1:{self.up_port}/v1",
                   TOKENROUTE_SHUTDOWN_GRACE="5")  # fmt: skip
        cmd = [*self.cli, "serve", "--db", str(self.db), "--port", str(self.gw_port), "--workers", str(workers)]
        log_path = self.out / f"gateway-{name}-r{rnd}.log"
        gw = Proc(f"gateway-{name}-r{rnd}", cmd, env, log_path, cwd=str(self.repo or self.tmp))
        wait_ready(gw, f"http://127.0.0.1:{self.gw_port}/healthz", 60)
        deadline = time.monotonic() + 30
        while workers > 1 and len(worker_sockets(children(gw.pid))) < workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: {workers} workers did not all start")
            time.sleep(0.1)
        return gw

    def measure(self, name: str, workers: int, extra: dict[str, str], rnd: int) -> None:
        gw = self.gateway(name, workers, extra, rnd)
        url = f"http://127.0.0.1:{self.gw_port}"
        try:
            wrk(self.wrk, url, self.key, 16, 2)  # warm-up
            pids = children(gw.pid) if workers > 1 else [gw.pid]
            sockets = worker_sockets(pids)
            for conc in self.a.concs:
                before = {p: own_requests(s) for p, s in sockets.items()}
                cpu0 = {p: cpu_s([p]) for p in pids}
                seen: dict[int, int] = {}

                def sample(pids: list[int] = pids, seen: dict[int, int] = seen) -> None:
                    time.sleep(self.a.duration / 2)
                    seen.update(connections(self.gw_port, pids))

                sampler = threading.Thread(target=sample)
                sampler.start()
                with Sampler(None, None) as machine:  # the cores busy outside this benchmark
                    result = wrk(self.wrk, url, self.key, conc, self.a.duration, self.a.close)
                sampler.join()
                served = {p: own_requests(s) - before[p] for p, s in sockets.items()}
                cpu = {p: round(cpu_s([p]) - cpu0[p], 2) for p in pids}
                rec = {"variant": name, "round": rnd, "conc": conc, "rps": result["rps"],
                       "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"],
                       "errors": result["socket_errors"] + result["non2xx"],
                       "connections": list(seen.values()), "requests": list(served.values()),
                       "cpu_s": list(cpu.values()), "other_cores": round(machine.others, 2),
                       "loadavg": os.getloadavg()[0]}  # fmt: skip
                self.records.append(rec)
                log(json.dumps(rec))
        finally:
            gw.stop()

    def spread(self, name: str, workers: int, extra: dict[str, str], rnd: int) -> None:
        """--spread N: N connections opened at once on idle workers, --trials times."""
        gw = self.gateway(name, workers, extra, rnd)
        try:
            pids = children(gw.pid)
            for _ in range(self.a.trials):
                socks = connect_burst(self.gw_port, self.a.spread)
                split = connections(self.gw_port, pids)
                for s in socks:
                    s.close()
                self.records.append({"variant": name, "round": rnd, "spread": list(split.values())})
                time.sleep(0.3)  # the workers idle again
        finally:
            gw.stop()

    def spread_report(self) -> str:
        lines = [f"| variant | {self.a.spread} connections at once: the smaller side, over {self.a.trials} "
                 "trials a round | median | all on one worker |", "|---|---|---|---|"]  # fmt: skip
        for name, _, _ in self.a.variants:
            small = sorted(min(r["spread"]) for r in self.records if r["variant"] == name)
            lines.append(f"| {name} | {' '.join(map(str, small))} | {statistics.median(small):g} "
                         f"| {small.count(0)} of {len(small)} |")  # fmt: skip
        return "\n".join(lines) + "\n"

    def run(self) -> None:
        self.setup()
        if self.a.spread:
            for rnd in range(1, self.a.rounds + 1):
                order = self.a.variants if rnd % 2 else list(reversed(self.a.variants))
                for name, workers, extra in order:
                    self.spread(name, workers, extra, rnd)
            (self.out / "results.json").write_text(json.dumps(self.records, indent=1))
            (self.out / "report.md").write_text(report := self.spread_report())
            print(report)
            return
        for rnd in range(1, self.a.rounds + 1):
            order = self.a.variants if rnd % 2 else list(reversed(self.a.variants))
            for name, workers, extra in order:
                self.measure(name, workers, extra, rnd)
        (self.out / "results.json").write_text(json.dumps(self.records, indent=1))
        report = self.report()
        (self.out / "report.md").write_text(report)
        print(report)

    def report(self) -> str:
        def share(values: list[float]) -> float | None:
            total = sum(values)
            return round(min(values) / total, 2) if len(values) > 1 and total else None

        others = [r["other_cores"] for r in self.records if "other_cores" in r]
        loads = [r["loadavg"] for r in self.records if "loadavg" in r]
        lines = [f"Gateway {self.commit}{f' (from {self.repo})' if self.repo else ''} · nproc {os.cpu_count()} · "
                 f"other load {min(others, default=0):.2f}-{max(others, default=0):.2f} cores · load average "
                 f"{min(loads, default=0):.2f}-{max(loads, default=0):.2f}", "",
                 "| variant | c | req/s (median) | p50 / p99 ms | connections split | requests split (min share) "
                 "| CPU s per worker | errors |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for name, _, _ in self.a.variants:
            for conc in self.a.concs:
                recs = [r for r in self.records if r["variant"] == name and r["conc"] == conc]
                rps = statistics.median(r["rps"] for r in recs)
                p50 = statistics.median(r["p50_ms"] for r in recs)
                p99 = statistics.median(r["p99_ms"] for r in recs)
                conns = " · ".join("/".join(str(c) for c in r["connections"]) for r in recs)
                reqs = " · ".join(f"{share(r['requests'])}" for r in recs)
                cpus = " · ".join("/".join(str(c) for c in r["cpu_s"]) for r in recs)
                errors = sum(r["errors"] for r in recs)
                each = ", ".join(f"{r['rps']:.0f}" for r in recs)
                lines.append(f"| {name} | {conc} | {rps:.0f} ({each}) | {p50:.1f} / {p99:.1f} | {conns} | {reqs} "
                             f"| {cpus} | {errors} |")  # fmt: skip
        base = self.a.variants[0][0]
        if len(self.a.variants) > 1:
            lines += ["", f"Same-round ratios to {base} (req/s; p50 and p99 latency), each round, and their median:",
                      "", "| variant | c | req/s | median | p50 | p99 | other load (cores) |",
                      "|---|---|---|---|---|---|---|"]  # fmt: skip
            for name, _, _ in self.a.variants[1:]:
                for conc in self.a.concs:
                    pairs = [(r, b) for r in self.records if r["variant"] == name and r["conc"] == conc
                             for b in self.records if b["variant"] == base and b["conc"] == conc
                             and b["round"] == r["round"]]  # fmt: skip
                    ratio = {k: [r[k] / b[k] for r, b in pairs if b[k]] for k in ("rps", "p50_ms", "p99_ms")}
                    load = " · ".join(f"{b.get('other_cores', '?')}/{r.get('other_cores', '?')}" for r, b in pairs)
                    lines.append(
                        f"| {name} | {conc} | {', '.join(f'{x:.2f}' for x in ratio['rps'])} | "
                        f"{statistics.median(ratio['rps']):.2f} | {statistics.median(ratio['p50_ms']):.2f} | "
                        f"{statistics.median(ratio['p99_ms']):.2f} | {load} |"
                    )
        return "\n".join(lines) + "\n"


def variant(text: str) -> tuple[str, int, dict[str, str]]:
    name, workers, *rest = text.split(":")
    extra = dict(pair.split("=", 1) for pair in rest[0].split(",")) if rest else {}
    return name, int(workers), extra


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default="w1:1,w2:2", help="NAME:WORKERS[:ENV=VALUE,...], comma-separated")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--concs", default="16,64")
    p.add_argument("--close", action="store_true", help="a new connection per request (Connection: close)")
    p.add_argument("--spread", type=int, default=0, help="instead of load: open N connections at once on idle workers")
    p.add_argument("--trials", type=int, default=25, help="--spread bursts per round")
    p.add_argument("--checkout", help="run the gateway from this checkout (git worktree add DIR <commit>)")
    a = p.parse_args()
    a.variants = [variant(v) for v in re.split(r",(?=[^,:=]+:\d)", a.variants)]
    a.concs = [int(c) for c in a.concs.split(",")]
    out = HERE / "out" / time.strftime("workers-%Y%m%d-%H%M%S")
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="tokenroute-workers-bench-") as tmp:
        try:
            WorkersBench(a, out, Path(tmp)).run()
        finally:
            stop_all()


if __name__ == "__main__":
    main()
