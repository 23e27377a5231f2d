"""GCRA calls per second in each limit store: the workers' shared table (one process, and
several at once on one key) and Redis through redis-py's sync client in `trio.to_thread`
(what the gateway uses) against coredis on trio (the alternative that was measured), one
call at a time and 16 at once, with the CPU each call costs this process. Starts its own
redis-server (Debian's package) on a free port in a temporary directory. From the
repository root, with the project's venv:

    python ops/bench/limits_bench.py [--calls 14000] [--rounds 7] [--processes 2]

coredis is not a dependency: `pip install coredis` to measure it too.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis
import trio

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from proxy.access import redis_scripts as lua  # noqa: E402
from proxy.access.redis_limits import RedisLimits  # noqa: E402
from proxy.access.shared_state import SharedState  # noqa: E402
from tests.redis_helpers import redis_server  # noqa: E402

INTERVAL, BURST = 1e-7, 10**9  # every call admitted: the cost of the step, not of refusals


def shared_calls(path: Path, worker: int, calls: int) -> float:
    state = SharedState.open(path, worker)
    began = time.perf_counter()
    for _ in range(calls):
        state.admit("bench-key", INTERVAL, BURST)
    state.close()
    return calls / (time.perf_counter() - began)


def bench_shared(folder: Path, calls: int, processes: int) -> None:
    path = folder / "limits.shm"
    supervisor = SharedState.create(path, max(processes, 1))
    print(f"shared table, 1 process:            {shared_calls(path, 0, calls * 5):9.0f} calls/s")
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        began = time.perf_counter()
        pool.starmap(shared_calls, [(path, w, calls * 5) for w in range(processes)])
        total = calls * 5 * processes / (time.perf_counter() - began)
    print(f"shared table, {processes} processes, one key: {total:9.0f} calls/s (together)")
    supervisor.close()


async def rate(calls: int, concurrency: int, one: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """(calls per second, this process's CPU microseconds per call: what the gateway pays,
    and what other load on the machine hardly changes)."""

    async def worker(count: int) -> None:
        for _ in range(count):
            await one()

    began, cpu = time.perf_counter(), time.process_time()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker, calls // concurrency)
    return calls / (time.perf_counter() - began), (time.process_time() - cpu) * 1e6 / calls


async def bench_redis(url: str, calls: int, rounds: int) -> None:
    """Each variant in turn, `rounds` times (the machine's other load hits them alike)."""
    store = RedisLimits(url, reclaim_after=15, heartbeat=3)
    client = redis.Redis.from_url(url, max_connections=32)
    script = client.register_script(lua.GCRA)
    args = [1, BURST, 1]
    variants: dict[str, tuple[int, Callable[[], Awaitable[object]]]] = {}
    for concurrency in (1, 16):
        limiter = trio.CapacityLimiter(concurrency)

        def call(limiter: trio.CapacityLimiter = limiter) -> Awaitable[object]:
            return trio.to_thread.run_sync(lambda: script(keys=["bench-key"], args=args), limiter=limiter)

        variants[f"redis-py in to_thread (RedisLimits.admit), {concurrency} at once"] = (
            concurrency, lambda: store.admit("bench-key", INTERVAL, BURST))  # fmt: skip
        variants[f"redis-py in to_thread, the script alone, {concurrency} at once"] = (concurrency, call)
    async with contextlib.AsyncExitStack() as stack:
        try:
            import coredis
        except ImportError:
            print("coredis: not installed (pip install coredis to compare)")
        else:
            native = await stack.enter_async_context(coredis.Redis.from_url(url))
            native_script = native.register_script(lua.GCRA)
            for concurrency in (1, 16):
                variants[f"coredis on trio, the script alone, {concurrency} at once"] = (
                    concurrency, lambda: native_script(["bench-key"], args))  # fmt: skip
        results: dict[str, list[tuple[float, float]]] = {label: [] for label in variants}
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            for _ in range(rounds):
                for label, (concurrency, one) in variants.items():
                    results[label].append(await rate(calls // rounds, concurrency, one))
            await store.aclose()
            nursery.cancel_scope.cancel()
    client.close()
    for label, measured in results.items():
        rates, cpu = [r for r, _ in measured], [c for _, c in measured]
        print(f"{label + ':':<60}{statistics.median(rates):7.0f} calls/s (median of {rounds}, best "
              f"{max(rates):.0f}), {statistics.median(cpu):4.0f} us CPU a call")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=14000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        bench_shared(Path(folder), args.calls, args.processes)
        with redis_server(Path(folder) / "redis") as url:
            trio.run(bench_redis, url, args.calls, args.rounds)


if __name__ == "__main__":
    main()
