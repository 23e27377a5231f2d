"""Settlement batch commit time on both engines: `record_batch` of N settlements, one
transaction each, through the store's own connection (SQLite WAL, or PostgreSQL).

    python ops/bench/store_engines.py [--batches 200] [--size 64] [--url postgresql://...]

Without `--url` it starts a throwaway PostgreSQL cluster the way the tests do
(`tests/pg_cluster.py`: fsync off, so compare it with SQLite's synchronous=NORMAL WAL,
which does not fsync each commit either). Prints p50 / p90 / max ms per batch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from proxy.store import accounts as acc
from proxy.store import ledger as books
from proxy.store import migrate, open_database
from proxy.store.usage import UsageRecord


def run(target: str | Path, batches: int, size: int) -> list[float]:
    conn: Any = open_database(target)
    migrate(conn)
    with books.transaction(conn):
        user = acc.create_user(conn, "bench@example.com")
        keys = [acc.create_key(conn, user_id=user.id, name=f"k{i}", key_hash=bytes([i]) * 32,
                               key_prefix="sk-tr-b", credit=10**15).id for i in range(16)]  # fmt: skip
    took = []
    n = 0
    for _ in range(batches):
        settlements = []
        for _ in range(size):
            n += 1
            settlements.append((UsageRecord(f"req-{n}", keys[n % 16], user.id, "m", "m", "p",
                                            120, 40, 0, False, 5_000, 200, None, 300, 90, True,
                                            int(time.time() * 1000)), None))  # fmt: skip
        started = time.perf_counter()
        with books.transaction(conn):
            books.record_batch(conn, [], settlements)
        took.append((time.perf_counter() - started) * 1000)
    assert books.check(conn) == []
    conn.close()
    return took


def report(name: str, took: list[float]) -> None:
    took.sort()
    p90 = took[int(len(took) * 0.9)]
    print(f"{name:11} p50 {statistics.median(took):6.2f} ms  p90 {p90:6.2f} ms  max {took[-1]:6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        report("sqlite", run(Path(folder) / "bench.db", args.batches, args.size))
    cluster = None
    url = args.url
    if url is None:
        from tests.pg_cluster import Cluster

        cluster = Cluster().start()
        url = cluster.create_database()
    try:
        report("postgresql", run(url, args.batches, args.size))
    finally:
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    main()
