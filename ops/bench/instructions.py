#!/usr/bin/env python3
"""Instructions per request, A/B: two builds of the gateway under callgrind, same requests.

  git worktree add ../tr-base <commit>
  .venv/bin/python ops/bench/instructions.py --baseline ../tr-base

Wall-clock figures on a shared VM scatter by tens of percent from one run to the next
(steal time, a noisy neighbour); the count of instructions the gateway executes to
serve a fixed set of requests does not (the same build measures within ~1 % run to
run), so it shows what a change costs per request. Each build (A: this checkout,
B: --baseline) runs in turn as `valgrind --tool=callgrind python -m cli.main serve`
against the fast fake upstream, is warmed up, then for each scenario its counters are
zeroed, the requests sent, and the counters dumped: non-streaming requests one at a
time and 64 at once, and a burst of streams all at once. The cyclic garbage collector's
share (`gc_collect_main`) is reported apart: a full collection falls in one window or
the next by chance, and its cost is the size of the heap, not of the request.
Writes ops/bench/out/instructions-<timestamp>/{results.json,report.md,callgrind files}.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import describe, launcher  # beside this script, not in a package
from run_bench import HERE, REPO, Bench, log, prepare_process, stop_all

BODY: dict[str, Any] = {
    "model": "openai/gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Explain in two sentences how to load test an API gateway."},
    ],
    "temperature": 0.2,
    "max_tokens": 64,
}


async def send(url: str, key: str, n: int, conc: int, stream: bool) -> int:
    """`n` chat requests, `conc` at a time; how many got 200 (streams read to the end)."""
    body = {**BODY, "stream": True, "stream_options": {"include_usage": True}} if stream else BODY
    headers = {"authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    left, ok = [n], [0]
    async with httpx.AsyncClient(timeout=900, limits=limits) as client:

        async def worker() -> None:
            while left[0] > 0:
                left[0] -= 1
                async with client.stream("POST", url, json=body, headers=headers) as reply:
                    async for _ in reply.aiter_raw():
                        pass
                    ok[0] += reply.status_code == 200

        async with trio.open_nursery() as nursery:
            for _ in range(conc):
                nursery.start_soon(worker)
    return ok[0]


def counters(pid: int, out: Path, name: str) -> dict[str, int]:
    """Dump the counters since the last zeroing: total instructions and the collector's share."""
    subprocess.run(["callgrind_control", "-d", name, str(pid)], capture_output=True, timeout=300, check=True)
    time.sleep(1)
    dump = max(out.glob(f"cg.{pid}.out.*"), key=lambda p: p.stat().st_mtime)
    total = int(re.search(r"^summary: (\d+)", dump.read_text(), re.M).group(1))  # type: ignore[union-attr]
    annotated = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(dump)],
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    gc = re.search(r"^\s*([\d,]+) .*gcmodule\.c:gc_collect_main ", annotated, re.M)
    return {"instructions": total, "gc": int(gc.group(1).replace(",", "")) if gc else 0}


def measure(a: argparse.Namespace, bench: Bench, name: str, out: Path) -> list[dict[str, Any]]:
    wrap = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.%p.out"]
    gw = bench.start_gateway(name, wrap=wrap, ready=600)
    url = bench.gw_url + "/v1/chat/completions"
    scenarios = [
        ("json c=1", a.requests, 1, False),
        ("json c=64", a.requests, 64, False),
        (f"stream burst N={a.streams}", a.streams, a.streams, True),
    ]
    rows = []
    try:
        trio.run(send, url, bench.key, 100, 8, False)  # warm-up: caches, pools, the writer
        trio.run(send, url, bench.key, 40, 8, True)
        for label, n, conc, stream in scenarios:
            subprocess.run(["callgrind_control", "-z", str(gw.pid)], capture_output=True, timeout=300, check=True)
            ok = trio.run(send, url, bench.key, n, conc, stream)
            time.sleep(1)  # let the writer commit the last batch inside the window
            c = counters(gw.pid, out, re.sub(r"\W+", "-", label))
            row = {"build": name, "scenario": label, "requests": n, "ok": ok, **c}
            row["per_request"] = c["instructions"] // n
            row["per_request_without_gc"] = (c["instructions"] - c["gc"]) // n
            log(f"  {name} {label}: {row['per_request']:,} per request ({row['per_request_without_gc']:,} without GC)")
            rows.append(row)
    finally:
        gw.stop()
    return rows


def report(doc: dict[str, Any]) -> str:
    b = doc["builds"]
    lines = [
        f"# Instructions per request: A {b['A']['commit']}{' (dirty)' if b['A']['dirty_files'] else ''}"
        f" vs B {b['B']['commit']}",
        "",
        f"{doc['date']} · callgrind · A = {b['A']['path']}, B = {b['B']['path']}",
        "",
        "| scenario | A | B | A/B | A without GC | B without GC | A/B without GC |",
        "|---|---|---|---|---|---|---|",
    ]
    by = {(r["build"], r["scenario"]): r for r in doc["rows"]}
    for scenario in dict.fromkeys(r["scenario"] for r in doc["rows"]):
        ra, rb = by.get(("A", scenario)), by.get(("B", scenario))
        if not (ra and rb):
            continue
        cells = []
        for key in ("per_request", "per_request_without_gc"):
            cells += [f"{ra[key]:,}", f"{rb[key]:,}", f"{ra[key] / rb[key]:.3f}"]
        lines.append(f"| {scenario} | " + " | ".join(cells[:3] + cells[3:]) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", required=True, help="build B: another checkout (git worktree add DIR <commit>)")
    ap.add_argument("--requests", type=int, default=300, help="non-streaming requests per scenario")
    ap.add_argument("--streams", type=int, default=300, help="streams in the burst")
    ap.set_defaults(
        upstream_port=0, gateway_port=0, hold_max_connections=0, hold_seconds=30, stream_delay=0.01,
        no_uvloop=False, gateway_log_level=None,
    )  # fmt: skip
    a = ap.parse_args()
    if shutil.which("valgrind") is None:
        log("valgrind is not installed (apt-get install valgrind)")
        return 1
    prepare_process()
    out = HERE / "out" / f"instructions-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True)
    tmp = Path(tempfile.mkdtemp(prefix="tokenroute-instructions-"))
    repos = {"A": REPO, "B": Path(a.baseline).resolve()}
    doc: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "rows": []}
    doc["builds"] = {n: describe(repo) for n, repo in repos.items()}
    try:
        upstream = None
        for name, repo in repos.items():
            (tmp / name).mkdir()
            cli, env = launcher(repo)
            bench = Bench(a, out, tmp / name, cli=cli, repo=repo, env=env)
            if upstream is None:
                bench.start_upstream()
                upstream = bench
            bench.up_port, bench.up_url = upstream.up_port, upstream.up_url
            bench.make_key()
            doc["rows"] += measure(a, bench, name, out)
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    (out / "results.json").write_text(json.dumps(doc, indent=1) + "\n")
    text = report(doc)
    (out / "report.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
