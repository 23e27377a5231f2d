#!/usr/bin/env python3
"""Benchmark the gateway against the fake upstream it relays to (loopback only).

  python ops/bench/run_bench.py            # from the repository root, with the project's venv python
  python ops/bench/run_bench.py --quick    # smoke run: 1 round, 3 s, burst 200, hold 500
  python ops/bench/run_bench.py --workers 2 --concs '' --hold 10000   # burst and hold, 2 workers

Starts ops/bench/fake_upstream.py and `tokenroute serve --workers N` (found next to this
python; --workers, default 1: one gateway process, as in the runs before workers existed;
2 = a supervisor and two workers on one shared socket) with a temporary database, a user
and a key with credit, then per round (a fresh gateway each round; the two targets
alternate within every scenario):

  preflight   1 JSON + 1 SSE request must succeed on both targets
  warmup      wrk -c16 for 3 s (discarded)
  json        wrk -t1 -cC -dDs with post.lua at each --concs (closed loop)
  stream      stream_client.py --closed C for D s at each --concs (streams/s, first chunk, total)
  burst       --burst N concurrent streams, one connection each

then, once, the hold test: for each N in --hold a fresh gateway relays N slow streams
(the fake upstream sends one chunk every --hold-interval s for --hold-seconds), opened at
--hold-rate per second, while the RSS of its process tree (supervisor and workers) and
its open files are sampled; the same N straight to the fake upstream is the client's own
baseline. The stream client is one process: its CPU (average and its busiest 2 s) is
reported beside the gateway's, to tell when the load generator is the bottleneck.
The open-files limit is raised for this process and everything it starts (to the hard
limit, and the hard limit to 65536 when allowed, e.g. as root).

Tables are medians over rounds; "added" latency and gateway/direct ratios are
computed within the same round, then the median is taken. Writes
ops/bench/out/<timestamp>/{results.json,report.md,*.log} and prints the report.
Every load step is bounded in time; all processes are stopped by PID at the end
(SIGTERM, wait, SIGKILL), also on Ctrl-C or an error.

Needs wrk (installed with apt-get when missing) and uses a small venv with uvloop
for the fake upstream and the stream client ($BENCH_TOOLS_VENV, default under the
system temp dir; falls back to this python without uvloop).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
MODEL = "openai/gpt-4o-mini"
UPSTREAM_KEY = "sk-bench-upstream"
CLK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
PROCS: list[Proc] = []
NOFILE = 65536  # open-files limit wanted for this process and what it starts


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------- /proc helpers
def _children_map() -> dict[int, list[int]]:
    m: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                s = f.read()
            ppid = int(s[s.rfind(b")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        m.setdefault(ppid, []).append(int(d))
    return m


def tree_pids(root: int | None) -> list[int]:
    if root is None:
        return []
    m = _children_map()
    out, stack, seen = [], [root], set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        if os.path.exists(f"/proc/{p}"):
            out.append(p)
        stack.extend(m.get(p, []))
    return out


def rss_mb(pids: list[int]) -> float:
    """Sum of VmRSS over the processes."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError):
            pass
    return total / 2**20


def cpu_s(pids: list[int]) -> float:
    """utime + stime of the processes, in seconds."""
    t = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                s = f.read()
            fields = s[s.rfind(b")") + 2 :].split()
            t += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            pass
    return t / CLK


def fd_count(pids: list[int]) -> int:
    n = 0
    for p in pids:
        with contextlib.suppress(OSError):
            n += len(os.listdir(f"/proc/{p}/fd"))
    return n


def machine_cpu() -> tuple[int, int]:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


class Sampler:
    """Samples the gateway tree's RSS (and optionally open files) every `every` s in a thread;
    over the whole block: CPU of the gateway and of the fake upstream, machine busy cores, and the
    cores used by processes outside this benchmark (busy minus this process tree and its reaped
    children such as wrk), a measure of noise on a shared machine."""

    def __init__(
        self, gw_pid: int | None, up_pid: int | None, every: float = 0.25, fds: bool = False, series: bool = False
    ) -> None:
        self.gw_pid, self.up_pid, self.every = gw_pid, up_pid, every
        self.fds, self.keep_series = fds, series
        self.peak_rss = 0.0
        self.peak_fds = 0
        self.peak_up_fds = 0
        self.proc_peak_fds: dict[int, int] = {}
        self.series: list[tuple[float, float, int, float | None]] = []
        self._stop = threading.Event()

    def __enter__(self) -> Sampler:
        self.gw = tree_pids(self.gw_pid)
        self.up = tree_pids(self.up_pid)
        self.cpu0, self.ucpu0 = cpu_s(self.gw), cpu_s(self.up)
        self.m0 = machine_cpu()
        self.mine = tree_pids(os.getpid())
        self.mine0 = cpu_s(self.mine) + _children_cpu()
        self.t0 = time.perf_counter()
        self._th = threading.Thread(target=self._run, daemon=True)
        self._th.start()
        return self

    def _run(self) -> None:
        n = 0
        last = (time.perf_counter(), cpu_s(self.gw))
        while not self._stop.is_set():
            if n % 8 == 0:
                self.gw = tree_pids(self.gw_pid) or self.gw
            if self.gw:
                r = rss_mb(self.gw)
                self.peak_rss = max(self.peak_rss, r)
                f = 0
                if self.fds:
                    for p in self.gw:
                        n_p = fd_count([p])
                        self.proc_peak_fds[p] = max(self.proc_peak_fds.get(p, 0), n_p)
                        f += n_p
                self.peak_fds = max(self.peak_fds, f)
                if self.fds and self.up:
                    self.peak_up_fds = max(self.peak_up_fds, fd_count(self.up))
                if self.keep_series:
                    now = (time.perf_counter(), cpu_s(self.gw))
                    cores = (now[1] - last[1]) / (now[0] - last[0]) if now[0] > last[0] else None
                    last = now
                    self.series.append((round(time.time(), 2), round(r, 1), f, _r(cores, 2)))
            n += 1
            self._stop.wait(self.every)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._th.join()
        self.wall = time.perf_counter() - self.t0
        self.gw_cores = (cpu_s(self.gw) - self.cpu0) / self.wall if self.gw else None
        self.up_cores = (cpu_s(self.up) - self.ucpu0) / self.wall if self.up else None
        b1, t1 = machine_cpu()
        self.busy = (b1 - self.m0[0]) / max(1, t1 - self.m0[1]) * (os.cpu_count() or 1)
        ours = (cpu_s(self.mine) + _children_cpu() - self.mine0) / self.wall
        self.others = max(0.0, self.busy - ours)

    def metrics(self, gateway: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "upstream_cpu_cores": _r(self.up_cores, 2),
            "machine_busy_cores": _r(self.busy, 2),
            "other_cores": _r(self.others, 2),
        }
        if gateway:
            out["gw_cpu_cores"] = _r(self.gw_cores, 2)
            out["gw_peak_rss_mb"] = _r(self.peak_rss, 1)
            if self.fds:
                out["gw_peak_fds"] = self.peak_fds
                out["upstream_peak_fds"] = self.peak_up_fds
        return out


def _children_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _r(v: float | None, nd: int) -> float | None:
    return None if v is None else round(v, nd)


def _peak_cores(progress: Path, window: float = 2.0) -> float | None:
    """The stream client's busiest `window` s of CPU, from its progress lines (`cpu_s`)."""
    points = []
    with contextlib.suppress(OSError):
        for line in progress.read_text().splitlines():
            with contextlib.suppress(ValueError):
                d = json.loads(line)
                if "cpu_s" in d:
                    points.append((d["elapsed_s"], d["cpu_s"]))
    best = None
    j = 0
    for i in range(len(points)):
        while j < i and points[i][0] - points[j][0] > window:
            j += 1
        if i > j and points[i][0] - points[j][0] >= window / 2:
            c = (points[i][1] - points[j][1]) / (points[i][0] - points[j][0])
            best = c if best is None else max(best, c)
    return _r(best, 2)


# --------------------------------------------------------------------- processes
class Proc:
    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_path: Path, cwd: str | None = None) -> None:
        self.name, self.log_path = name, log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.p = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid = self.p.pid
        PROCS.append(self)

    def alive(self) -> bool:
        return self.p.poll() is None

    def stop(self, wait: float = 10.0) -> None:
        """SIGTERM to the process alone (a `serve --workers N` supervisor forwards it to its
        workers: a second SIGTERM of our own would end a worker at once, undrained), then
        SIGKILL to whatever of its tree is still running after `wait` s."""
        if self not in PROCS:
            return
        PROCS.remove(self)
        others = [p for p in tree_pids(self.pid) if p != self.pid]
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.pid, signal.SIGTERM)
        try:
            self.p.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            log(f"{self.name} (pid {self.pid}) still running {wait:g} s after SIGTERM: SIGKILL")
        t0 = time.time()
        while any(_running(p) for p in others) and time.time() - t0 < 3:
            time.sleep(0.1)
        left = [p for p in others if _running(p)]
        if left or self.p.poll() is None:
            if left:
                log(f"{self.name}: SIGKILL to {left} still running after its SIGTERM")
            for p in [self.pid, *left]:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(p, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.p.wait(timeout=wait)
        self._log.close()


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            s = f.read()
        return s[s.rfind(b")") + 2 :].split()[0] != b"Z"
    except OSError:
        return False


def stop_all() -> None:
    for p in list(reversed(PROCS)):
        p.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(url: str, key: str | None = None, body: bytes | None = None, timeout: float = 5.0) -> tuple[int | None, bytes]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    try:
        req = urllib.request.Request(url, data=body, headers=headers)
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except Exception as e:
        return None, str(e).encode()


def wait_ready(proc: Proc, url: str, limit: float = 60.0) -> None:
    t0 = time.time()
    while time.time() - t0 < limit:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with rc={proc.p.returncode}; see {proc.log_path}")
        st, _ = http(url, timeout=1.0)
        if st == 200:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name} not ready after {limit:g} s; see {proc.log_path}")


# --------------------------------------------------------------------- tools
def ensure_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk:
        return wrk
    log("wrk not found: apt-get install -y wrk")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL, timeout=600)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "wrk"], check=True, env=env, stdout=subprocess.DEVNULL, timeout=600
    )
    wrk = shutil.which("wrk")
    if not wrk:
        raise RuntimeError("wrk is still missing after apt-get install")
    return wrk


def ensure_tools_python(enabled: bool) -> str:
    """A python with uvloop for the fake upstream and the stream client (else this python)."""
    if not enabled:
        return sys.executable
    with contextlib.suppress(ImportError):
        import uvloop  # type: ignore[import-not-found]  # noqa: F401

        return sys.executable
    venv = Path(os.environ.get("BENCH_TOOLS_VENV") or Path(tempfile.gettempdir()) / "tokenroute-bench-tools")
    py = venv / "bin" / "python"

    def has_uvloop() -> bool:
        return py.exists() and subprocess.run([str(py), "-c", "import uvloop"], capture_output=True).returncode == 0

    if has_uvloop():
        return str(py)
    log(f"creating {venv} with uvloop (pip)")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "uvloop>=0.19"], check=True, timeout=600)
    except (subprocess.SubprocessError, OSError) as e:
        log(f"uvloop unavailable ({e}); using plain asyncio")
        return sys.executable
    return str(py) if has_uvloop() else sys.executable


def tokenroute_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "tokenroute"  # the venv's bin/, not the resolved interpreter
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "cli.main"]


BENCH_LIMITS = ["--rps", "1000000", "--burst", "1000000", "--max-streams", "100000"]


def clean_env() -> dict[str, str]:
    drop = ("OPENAI_", "DEEPSEEK_", "MISTRAL_", "TOKENROUTE_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


# --------------------------------------------------------------------- the bench
class Bench:
    """One gateway build against the fake upstream. `cli` runs the build's CLI (default: the
    installed `tokenroute`), from `repo` with `env` added when given (compare.py runs two checkouts)."""

    def __init__(
        self,
        a: argparse.Namespace,
        out: Path,
        tmp: Path,
        cli: list[str] | None = None,
        repo: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.a, self.out, self.tmp = a, out, tmp
        self.cli, self.repo, self.cli_env = cli or tokenroute_cmd(), repo, env or {}
        self.records: list[dict[str, Any]] = []
        self.meta: dict[str, Any] = {}
        self.wrk = ensure_wrk()
        self.tools_py = ensure_tools_python(not a.no_uvloop)
        self.db = tmp / "bench.db"
        self.up_port = a.upstream_port or free_port()
        self.gw_port = a.gateway_port or free_port()
        self.up_url = f"http://127.0.0.1:{self.up_port}"
        self.gw_url = f"http://127.0.0.1:{self.gw_port}"
        self.upstream: Proc | None = None
        self.key = ""
        self.config: Path | None = None
        self.gw_commit: str | None = None
        self._knows_workers: bool | None = None

    # ---- setup
    def start_upstream(self) -> None:
        cmd = [
            self.tools_py,
            str(HERE / "fake_upstream.py"),
            "--port",
            str(self.up_port),
            "--stream-delay",
            str(self.a.stream_delay),
            "--slow-delay",
            str(self.a.hold_interval),
            "--slow-chunks",
            str(max(1, round(self.a.hold_seconds / self.a.hold_interval))),
        ]
        self.upstream = Proc("fake-upstream", cmd, dict(os.environ), self.out / "fake_upstream.log")
        wait_ready(self.upstream, self.up_url + "/health", 20)

    def make_key(self) -> None:
        env = {**clean_env(), **self.cli_env}
        cwd = str(self.repo) if self.repo else None
        db = ["--db", str(self.db), "--json"]
        user = ["admin", "create-user", "--email", "bench@example.com"]
        key = ["admin", "create-key", "--email", "bench@example.com", "--name", "bench", "--credit", "1000000"]
        subprocess.run([*self.cli, *user, *db], check=True, env=env, capture_output=True, timeout=60, cwd=cwd)
        p = subprocess.run(
            [*self.cli, *key, *db], check=True, env=env, capture_output=True, text=True, timeout=60, cwd=cwd
        )
        made = json.loads(p.stdout.strip().splitlines()[-1])
        self.key = made["raw"]
        # limits stay on (every request is counted) but high enough not to throttle the load
        limits = ["admin", "set-limits", "--key", made["id"], *BENCH_LIMITS]
        subprocess.run([*self.cli, *limits, *db], check=True, env=env, capture_output=True, timeout=60, cwd=cwd)
        if self.a.hold_max_connections:
            self.config = self.tmp / "tokenroute.toml"
            self.config.write_text(f"[providers.openai]\nmax_connections = {self.a.hold_max_connections}\n")

    def start_gateway(
        self,
        tag: str,
        base_path: str = "/v1",
        config: Path | None = None,
        wrap: list[str] | None = None,
        ready: float = 60.0,
    ) -> Proc:
        """Start `tokenroute serve` (under `wrap`, e.g. valgrind, when given) and wait for /healthz."""
        env = {**clean_env(), **self.cli_env}
        env.update(OPENAI_API_KEY=UPSTREAM_KEY, OPENAI_BASE_URL=self.up_url + base_path, TOKENROUTE_SHUTDOWN_GRACE="5")
        if self.a.gateway_log_level:
            env["TOKENROUTE_LOG_LEVEL"] = self.a.gateway_log_level
        cmd = [*(wrap or []), *self.cli, "serve", "--db", str(self.db), "--host", "127.0.0.1"]
        cmd += ["--port", str(self.gw_port)]
        workers = getattr(self.a, "workers", 1)
        if self.knows_workers():  # `serve` alone would start one worker per core
            cmd += ["--workers", str(workers)]
        elif workers != 1:
            raise RuntimeError(f"this build's `serve` has no --workers option (asked for {workers})")
        if config is not None:
            cmd += ["--config", str(config)]
        self.gw_commit = git_commit(self.repo or REPO)
        log_path = self.out / f"gateway-{tag}.log"
        gw = Proc(f"gateway-{tag}", cmd, env, log_path, cwd=str(self.repo or self.tmp))
        wait_ready(gw, self.gw_url + "/healthz", ready)
        if workers > 1:  # /healthz answers once one worker serves: wait for all of them
            t0 = time.time()
            while f"with {workers} workers" not in log_path.read_text(errors="replace"):
                if not gw.alive() or time.time() - t0 > ready:
                    raise RuntimeError(f"{gw.name}: its {workers} workers did not all start; see {log_path}")
                time.sleep(0.1)
        return gw

    def knows_workers(self) -> bool:
        """Whether this build's `serve` takes --workers (builds from before it are one process)."""
        if self._knows_workers is None:
            env = {**clean_env(), **self.cli_env}
            cwd = str(self.repo) if self.repo else None
            p = subprocess.run([*self.cli, "serve", "--help"], env=env, cwd=cwd, capture_output=True, text=True,
                               timeout=60)  # fmt: skip
            self._knows_workers = "--workers" in p.stdout
        return self._knows_workers

    # ---- load steps
    def targets(self, gw: Proc) -> dict[str, dict[str, Any]]:
        return {
            "gateway": {"url": self.gw_url, "key": self.key, "model": MODEL, "pid": gw.pid},
            "direct": {"url": self.up_url, "key": UPSTREAM_KEY, "model": "gpt-4o-mini", "pid": None},
        }

    def wrk_run(self, t: dict[str, Any], conc: int, duration: float, stream: bool = False) -> dict[str, Any]:
        env = dict(os.environ, BENCH_KEY=t["key"], BENCH_MODEL=t["model"], BENCH_STREAM="1" if stream else "")
        cmd = [
            self.wrk,
            "-t1",
            f"-c{conc}",
            f"-d{int(duration)}s",
            "--timeout",
            "10s",
            "-s",
            str(HERE / "post.lua"),
            t["url"] + "/v1/chat/completions",
        ]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + 60)
        for line in p.stdout.splitlines():
            if line.startswith("WRKJSON "):
                return dict(json.loads(line[8:]))
        raise RuntimeError(f"wrk gave no result: {p.stdout[-400:]} {p.stderr[-400:]}")

    def stream_run(
        self, url: str, key: str, model: str, extra: list[str], limit: float, progress: Path | None = None
    ) -> dict[str, Any]:
        cmd = [self.tools_py, str(HERE / "stream_client.py"), url, key, model, *extra]
        if progress is not None:
            cmd += ["--progress", "1"]
        # the stream client is one process: its CPU says when it, not the gateway, is the limit
        with open(progress, "w") if progress else contextlib.nullcontext() as err:  # type: ignore[attr-defined]
            p = subprocess.run(
                cmd, stdout=subprocess.PIPE, stderr=err if progress else subprocess.PIPE, text=True, timeout=limit
            )
        try:
            out = dict(json.loads(p.stdout.strip().splitlines()[-1]))
        except (IndexError, ValueError) as e:
            raise RuntimeError(f"stream client failed: {(p.stderr or '')[-500:]}") from e
        if out.get("cpu_s") is not None and out.get("wall_s"):
            out["client_cpu_cores"] = round(out["cpu_s"] / out["wall_s"], 2)
        if progress is not None:
            out["client_peak_cores"] = _peak_cores(progress)
        return out

    def preflight(self, name: str, t: dict[str, Any]) -> None:
        body = json.dumps({"model": t["model"], "messages": [{"role": "user", "content": "hi"}]}).encode()
        st, data = http(t["url"] + "/v1/chat/completions", t["key"], body, timeout=30)
        if st != 200 or b'"choices"' not in data:
            raise RuntimeError(f"{name}: preflight JSON request failed: {st} {data[:300]!r}")
        r = self.stream_run(t["url"], t["key"], t["model"], ["-n", "1", "--timeout", "30", "--deadline", "40"], 60)
        if r.get("ok") != 1:
            raise RuntimeError(f"{name}: preflight SSE request failed: {r.get('error_kinds')}")

    def emit(self, rec: dict[str, Any]) -> None:
        rec["ts"] = round(time.time(), 1)
        self.records.append(rec)
        keys = (
            "rps",
            "p50_ms",
            "p99_ms",
            "streams_per_s",
            "ok",
            "ttft_p50_ms",
            "ttft_p99_ms",
            "total_p50_ms",
            "total_p99_ms",
            "non2xx",
            "socket_errors",
            "errors",
            "gw_cpu_cores",
            "gw_peak_rss_mb",
            "gw_idle_rss_mb",
            "peak_active",
        )
        shown = " ".join(f"{k}={rec[k]}" for k in keys if rec.get(k) is not None)
        log(f"  r{rec.get('round', '-')} {rec['target']:<7} {rec['kind']:<6} {rec.get('conc', '')!s:>5} {shown}")
        self.save()

    def save(self) -> None:
        doc = {"meta": self.meta, "records": self.records, "summary": summarize(self.records)}
        (self.out / "results.json").write_text(json.dumps(doc, indent=1) + "\n")

    def round(self, rnd: int) -> None:
        a = self.a
        gw = self.start_gateway(f"r{rnd}")
        try:
            ts = self.targets(gw)
            order = ["gateway", "direct"] if rnd % 2 else ["direct", "gateway"]
            up_pid = self.upstream.pid if self.upstream else None
            for name in order:
                self.preflight(name, ts[name])
                self.wrk_run(ts[name], 16, 3)  # warmup, discarded
            self.emit(
                {
                    "round": rnd,
                    "target": "gateway",
                    "kind": "idle",
                    "gw_idle_rss_mb": round(rss_mb(tree_pids(gw.pid)), 1),
                    "gw_procs": len(tree_pids(gw.pid)),
                    "commit": self.gw_commit,
                }
            )
            for c in a.concs:
                for name in order:
                    t = ts[name]
                    with Sampler(t["pid"], up_pid) as s:
                        r = self.wrk_run(t, c, a.duration)
                    self.emit(
                        {"round": rnd, "target": name, "kind": "json", "conc": c, **r, **s.metrics(name == "gateway")}
                    )
            for c in a.concs:
                for name in order:
                    t = ts[name]
                    extra = [
                        "--closed",
                        str(c),
                        "--duration",
                        str(a.duration),
                        "--timeout",
                        "30",
                        "--deadline",
                        str(a.duration + 40),
                    ]
                    with Sampler(t["pid"], up_pid) as s:
                        r = self.stream_run(t["url"], t["key"], t["model"], extra, a.duration + 90)
                    self.emit(
                        {"round": rnd, "target": name, "kind": "stream", "conc": c, **r, **s.metrics(name == "gateway")}
                    )
            if a.burst:
                for name in order:
                    t = ts[name]
                    time.sleep(1.0)  # let the previous connections settle
                    extra = ["-n", str(a.burst), "--timeout", "60", "--deadline", "120"]
                    with Sampler(t["pid"], up_pid) as s:
                        r = self.stream_run(t["url"], t["key"], t["model"], extra, 180)
                    self.emit(
                        {
                            "round": rnd,
                            "target": name,
                            "kind": "burst",
                            "conc": a.burst,
                            **r,
                            **s.metrics(name == "gateway"),
                        }
                    )
        finally:
            gw.stop()

    def hold(self, n: int) -> None:
        a = self.a
        ramp = round(n / a.hold_rate, 2) if a.hold_rate > 0 else 0.0
        per_stream = a.hold_seconds + ramp + 90
        deadline = per_stream + 30
        extra = ["-n", str(n), "--ramp", str(ramp), "--timeout", str(per_stream), "--deadline", str(deadline)]
        up_pid = self.upstream.pid if self.upstream else None
        if a.hold_direct:
            time.sleep(2.0)
            with Sampler(None, up_pid, every=0.5) as s:
                r = self.stream_run(
                    self.up_url + "/slow",
                    UPSTREAM_KEY,
                    "gpt-4o-mini",
                    extra,
                    deadline + 60,
                    progress=self.out / f"hold-direct-{n}.progress.jsonl",
                )
            self.emit(
                {
                    "target": "direct",
                    "kind": "hold",
                    "conc": n,
                    "ramp_s": ramp,
                    **r,
                    **s.metrics(False),
                    "upstream_rss_mb_after": round(rss_mb(tree_pids(up_pid)), 1),
                }
            )
        time.sleep(2.0)
        gw = self.start_gateway(f"hold{n}", base_path="/slow/v1", config=self.config)
        try:
            body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}).encode()
            st, data = http(self.gw_url + "/v1/chat/completions", self.key, body, timeout=30)
            if st != 200:
                raise RuntimeError(f"hold preflight failed: {st} {data[:300]!r}")
            self.wrk_run(self.targets(gw)["gateway"], 16, 3)  # same warmup as the rounds
            time.sleep(1.0)
            idle = rss_mb(tree_pids(gw.pid))
            idle_fds = fd_count(tree_pids(gw.pid))
            procs = tree_pids(gw.pid)  # the supervisor first, then its workers
            cpu0 = {p: cpu_s([p]) for p in procs}
            with Sampler(gw.pid, up_pid, every=0.5, fds=True, series=True) as s:
                r = self.stream_run(
                    self.gw_url,
                    self.key,
                    MODEL,
                    extra,
                    deadline + 60,
                    progress=self.out / f"hold-gateway-{n}.progress.jsonl",
                )
            per_proc_cores = [round((cpu_s([p]) - cpu0[p]) / s.wall, 2) for p in procs]
            per_proc_fds = [s.proc_peak_fds.get(p, 0) for p in procs]
            time.sleep(1.0)
            after = rss_mb(tree_pids(gw.pid))
            (self.out / f"hold-gateway-{n}.rss.jsonl").write_text(
                "".join(json.dumps({"t": t, "rss_mb": m, "fds": f, "gw_cores": c}) + "\n" for t, m, f, c in s.series)
            )
            self.emit(
                {
                    "target": "gateway",
                    "kind": "hold",
                    "conc": n,
                    "ramp_s": ramp,
                    **r,
                    **s.metrics(True),
                    "gw_idle_rss_mb": round(idle, 1),
                    "gw_idle_fds": idle_fds,
                    "gw_rss_mb_after": round(after, 1),
                    "gw_proc_cores": per_proc_cores,
                    "gw_proc_peak_fds": per_proc_fds,
                    "gw_procs": len(procs),
                    "gw_max_connections": a.hold_max_connections or "default",
                    "commit": self.gw_commit,
                }
            )
        finally:
            gw.stop()

    def run(self) -> None:
        a = self.a
        self.meta = collect_meta(a, self)
        self.start_upstream()
        self.make_key()
        log(
            f"fake upstream {self.up_url} (pid {self.upstream.pid if self.upstream else '?'}), "
            f"gateway {self.gw_url}, out {self.out}"
        )
        # the fake upstream must not be the bottleneck: direct throughput at c=16
        chk = self.wrk_run({"url": self.up_url, "key": UPSTREAM_KEY, "model": "gpt-4o-mini"}, 16, 2)
        self.meta["upstream_check_c16_rps"] = chk["rps"]
        log(f"fake upstream alone at c=16: {chk['rps']:,.0f} req/s")
        for rnd in range(1, a.rounds + 1):
            log(f"== round {rnd}/{a.rounds}")
            try:
                self.round(rnd)
            except Exception as e:
                log(f"!! round {rnd}: {e}")
                self.emit({"round": rnd, "target": "gateway", "kind": "error", "error": str(e)[:500]})
        for n in a.hold:
            log(f"== hold {n} streams for ~{a.hold_seconds} s")
            try:
                self.hold(n)
            except Exception as e:
                log(f"!! hold {n}: {e}")
                self.emit({"target": "gateway", "kind": "error", "conc": n, "error": f"hold {n}: {e}"[:500]})
        self.meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        self.meta["loadavg_end"] = os.getloadavg()


def collect_meta(a: argparse.Namespace, b: Bench) -> dict[str, Any]:
    code = (
        "import importlib.metadata as m, json, sys\nout={}\n"
        "for p in sys.argv[1:]:\n"
        "    try: out[p]=m.version(p)\n"
        "    except Exception: out[p]=None\n"
        "print(json.dumps(out))"
    )
    versions: dict[str, Any] = {"python": sys.version.split()[0]}
    with contextlib.suppress(Exception):
        versions.update(
            json.loads(
                subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        code,
                        "tokenroute",
                        "trio",
                        "hypercorn",
                        "quart",
                        "quart-trio",
                        "httpx2",
                        "httpcore2",
                        "h11",
                        "orjson",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=30,
                ).stdout
            )
        )
    with contextlib.suppress(Exception):
        versions["client:uvloop"] = json.loads(
            subprocess.run([b.tools_py, "-c", code, "uvloop"], capture_output=True, text=True, timeout=30).stdout
        )["uvloop"]
    with contextlib.suppress(Exception):
        r = subprocess.run([b.wrk, "-v"], capture_output=True, text=True, timeout=5)
        versions["wrk"] = (r.stdout + r.stderr).strip().splitlines()[0]
    commit = git_commit(b.repo or REPO)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "argv": sys.argv,
        "commit": commit,
        "versions": versions,
        "nproc": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "rounds": a.rounds,
        "duration_s": a.duration,
        "concs": a.concs,
        "burst": a.burst,
        "hold": a.hold,
        "hold_seconds": a.hold_seconds,
        "hold_interval": a.hold_interval,
        "hold_rate": a.hold_rate,
        "stream_delay_s": a.stream_delay,
        "hold_max_connections": a.hold_max_connections or "default",
        "workers": getattr(a, "workers", 1),
        "gateway_checkout": str(b.repo) if b.repo else None,
        "nofile_limit": _nofile(),
    }


def git_commit(repo: Path = REPO) -> str | None:
    """The checkout the gateway runs from (an editable install: code may change between starts)."""
    with contextlib.suppress(Exception):
        cmd = ["git", "-C", str(repo), "describe", "--always", "--dirty"]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip() or None
    return None


def _nofile() -> int | None:
    try:
        import resource

        return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, ValueError, OSError):
        return None


# --------------------------------------------------------------------- summary / report
def _med(vals: list[Any]) -> float | None:
    v = [x for x in vals if x is not None]
    return statistics.median(v) if v else None


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    by: dict[tuple[str, str, Any], list[dict[str, Any]]] = {}
    for r in records:
        by.setdefault((r["kind"], r["target"], r.get("conc")), []).append(r)

    def paired(kind: str, conc: Any, key: str, op: str) -> float | None:
        d = {r["round"]: r.get(key) for r in by.get((kind, "direct", conc), [])}
        vals = []
        for r in by.get((kind, "gateway", conc), []):
            g, x = r.get(key), d.get(r["round"])
            if g is None or x is None:
                continue
            if op == "-":
                vals.append(g - x)
            elif x:
                vals.append(g / x)
        return _med(vals)

    out: dict[str, Any] = {"json": {}, "stream": {}, "burst": {}, "hold": {}}
    for kind, keys, paired_keys in (
        (
            "json",
            (
                "rps",
                "p50_ms",
                "p90_ms",
                "p99_ms",
                "gw_cpu_cores",
                "upstream_cpu_cores",
                "machine_busy_cores",
                "other_cores",
                "gw_peak_rss_mb",
            ),
            ("p50_ms", "p90_ms", "p99_ms"),
        ),
        (
            "stream",
            (
                "streams_per_s",
                "ttft_p50_ms",
                "ttft_p99_ms",
                "total_p50_ms",
                "total_p99_ms",
                "gw_cpu_cores",
                "upstream_cpu_cores",
                "machine_busy_cores",
                "other_cores",
                "gw_peak_rss_mb",
            ),
            ("ttft_p50_ms", "ttft_p99_ms", "total_p50_ms", "total_p99_ms"),
        ),
        (
            "burst",
            (
                "ok",
                "ttfb_p50_ms",
                "ttft_p50_ms",
                "ttft_p99_ms",
                "total_p50_ms",
                "total_p99_ms",
                "wall_s",
                "gw_cpu_cores",
                "client_cpu_cores",
                "machine_busy_cores",
                "other_cores",
                "gw_peak_rss_mb",
            ),
            ("ttft_p50_ms", "ttft_p99_ms", "total_p50_ms", "total_p99_ms"),
        ),
    ):
        concs = sorted({c for (k, _, c) in by if k == kind})
        for c in concs:
            row: dict[str, Any] = {}
            for tgt in ("gateway", "direct"):
                rs = by.get((kind, tgt, c), [])
                if not rs:
                    continue
                m = {k: _med([r.get(k) for r in rs]) for k in keys}
                m["rounds"] = len(rs)
                m["errors"] = sum(_errors(r) for r in rs)
                m["non2xx"] = sum(r.get("non2xx", 0) for r in rs)
                kinds: dict[str, int] = {}
                for r in rs:
                    for k2, v in (r.get("error_kinds") or {}).items():
                        kinds[k2] = kinds.get(k2, 0) + v
                if kinds:
                    m["error_kinds"] = kinds
                row[tgt] = {k: v for k, v in m.items() if v is not None}
            for k in paired_keys:
                row[f"added_{k}"] = paired(kind, c, k, "-")
            rate = "rps" if kind == "json" else "streams_per_s"
            row["gw_over_direct_" + rate] = paired(kind, c, rate, "/")
            out[kind][str(c)] = row
    for r in records:
        if r["kind"] == "hold":
            out["hold"].setdefault(str(r["conc"]), {})[r["target"]] = {
                k: r.get(k)
                for k in (
                    "ok",
                    "errors",
                    "error_kinds",
                    "peak_active",
                    "peak_connected",
                    "ramp_s",
                    "ttft_p50_ms",
                    "ttft_p99_ms",
                    "total_p50_ms",
                    "total_p99_ms",
                    "wall_s",
                    "gw_idle_rss_mb",
                    "gw_peak_rss_mb",
                    "gw_rss_mb_after",
                    "gw_idle_fds",
                    "gw_peak_fds",
                    "upstream_peak_fds",
                    "gw_cpu_cores",
                    "gw_proc_cores",
                    "gw_proc_peak_fds",
                    "upstream_cpu_cores",
                    "client_cpu_cores",
                    "client_peak_cores",
                    "other_cores",
                    "gw_max_connections",
                )
                if r.get(k) is not None
            }
    idle = [r["gw_idle_rss_mb"] for r in records if r["kind"] == "idle"]
    out["gw_idle_rss_mb"] = _med(idle)
    out["gateway_commits"] = {
        (f"round {r['round']}" if r["kind"] == "idle" else f"hold {r['conc']}"): r.get("commit")
        for r in records
        if r["kind"] in ("idle", "hold") and r["target"] == "gateway"
    }
    out["failures"] = [r["error"] for r in records if r["kind"] == "error"]
    return out


def _errors(r: dict[str, Any]) -> int:
    return int(r.get("errors", 0) or 0) + int(r.get("non2xx", 0) or 0) + int(r.get("socket_errors", 0) or 0)


def f(v: Any, nd: int = 1, sign: bool = False) -> str:
    if v is None:
        return "–"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return f"{v:+,.{nd}f}" if sign else f"{v:,.{nd}f}"
    return str(v)


def scan_logs(out: Path) -> list[str]:
    """WARNING/ERROR lines and tracebacks in the gateway logs, grouped."""
    counts: dict[str, int] = {}
    tracebacks = 0
    for p in sorted(out.glob("gateway-*.log")):
        for line in p.read_text(errors="replace").splitlines():
            if line.startswith("Traceback"):
                tracebacks += 1
            m = re.match(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) (.*)$", line)
            if m:
                msg = re.sub(r"\b(req_[0-9a-f]+|0x[0-9a-f]+|\d+(\.\d+)?)\b", "#", m.group(2))[:180]
                key = f"{p.name.split('-', 1)[1].rsplit('.', 1)[0]}: {m.group(1)} {msg}"
                counts[key] = counts.get(key, 0) + 1
    lines = [f"{n}× {k}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1])]
    if tracebacks:
        lines.append(f"{tracebacks} traceback(s) in total")
    return lines


def report(meta: dict[str, Any], s: dict[str, Any], out: Path) -> str:
    L: list[str] = []
    L.append("# tokenroute gateway vs direct (fake upstream)")
    L.append("")
    v = meta.get("versions", {})
    L.append(
        f"Run {meta.get('date')} · commit {meta.get('commit')} · nproc {meta.get('nproc')} · "
        f"loadavg at start {tuple(round(x, 2) for x in meta.get('loadavg_start', ()))} · "
        f"rounds {meta.get('rounds')} × {meta.get('duration_s')} s · gateway workers "
        f"{meta.get('workers', 1)} · open-files limit {meta.get('nofile_limit')} · fake upstream alone at c=16: "
        f"{f(meta.get('upstream_check_c16_rps'), 0)} req/s"
    )
    L.append("Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()))
    L.append("")
    L.append(
        "Medians over rounds. *added* = gateway minus direct within the same round, then the median; "
        "*gw/direct* = the same-round ratio of throughputs. wrk is closed-loop (`-t1 -cC`), so at "
        "C=16/64 on a saturated gateway latency is mostly queueing; the per-request overhead is the C=1 row. "
        "CPU in cores (utime+stime / wall); *other load* = cores used by processes outside this benchmark "
        "during the step (machine busy minus the benchmark's own processes; noise on a shared machine). "
        "RSS = sum of VmRSS over the gateway's process tree."
    )
    if s["json"]:
        L.append("")
        L.append("## Non-streaming chat completions (wrk)")
        L.append("")
        L.append(
            "| C | gw req/s | direct req/s | gw/direct | gw p50 ms | gw p90 ms | gw p99 ms | direct p50 ms "
            "| direct p99 ms | added p50 ms | added p99 ms | gw CPU | upstream CPU | machine busy | other load "
            "| gw peak RSS MB | errors gw/direct |"
        )
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for c, row in s["json"].items():
            g, d = row.get("gateway", {}), row.get("direct", {})
            L.append(
                f"| {c} | {f(g.get('rps'), 0)} | {f(d.get('rps'), 0)} | {f(row.get('gw_over_direct_rps'), 4)} | "
                f"{f(g.get('p50_ms'), 2)} | {f(g.get('p90_ms'), 2)} | {f(g.get('p99_ms'), 2)} | "
                f"{f(d.get('p50_ms'), 2)} | {f(d.get('p99_ms'), 2)} | {f(row.get('added_p50_ms'), 2, True)} | "
                f"{f(row.get('added_p99_ms'), 2, True)} | {f(g.get('gw_cpu_cores'), 2)} | "
                f"{f(g.get('upstream_cpu_cores'), 2)} | {f(g.get('machine_busy_cores'), 2)} | "
                f"{f(g.get('other_cores'), 2)} | "
                f"{f(g.get('gw_peak_rss_mb'), 0)} | {g.get('errors', '–')}/{d.get('errors', '–')} |"
            )
    if s["stream"]:
        L.append("")
        L.append(f"## Streaming, closed loop (C concurrent keep-alive streams for {meta.get('duration_s')} s)")
        L.append("")
        L.append(
            f"Each stream: role chunk, 20 content chunks {meta.get('stream_delay_s', 0.01) * 1000:g} ms apart, "
            "finish and usage chunks, `[DONE]` (~0.22 s floor). first chunk = first SSE `data:` event."
        )
        L.append("")
        L.append(
            "| C | gw streams/s | direct streams/s | gw/direct | gw first chunk p50/p99 ms | direct first chunk "
            "p50/p99 ms | gw total p50/p99 ms | direct total p50/p99 ms | added first chunk p50/p99 ms "
            "| added total p50/p99 ms | gw CPU | other load | gw peak RSS MB | errors gw/direct |"
        )
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for c, row in s["stream"].items():
            g, d = row.get("gateway", {}), row.get("direct", {})
            L.append(
                f"| {c} | {f(g.get('streams_per_s'), 1)} | {f(d.get('streams_per_s'), 1)} | "
                f"{f(row.get('gw_over_direct_streams_per_s'), 3)} | "
                f"{f(g.get('ttft_p50_ms'), 1)} / {f(g.get('ttft_p99_ms'), 1)} | "
                f"{f(d.get('ttft_p50_ms'), 1)} / {f(d.get('ttft_p99_ms'), 1)} | "
                f"{f(g.get('total_p50_ms'), 1)} / {f(g.get('total_p99_ms'), 1)} | "
                f"{f(d.get('total_p50_ms'), 1)} / {f(d.get('total_p99_ms'), 1)} | "
                f"{f(row.get('added_ttft_p50_ms'), 1, True)} / {f(row.get('added_ttft_p99_ms'), 1, True)} | "
                f"{f(row.get('added_total_p50_ms'), 1, True)} / {f(row.get('added_total_p99_ms'), 1, True)} | "
                f"{f(g.get('gw_cpu_cores'), 2)} | {f(g.get('other_cores'), 2)} | {f(g.get('gw_peak_rss_mb'), 0)} | "
                f"{g.get('errors', '–')}/{d.get('errors', '–')} |"
            )
    if s["burst"]:
        L.append("")
        L.append("## Streaming burst (N streams at once, one connection each)")
        L.append("")
        L.append(
            "| N | target | ok | first chunk p50 ms | first chunk p99 ms | total p50 ms | total p99 ms | "
            "added first chunk p50/p99 ms | added total p50/p99 ms | batch wall s | gw CPU | client CPU "
            "| other load | gw peak RSS MB | errors |"
        )
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for c, row in s["burst"].items():
            for tgt in ("gateway", "direct"):
                g = row.get(tgt)
                if not g:
                    continue
                gw = tgt == "gateway"
                added = (
                    f"{f(row.get('added_ttft_p50_ms'), 1, True)} / {f(row.get('added_ttft_p99_ms'), 1, True)}"
                    if gw
                    else ""
                )
                added_t = (
                    f"{f(row.get('added_total_p50_ms'), 1, True)} / {f(row.get('added_total_p99_ms'), 1, True)}"
                    if gw
                    else ""
                )
                errs = str(g.get("errors", 0)) + (f" {g['error_kinds']}" if g.get("error_kinds") else "")
                L.append(
                    f"| {c} | {tgt} | {f(g.get('ok'), 0)} | {f(g.get('ttft_p50_ms'), 1)} | "
                    f"{f(g.get('ttft_p99_ms'), 1)} | {f(g.get('total_p50_ms'), 1)} | "
                    f"{f(g.get('total_p99_ms'), 1)} | {added} | {added_t} | {f(g.get('wall_s'), 2)} | "
                    f"{f(g.get('gw_cpu_cores'), 2) if gw else ''} | {f(g.get('client_cpu_cores'), 2)} | "
                    f"{f(g.get('other_cores'), 2)} | {f(g.get('gw_peak_rss_mb'), 0) if gw else ''} | {errs} |"
                )
    if s["hold"]:
        L.append("")
        L.append(
            f"## Concurrent slow streams held by the gateway ({meta.get('workers', 1)} worker(s); one chunk "
            f"every {meta.get('hold_interval', 1.0)} s for {meta.get('hold_seconds')} s, "
            f"opened at {meta.get('hold_rate')}/s; upstream pool "
            f"max_connections: {meta.get('hold_max_connections')})"
        )
        L.append("")
        L.append(
            "RSS and fds: the gateway's whole process tree (supervisor and workers). *per process*: CPU cores "
            "and peak fds of each process, the supervisor (or the single process) first. *client CPU*: the "
            "stream client's average / its busiest 2 s (one process, so 1.0 is its ceiling)."
        )
        L.append("")
        L.append(
            "| N | target | ok | errors | peak open streams | gw RSS MB idle → peak → after | gw peak fds "
            "| upstream peak fds | first chunk p50/p99 ms | total p50/p99 s | gw CPU | per process CPU · fds "
            "| client CPU | upstream CPU | other load | wall s |"
        )
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for n, row in s["hold"].items():
            for tgt in ("gateway", "direct"):
                h = row.get(tgt)
                if not h:
                    continue
                errs = str(h.get("errors", 0)) + (f" {h['error_kinds']}" if h.get("error_kinds") else "")
                tot = [h.get("total_p50_ms"), h.get("total_p99_ms")]
                tot_s = " / ".join(f(x / 1000, 1) if x is not None else "–" for x in tot)
                rss = (
                    f"{f(h.get('gw_idle_rss_mb'), 0)} → {f(h.get('gw_peak_rss_mb'), 0)} → "
                    f"{f(h.get('gw_rss_mb_after'), 0)}"
                    if tgt == "gateway"
                    else ""
                )
                L.append(
                    f"| {n} | {tgt} | {f(h.get('ok'), 0)} | {errs} | {f(h.get('peak_active'), 0)} | {rss} | "
                    f"{f(h.get('gw_peak_fds'), 0) if tgt == 'gateway' else ''} | "
                    f"{f(h.get('upstream_peak_fds'), 0) if tgt == 'gateway' else ''} | "
                    f"{f(h.get('ttft_p50_ms'), 1)} / {f(h.get('ttft_p99_ms'), 1)} | {tot_s} | "
                    f"{f(h.get('gw_cpu_cores'), 2) if tgt == 'gateway' else ''} | "
                    f"{'/'.join(map(str, h.get('gw_proc_cores') or []))} · "
                    f"{'/'.join(map(str, h.get('gw_proc_peak_fds') or []))} | "
                    f"{f(h.get('client_cpu_cores'), 2)} / {f(h.get('client_peak_cores'), 2)} | "
                    f"{f(h.get('upstream_cpu_cores'), 2)} | {f(h.get('other_cores'), 2)} | {f(h.get('wall_s'), 1)} |"
                )
    L.append("")
    L.append(f"Gateway idle RSS after warmup (median over rounds): {f(s.get('gw_idle_rss_mb'), 1)} MB")
    commits = s.get("gateway_commits") or {}
    if len(set(commits.values())) > 1:
        L.append("")
        L.append(
            "The checkout changed during the run; the gateway code each start ran: "
            + ", ".join(f"{k} {v}" for k, v in commits.items())
        )
    if s.get("failures"):
        L.append("")
        L.append("Failures: " + "; ".join(s["failures"]))
    logs = scan_logs(out)
    L.append("")
    L.append(
        "Gateway log (WARNING/ERROR lines, grouped; full logs beside this report): " + ("none" if not logs else "")
    )
    for line in logs[:15]:
        L.append(f"- {line}")
    if len(logs) > 15:
        L.append(f"- … {len(logs) - 15} more kinds")
    return "\n".join(L) + "\n"


# --------------------------------------------------------------------- main
def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8, help="seconds per wrk / closed-loop stream run")
    ap.add_argument("--concs", type=_ints, default=[1, 16, 64])
    ap.add_argument("--burst", type=int, default=1000, help="concurrent streams in the burst (0 = skip)")
    ap.add_argument(
        "--hold", type=_ints, default=[1000, 5000, 10000], help="slow-stream levels for the hold test ('' = skip)"
    )
    ap.add_argument("--hold-seconds", type=int, default=30, help="length of a slow stream")
    ap.add_argument("--hold-interval", type=float, default=1.0, help="seconds between the chunks of a slow stream")
    ap.add_argument("--hold-rate", type=float, default=500.0, help="slow streams opened per second")
    ap.add_argument(
        "--no-hold-direct",
        dest="hold_direct",
        action="store_false",
        help="skip the direct (client + fake upstream) baseline of the hold test",
    )
    ap.add_argument(
        "--hold-max-connections",
        type=int,
        default=0,
        help="the gateway's upstream pool size (max_connections) for the hold test (default: its own)",
    )
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="`serve --workers N`: gateway processes (default 1; `serve` alone starts one per core)",
    )
    ap.add_argument(
        "--checkout",
        help="run the gateway from this checkout (`git worktree add DIR <commit>`, as compare.py does) rather than "
        "the installed tokenroute, whose code changes when this checkout does during a run",
    )
    ap.add_argument("--stream-delay", type=float, default=0.01, help="fake upstream pacing between chunks")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round, 3 s, burst 200, hold 500")
    ap.add_argument("--out", help="output directory (default ops/bench/out/<timestamp>)")
    ap.add_argument("--upstream-port", type=int, default=0, help="default: a free port")
    ap.add_argument("--gateway-port", type=int, default=0, help="default: a free port")
    ap.add_argument("--gateway-log-level", help="TOKENROUTE_LOG_LEVEL for the gateway (default: its own default)")
    ap.add_argument("--no-uvloop", action="store_true", help="plain asyncio for the fake upstream and client")
    a = ap.parse_args(argv)
    if a.quick:
        a.rounds, a.duration, a.burst, a.hold = 1, 3, 200, [500]
    return a


def prepare_process() -> None:
    """Raise the open-files limit (bursts of streams) and turn SIGTERM/SIGINT into KeyboardInterrupt
    so the caller's `finally: stop_all()` runs."""
    try:
        import resource

        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else NOFILE
        if want < NOFILE:  # one process holding 10,000 streams needs ~20,000 (client and upstream sides)
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))  # allowed as root
                want = hard = NOFILE
            except (ValueError, OSError):
                log(f"open-files hard limit {hard} (cannot raise it to {NOFILE} without privileges)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, ValueError, OSError) as e:
        log(f"could not raise the open-files limit: {e}")

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)  # also when started in the background with SIGINT ignored


def main() -> int:
    a = parse_args()
    prepare_process()
    out = Path(a.out) if a.out else HERE / "out" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="tokenroute-bench-"))
    rc = 0
    b: Bench | None = None
    try:
        if a.checkout:
            from compare import launcher  # compare.py imports this module: not at the top

            repo = Path(a.checkout).resolve()
            cli, env = launcher(repo)
            b = Bench(a, out, tmp, cli=cli, repo=repo, env=env)
        else:
            b = Bench(a, out, tmp)
        b.run()
    except KeyboardInterrupt:
        log("interrupted: stopping everything")
        rc = 130
    except Exception as e:
        log(f"failed: {type(e).__name__}: {e}")
        rc = 1
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    if b is not None and b.records:
        b.save()
        text = report(b.meta, summarize(b.records), out)
        (out / "report.md").write_text(text)
        print(text)
        log(f"results: {out / 'results.json'}  report: {out / 'report.md'}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
