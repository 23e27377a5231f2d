#!/usr/bin/env python3
"""A/B benchmark of two builds of the gateway in one run, interleaved, against one fake upstream.

  git worktree add ../tr-base <commit>
  .venv/bin/python ops/bench/compare.py --baseline ../tr-base

Shows that a change costs no throughput: figures taken on different days or under different
load on a shared machine are not comparable, ratios measured side by side in the same run are.

Build A is this checkout (or the hidden --candidate DIR), build B the --baseline checkout. Both
run with this python (the venv has every dependency) as `python -m cli.main` with cwd and
PYTHONPATH set to their own checkout, each with its own temporary database, user and funded key
made by its own CLI, both relaying to the same ops/bench/fake_upstream.py as provider `openai`.
The venv holds the main tree as an editable install, but setuptools' editable finder is
appended to sys.meta_path, after the PathFinder that reads sys.path (cwd, then PYTHONPATH), so
the checkout wins; this is checked at start (proxy, cli and migrations must import from the
checkout). If it ever does not win, the build runs through a bootstrap (`python -I -c ...`:
no PYTHONPATH or user site, the editable finders dropped from sys.meta_path, the checkout first
on sys.path, then runpy of cli.main), which is checked the same way.

Like run_bench.py, every round starts fresh gateway processes (both builds, each on its own
port) and stops them at its end. Per round: preflight and a wrk warm-up per gateway, then wrk
(post.lua, non-streaming) at each --concs for --duration s, then a burst of --burst concurrent
streams (stream_client.py, one connection each); A and B alternate within every scenario, AB in
odd rounds and BA in even rounds. The report has per scenario the median over rounds for A and
B and the median of the same-round ratios A/B. Writes ops/bench/out/compare-<timestamp>/
{results.json,report.md,*.log}. Everything is bounded in time and stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_bench import (  # beside this script, not in a package
    HERE,
    REPO,
    Bench,
    Proc,
    Sampler,
    _errors,
    _med,
    f,
    log,
    prepare_process,
    scan_logs,
    stop_all,
)

BUILDS = ("A", "B")
CHECK = (  # migrations: a package of its own in newer trees
    "import importlib.util as u, cli, proxy\nm = u.find_spec('migrations')\n"
    "print(cli.__file__, proxy.__file__, m.origin if m else '')\n"
)
PREFIX = (  # -I: no PYTHONPATH, no user site; then drop the editable finders and put the checkout first
    "import runpy, sys\n"
    "sys.meta_path[:] = [m for m in sys.meta_path if '__editable__' not in getattr(m, '__module__', '')]\n"
    "sys.path.insert(0, sys.argv.pop(1))\n"
)
BOOT = PREFIX + "runpy.run_module('cli.main', run_name='__main__', alter_sys=True)\n"
METRICS = {  # what each scenario reports, with the decimals shown
    "json": {"rps": 0, "p50_ms": 2, "p99_ms": 2, "gw_cpu_cores": 2, "other_cores": 2},
    "burst": {"ok": 0, "ttft_p50_ms": 1, "ttft_p99_ms": 1, "total_p50_ms": 1, "total_p99_ms": 1, "other_cores": 2},
}
LABELS = {
    "rps": "req/s",
    "p50_ms": "p50 ms",
    "p99_ms": "p99 ms",
    "gw_cpu_cores": "gateway CPU cores",
    "other_cores": "other load, cores",
    "ok": "ok streams",
    "ttft_p50_ms": "first chunk p50 ms",
    "ttft_p99_ms": "first chunk p99 ms",
    "total_p50_ms": "total p50 ms",
    "total_p99_ms": "total p99 ms",
    "errors": "errors",
}
NO_RATIO = {"other_cores", "errors"}  # noise and counts: a ratio says nothing


def git(repo: Path, *args: str) -> str:
    """Read-only git; --no-optional-locks so `status` never rewrites the index of a tree in use."""
    cmd = ["git", "--no-optional-locks", "-C", str(repo), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()


def describe(repo: Path) -> dict[str, Any]:
    dirty = git(repo, "status", "--porcelain").splitlines()
    return {"path": str(repo), "commit": git(repo, "rev-parse", "--short", "HEAD"), "dirty_files": dirty}


def launcher(repo: Path) -> tuple[list[str], dict[str, str]]:
    """Command prefix and extra env that run cli.main from `repo`, checked to import from it."""
    env = {"PYTHONPATH": str(repo)}
    py = sys.executable
    ways = (
        ([py, "-c", CHECK], [py, "-m", "cli.main"]),
        ([py, "-I", "-c", PREFIX + CHECK, str(repo)], [py, "-I", "-c", BOOT, str(repo)]),
    )
    for probe, cmd in ways:
        p = subprocess.run(probe, capture_output=True, text=True, timeout=30, cwd=repo, env={**os.environ, **env})
        files = p.stdout.split()
        if p.returncode == 0 and files and all(Path(x).resolve().is_relative_to(repo) for x in files):
            log(f"{' '.join(cmd[1:3])} with cwd and PYTHONPATH {repo} imports {' '.join(files)}")
            return cmd, env
        log(f"{' '.join(cmd[1:3])} in {repo}: imports from {(p.stdout + p.stderr).strip()[-300:]}")
    raise RuntimeError(f"cannot make {sys.executable} import the gateway from {repo}")


def emit(doc: dict[str, Any], out: Path, rec: dict[str, Any]) -> None:
    doc["records"].append(rec)
    keys = ("rps", "p50_ms", "p99_ms", "ok", "ttft_p50_ms", "total_p99_ms", "non2xx", "socket_errors", "errors")
    log(
        f"  r{rec['round']} {rec['build']} {rec['kind']} {rec['conc']}: "
        + " ".join(f"{k}={rec[k]}" for k in keys if k in rec)
    )
    doc["summary"] = summarize(doc["records"])
    (out / "results.json").write_text(json.dumps(doc, indent=1) + "\n")


def run_round(a: argparse.Namespace, builds: dict[str, Bench], rnd: int, doc: dict[str, Any], out: Path) -> None:
    """Fresh gateways for both builds; A and B alternate within every scenario (AB, then BA)."""
    order = list(BUILDS) if rnd % 2 else list(reversed(BUILDS))
    up = builds["A"].upstream
    gws: dict[str, Proc] = {}
    try:
        for n in order:
            gws[n] = builds[n].start_gateway(f"{n}-r{rnd}")
        ts = {n: builds[n].targets(gws[n])["gateway"] for n in order}
        for n in order:
            builds[n].preflight(n, ts[n])
            builds[n].wrk_run(ts[n], 16, a.warmup)  # discarded
        steps: list[tuple[str, int]] = [("json", c) for c in a.concs] + ([("burst", a.burst)] if a.burst else [])
        for kind, c in steps:
            for n in order:
                if kind == "burst":
                    time.sleep(1.0)  # let the previous connections settle
                with Sampler(gws[n].pid, up.pid if up else None) as s:
                    if kind == "json":
                        r = builds[n].wrk_run(ts[n], c, a.duration)
                    else:
                        extra = ["-n", str(c), "--timeout", "60", "--deadline", "120"]
                        r = builds[n].stream_run(ts[n]["url"], ts[n]["key"], ts[n]["model"], extra, 180)
                emit(doc, out, {"round": rnd, "build": n, "kind": kind, "conc": c, **r, **s.metrics(True)})
    finally:
        for gw in gws.values():
            gw.stop()


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per scenario and metric: medians over rounds for A and B, and the median same-round A/B."""

    def val(r: dict[str, Any], m: str) -> Any:
        return _errors(r) if m == "errors" else r.get(m)

    rows = []
    for kind, metrics in METRICS.items():
        for c in sorted({r["conc"] for r in records if r.get("kind") == kind}):
            by = {
                n: {r["round"]: r for r in records if (r["kind"], r["conc"], r["build"]) == (kind, c, n)}
                for n in BUILDS
            }
            for m in [*metrics, "errors"]:
                pairs = [(val(ra, m), val(by["B"][rnd], m)) for rnd, ra in by["A"].items() if rnd in by["B"]]
                ratios = [x / y for x, y in pairs if x is not None and y]
                vals = {n: [val(r, m) for r in by[n].values()] for n in BUILDS}
                row = {n: (sum(v) if m == "errors" else _med(v)) for n, v in vals.items()}
                name = f"json c={c}" if kind == "json" else f"burst N={c}"
                ratio = None if m in NO_RATIO else _med(ratios)
                rows.append(
                    {"scenario": name, "kind": kind, "metric": m, **row, "A_over_B": ratio, "pairs": len(pairs)}
                )
    return rows


def report(doc: dict[str, Any], out: Path) -> str:
    meta, b = doc["meta"], doc["meta"]["builds"]
    la = (
        ", ".join(f"{x:.2f}" for x in meta["loadavg_start"])
        + " → "
        + ", ".join(f"{x:.2f}" for x in meta.get("loadavg_end", ()))
    )
    L = [
        f"# tokenroute A/B: A {b['A']['commit']}{' (dirty)' if b['A']['dirty_files'] else ''} vs B {b['B']['commit']}"
        f"{' (dirty)' if b['B']['dirty_files'] else ''}",
        "",
        f"Run {meta['date']} · {meta['nproc']} × {meta['cpu_model']} · load average {la} · "
        f"{meta['rounds']} round(s) × {meta['duration_s']} s per wrk step, burst {meta['burst']}",
        f"A = {b['A']['path']} ({len(b['A']['dirty_files'])} changed/untracked files), B = {b['B']['path']}",
        "",
        "Medians over rounds; A/B = median of the same-round ratios (req/s and ok streams: above 1 is A faster; "
        "latency and CPU: below 1 is A faster). wrk non-streaming is `-t1 -cC` closed loop; burst = N streams at "
        "once, one connection each. *other load* = cores busy outside this benchmark (noise on a shared machine).",
        "",
        "| scenario | metric | A | B | A/B |",
        "|---|---|---|---|---|",
    ]
    for r in doc["summary"]:
        nd = METRICS[r["kind"]].get(r["metric"], 0)
        L.append(
            f"| {r['scenario']} | {LABELS[r['metric']]} | {f(r['A'], nd)} | {f(r['B'], nd)} | {f(r['A_over_B'], 3)} |"
        )
    if doc["failures"]:
        L += ["", "Failures: " + "; ".join(doc["failures"])]
    logs = scan_logs(out)
    L += ["", "Gateway logs (WARNING/ERROR lines, grouped): " + ("none" if not logs else "")]
    L += [f"- {line}" for line in logs[:15]]
    return "\n".join(L) + "\n"


def run(a: argparse.Namespace, out: Path, tmp: Path, doc: dict[str, Any]) -> None:
    repos = {"A": Path(a.candidate or REPO).resolve(), "B": Path(a.baseline).resolve()}
    for n, repo in repos.items():
        if not (repo / "cli" / "main.py").is_file():
            raise RuntimeError(f"build {n}: {repo} is not a checkout of the gateway")
    if repos["A"] == repos["B"]:
        log("A and B are the same directory: an A/A run")
    doc["meta"]["builds"] = {n: describe(repo) for n, repo in repos.items()}
    builds: dict[str, Bench] = {}
    for n, repo in repos.items():
        (tmp / n).mkdir()
        cli, env = launcher(repo)
        builds[n] = Bench(a, out, tmp / n, cli=cli, repo=repo, env=env)
        doc["meta"]["builds"][n]["cmd"] = cli[:3]
    builds["A"].start_upstream()
    for bench in builds.values():
        bench.up_port, bench.up_url = builds["A"].up_port, builds["A"].up_url
        bench.make_key()
    log(f"fake upstream {builds['A'].up_url}; A {builds['A'].gw_url}, B {builds['B'].gw_url}; out {out}")
    for rnd in range(1, a.rounds + 1):
        log(f"== round {rnd}/{a.rounds}")
        try:
            run_round(a, builds, rnd, doc, out)
        except Exception as e:
            log(f"!! round {rnd}: {type(e).__name__}: {e}")
            doc["failures"].append(f"round {rnd}: {e}"[:500])


def machine() -> dict[str, Any]:
    with open("/proc/cpuinfo") as fh:
        model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "?")
    return {"nproc": os.cpu_count(), "cpu_model": model, "loadavg_start": os.getloadavg()}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", required=True, help="build B: another checkout (git worktree add DIR <commit>)")
    ap.add_argument("--candidate", help=argparse.SUPPRESS)  # build A elsewhere than this checkout
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of wrk -c16 per gateway per round, discarded")
    ap.add_argument("--concs", type=lambda t: [int(x) for x in t.split(",")], default=[1, 16, 64])
    ap.add_argument("--burst", type=int, default=1000, help="concurrent streams in the burst (0 = skip)")
    ap.add_argument("--stream-delay", type=float, default=0.01, help="fake upstream pacing between chunks")
    ap.add_argument("--gateway-log-level", help="TOKENROUTE_LOG_LEVEL for both gateways")
    ap.add_argument("--no-uvloop", action="store_true", help="plain asyncio for the fake upstream and client")
    ap.add_argument("--out", help="output directory (default ops/bench/out/compare-<timestamp>)")
    # what run_bench.Bench reads besides: no fixed ports, no hold test
    ap.set_defaults(upstream_port=0, gateway_port=0, hold_max_connections=0, hold_seconds=30)
    return ap.parse_args()


def main() -> int:
    a = parse_args()
    prepare_process()
    out = Path(a.out) if a.out else HERE / "out" / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="tokenroute-compare-"))
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "argv": sys.argv, **machine()}
    meta.update(rounds=a.rounds, duration_s=a.duration, concs=a.concs, burst=a.burst, python=sys.version.split()[0])
    doc: dict[str, Any] = {"meta": meta, "records": [], "summary": [], "failures": []}
    rc = 0
    try:
        run(a, out, tmp, doc)
    except KeyboardInterrupt:
        log("interrupted: stopping everything")
        doc["failures"].append("interrupted")
        rc = 130
    except Exception as e:
        log(f"failed: {type(e).__name__}: {e}")
        doc["failures"].append(str(e)[:500])
        rc = 1
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    meta["loadavg_end"] = os.getloadavg()
    doc["summary"] = summarize(doc["records"])
    (out / "results.json").write_text(json.dumps(doc, indent=1) + "\n")
    if "builds" in meta:
        text = report(doc, out)
        (out / "report.md").write_text(text)
        print(text)
    log(f"results: {out / 'results.json'}")
    return rc or (1 if doc["failures"] else 0)


if __name__ == "__main__":
    sys.exit(main())
