"""`tokenroute backup` beside a busy gateway, and `tokenroute restore`: a consistent copy,
verified, that restores to books that balance; a restore refused while anything has the
database open."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import trio

from proxy.core.config import Settings
from proxy.store import connect, migrate
from proxy.store.backup import BackupError, NotTrusted, backup, verify
from proxy.store.lock import DatabaseLock
from tests.cli_helpers import clean_env, run_cli
from tests.conftest import running_gateway
from tests.fakes.openai_upstream import FakeOpenAI
from tests.retention_helpers import books, make_key, query, seed_usage, unlimit

STREAMS = 50
CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}


async def one_stream(url: str, raw: str, started: list[int]) -> None:
    async with (
        httpx.AsyncClient(timeout=30) as client,
        client.stream("POST", url + "/v1/chat/completions", json={**CHAT, "stream": True},
                      headers={"authorization": f"Bearer {raw}"}) as response,
    ):  # fmt: skip
        assert response.status_code == 200
        first = True
        async for _ in response.aiter_lines():
            if first:
                started.append(1)
                first = False


async def keep_writing(url: str, raw: str, done: trio.Event, count: list[int]) -> None:
    """Plain requests one after another: the writer commits all through the backup."""
    async with httpx.AsyncClient(timeout=30) as client:
        while not done.is_set():
            reply = await client.post(url + "/v1/chat/completions", json=CHAT,
                                      headers={"authorization": f"Bearer {raw}"})  # fmt: skip
            assert reply.status_code == 200, reply.text
            count.append(1)


def rows(db: Path, table: str) -> dict[int, tuple[Any, ...]]:
    return {row[0]: row for row in query(db, f"SELECT * FROM {table} ORDER BY id")}


def tables(db: Path) -> dict[str, dict[int, tuple[Any, ...]]]:
    return {table: rows(db, table) for table in ("usage", "ledger")}


async def test_a_backup_taken_while_50_streams_run_restores_whole(
    nursery: trio.Nursery, tmp_path: Path, fake_openai: FakeOpenAI, gateway_settings: Settings
) -> None:
    fake_openai.chunk_delay = 0.01
    fake_openai.words = [f" w{i}" for i in range(20)]
    fake_openai.release = trio.Event()  # the streams stay open until the copy is taken
    db, copy, env = gateway_settings.db_path, tmp_path / "backup.db", clean_env()
    async with running_gateway(nursery, gateway_settings) as gateway:
        key_id, raw = gateway.create_key(credit="50")
        unlimit(db, key_id)
        seed_usage(db, key_id, [3, 2, 1], per_day=1000)  # a megabyte: the copy takes steps
        started: list[int] = []
        writes: list[int] = []
        stop_writing = trio.Event()
        async with trio.open_nursery() as streams:
            for _ in range(STREAMS):
                streams.start_soon(one_stream, gateway.url, raw, started)
            streams.start_soon(keep_writing, gateway.url, raw, stop_writing, writes)
            with trio.fail_after(15):
                while len(started) < STREAMS:  # noqa: ASYNC110 (the streams report by list)
                    await trio.sleep(0.02)
            committed = await trio.to_thread.run_sync(tables, db)  # the gateway serves on
            assert query(db, "SELECT count(*) FROM holds")[0][0] >= STREAMS
            writes_before = len(writes)
            done = await run_cli("backup", str(copy), "--db", str(db), "--step-pages", "4",
                                 "--json", env=env)  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert len(writes) > writes_before  # the gateway kept committing meanwhile
            refused = await run_cli("restore", str(copy), "--db", str(db), "--json", env=env)
            assert refused.returncode == 1
            assert "open in a running tokenroute" in json.loads(refused.stdout)["error"]["message"]
            stop_writing.set()
            fake_openai.release.set()
        report = json.loads(done.stdout)
        assert report["ok"] and report["problems"] == [] and report["rows"]["usage"] >= 3000
    final = tables(db)
    assert len(final["usage"]) == 3000 + STREAMS + len(writes)  # every request was billed

    # the copy: every row committed before the backup, each exactly as the live database has it
    backed = tables(copy)
    for table in ("usage", "ledger"):
        assert committed[table].keys() <= backed[table].keys()
        assert all(final[table][i] == row for i, row in backed[table].items())
        assert len(backed[table]) == report["rows"][table]
    assert (await books(copy, env))["ok"]
    assert query(db, "SELECT count(*) FROM holds") == [(0,)]

    # the drill: the gateway is stopped now; restore puts the backup in place of the database
    done = await run_cli("restore", str(copy), "--db", str(db), "--json", env=env)
    assert done.returncode == 0, done.stderr
    restored = json.loads(done.stdout)
    assert restored["ok"] and await trio.Path(restored["replaced"]).exists()
    assert rows(db, "usage") == backed["usage"] and rows(db, "ledger") == backed["ledger"]
    assert not await trio.Path(f"{db}-wal").exists()
    assert query(copy, "SELECT count(*) FROM holds") > [(0,)]  # in flight at the copy
    report = await books(db, env)  # the restore released them, and the leases
    assert report["ok"] and report["open_holds"] == 0
    assert query(db, "SELECT sum(leased) FROM api_keys") == [(0,)]
    assert query(db, "SELECT count(*) FROM owners") == [(0,)]
    async with running_gateway(nursery, gateway_settings) as again:
        reply = await again.client(raw).chat.completions.create(**CHAT)  # type: ignore[call-overload]
        assert reply.choices[0].message.content
        await again.wait_usage_rows(len(backed["usage"]) + 1)
    report = await books(db, env)
    assert report["ok"] and report["open_holds"] == 0


def test_the_copy_is_one_snapshot_and_ends_under_constant_writes(tmp_path: Path) -> None:
    """Between every two steps another connection commits. Read outside one transaction,
    each commit would restart the copy from page one and it would never end; inside it,
    the copy takes exactly its pages' steps and holds the rows of its first moment."""
    db = tmp_path / "live.db"
    conn = connect(db)
    migrate(conn)
    conn.close()
    key_id = make_key(db)
    seed_usage(db, key_id, [1], per_day=3000)
    at_start = query(db, "SELECT count(*) FROM usage")[0][0]
    steps: list[tuple[int, int]] = []

    def write_between(left: int, total: int) -> None:
        steps.append((left, total))
        seed_usage(db, key_id, [0.5], per_day=3)

    verified = backup(db, tmp_path / "copy.db", step_pages=16, on_step=write_between)
    total = steps[0][1]
    assert len(steps) == math.ceil(total / 16), "the copy restarted"
    assert [left for left, _ in steps] == sorted((left for left, _ in steps), reverse=True)
    in_copy = query(tmp_path / "copy.db", "SELECT count(*) FROM usage")[0][0]
    assert verified.rows["usage"] == at_start == in_copy
    assert query(db, "SELECT count(*) FROM usage") == [(at_start + 3 * len(steps),)]
    assert verified.problems == [] and verified.schema_version == 11


async def test_backup_and_restore_refuse_what_they_cannot_do_safely(tmp_path: Path) -> None:
    db, copy, env = tmp_path / "gw.db", tmp_path / "copy.db", clean_env()
    conn = connect(db)
    migrate(conn)
    conn.close()
    seed_usage(db, make_key(db), [1], per_day=50)
    assert (await run_cli("backup", str(copy), "--db", str(db), env=env)).returncode == 0
    again = await run_cli("backup", str(copy), "--db", str(db), env=env)
    assert again.returncode == 1 and "exists: give --force" in again.stderr
    forced = await run_cli("backup", str(copy), "--db", str(db), "--force", env=env)
    assert forced.returncode == 0, forced.stderr

    # a process that holds no tokenroute lock (Litestream, a sqlite3 shell) has it open
    holder = await trio.lowlevel.open_process(
        [sys.executable, "-c", "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1]); "
         "c.execute('SELECT 1 FROM usage').fetchall(); print('open', flush=True); time.sleep(60)",
         str(db)], stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        said = b""
        with trio.fail_after(10):
            while b"\n" not in said:
                said += await holder.stdout.receive_some()
        refused = await run_cli("restore", str(copy), "--db", str(db), env=env)
        assert refused.returncode == 1 and "another process has" in refused.stderr
    finally:
        holder.kill()
        await holder.wait()

    # a restore under way: no tokenroute command opens the database meanwhile
    with DatabaseLock(db, exclusive=True):
        busy = await run_cli("admin", "check", "--db", str(db), env=env)
        assert busy.returncode == 1 and "is being restored" in busy.stderr

    # a damaged backup is refused, and the database stays as it was
    damaged = tmp_path / "damaged.db"
    data = bytearray(copy.read_bytes())
    data[4096 * 3 : 4096 * 3 + 4096] = b"\xff" * 4096
    damaged.write_bytes(bytes(data))
    before = rows(db, "usage")
    done = await run_cli("restore", str(damaged), "--db", str(db), env=env)
    assert done.returncode == 1, done.stderr
    assert f"{damaged} fails" in done.stderr or "not a usable database" in done.stderr
    assert rows(db, "usage") == before
    with pytest.raises(NotTrusted):
        verify(damaged)
    with pytest.raises(BackupError, match="no database at"):
        backup(tmp_path / "missing.db", tmp_path / "x.db")
