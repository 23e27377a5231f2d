#!/usr/bin/env python3
"""How fast the admin pages render from a database with many usage rows.

  .venv/bin/python ops/bench/admin_pages.py [--rows 1000000] [--rounds 5]

Builds a database with `--rows` usage rows over 60 days (1,000 keys of 100 users, ten
models, one request in fifty failing), starts `tokenroute serve` on it, signs in as an
administrator and times each page (server time to the whole answer, median and worst of
`--rounds`). Writes ops/bench/out/admin-pages-<time>.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2 as httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from proxy.access import keys as apikeys  # noqa: E402
from proxy.store import connect, migrate  # noqa: E402

PAGES = ("/admin/", "/admin/users", "/admin/keys", "/admin/usage", "/admin/usage?status=error",
         "/admin/audit", "/admin/models", "/admin/money")  # fmt: skip
EMAIL, PASSWORD = "bench-admin@example.com", "bench admin password"
MODELS = [f"openai/model-{i}" for i in range(10)]


def build(db: Path, rows: int) -> tuple[str, str]:
    """The database; (a user id, a key id) that own many rows."""
    conn = connect(db)
    migrate(conn)
    rng = random.Random(1)
    now = int(time.time() * 1000)
    users, keys = [], []
    conn.execute("BEGIN")
    for u in range(100):
        user_id = f"user{u:04d}"
        users.append(user_id)
        conn.execute("INSERT INTO users (id, email, created_at) VALUES (?, ?, ?)",
                     (user_id, f"user{u}@example.com", now))  # fmt: skip
        for k in range(10):
            key_id = f"key{u:04d}{k}"
            keys.append((key_id, user_id))
            raw = apikeys.generate_key()
            conn.execute(
                "INSERT INTO api_keys (id, user_id, name, key_hash, key_prefix, balance, "
                "created_at) VALUES (?, ?, ?, ?, ?, 0, ?)",
                (key_id, user_id, f"key {k}", apikeys.hash_key(raw), raw[:10], now),
            )
    conn.execute("COMMIT")
    span = 60 * 86_400_000
    batch = []
    for i in range(rows):
        key_id, user_id = keys[rng.randrange(len(keys))]
        model = MODELS[rng.randrange(len(MODELS))]
        failed = rng.random() < 0.02
        batch.append((f"req_{i}", key_id, user_id, model, model, "openai", rng.randint(10, 2000),
                      rng.randint(1, 800), 0 if failed else rng.randint(100, 90_000),
                      502 if failed else 200, "upstream said no" if failed else None,
                      rng.randint(80, 9000), rng.randint(40, 900),
                      now - span + (span * i) // rows))  # fmt: skip
        if len(batch) == 50_000:
            _insert(conn, batch)
            batch = []
    if batch:
        _insert(conn, batch)
    conn.execute("ANALYZE")
    conn.close()
    return users[0], keys[0][0]


def _insert(conn: object, batch: list[tuple[object, ...]]) -> None:
    conn.execute("BEGIN")  # type: ignore[attr-defined]
    conn.executemany(  # type: ignore[attr-defined]
        "INSERT INTO usage (request_id, key_id, user_id, requested_model, served_model, provider, "
        "tokens_in, tokens_out, cost, status, error, latency_ms, ttft_ms, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        batch,
    )
    conn.execute("COMMIT")  # type: ignore[attr-defined]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tokenroute-admin-bench-"))
    db = tmp / "bench.db"
    started = time.perf_counter()
    user_id, key_id = build(db, a.rows)
    print(f"built {a.rows:,} usage rows in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    tokenroute = str(Path(sys.executable).with_name("tokenroute"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENROUTE_", "OPENAI_"))}
    env["OPENAI_API_KEY"] = "sk-unused"
    subprocess.run([tokenroute, "admin", "create-user", "--email", EMAIL, "--admin",
                    "--password-stdin", "--db", str(db)], input=PASSWORD + "\n", text=True,
                   env=env, check=True, capture_output=True)  # fmt: skip
    port = free_port()
    server = subprocess.Popen([tokenroute, "serve", "--db", str(db), "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    results = {}
    try:
        with httpx.Client(base_url=url, timeout=120) as client:
            for _ in range(200):
                try:
                    client.get("/healthz")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            page = client.get("/admin/sign-in")
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
            client.post("/admin/sign-in", data={"csrf_token": token, "email": EMAIL,
                                                "password": PASSWORD})  # fmt: skip
            pages = [*PAGES, f"/admin/users/{user_id}", f"/admin/keys/{key_id}",
                     f"/admin/usage?user={user_id}", f"/admin/usage?key={key_id}"]  # fmt: skip
            for path in pages:
                times = []
                for _ in range(a.rounds):
                    began = time.perf_counter()
                    reply = client.get(path)
                    times.append((time.perf_counter() - began) * 1000)
                    assert reply.status_code == 200, (path, reply.status_code)
                results[path] = {"median_ms": round(statistics.median(times), 1),
                                 "max_ms": round(max(times), 1)}  # fmt: skip
                print(f"{path}: {results[path]}", file=sys.stderr)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    out = ROOT / "ops" / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"admin-pages-{stamp}.json").write_text(json.dumps({"rows": a.rows, "pages": results}, indent=1))
    print("| page | median ms | worst ms |\n|---|---|---|")
    for path, r in results.items():
        print(f"| `{path}` | {r['median_ms']} | {r['max_ms']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
