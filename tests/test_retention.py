"""Usage retention: old raw rows go, in small batches by the writer, while the totals users
and operators read (from the daily rollups) and the ledger stay exactly as they were."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from proxy.core.config import Settings, load_settings
from proxy.core.errors import ConfigError
from proxy.services import Services
from proxy.store import connect
from proxy.store.retention import cutoff_for
from tests.cli_helpers import clean_env, run_cli
from tests.conftest import INTERNAL_SECRET, running_gateway
from tests.retention_helpers import DAY_MS, books, make_key, now_ms, problems, query, seed_usage

OLD = [500, 400, 200, 45, 31]  # days ago: pruned with usage_days = 30
KEPT = [29.5, 5, 0.01]  # kept


def settings_with(tmp_path: Path, env: dict[str, str], toml: str) -> Settings:
    config = tmp_path / "tokenroute.toml"
    config.write_text(toml)
    return load_settings(
        {**env, "TOKENROUTE_INTERNAL_SECRET": INTERNAL_SECRET, "TOKENROUTE_SHUTDOWN_GRACE": "2"},
        config,
        {"db_path": tmp_path / "gw.db", "port": 0},
    )


async def usage(env: dict[str, str], days: int) -> dict[str, Any]:
    done = await run_cli("usage", "--days", str(days), "--json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


async def test_retention_keeps_usage_totals_and_the_ledger(
    nursery: trio.Nursery, tmp_path: Path, gateway_env: dict[str, str]
) -> None:
    settings = settings_with(tmp_path, gateway_env, "[retention]\nusage_days = 30\n")
    async with running_gateway(nursery, settings) as gateway:
        key_id, raw = gateway.create_key(credit="10")
        client = gateway.client(raw)
        for _ in range(3):  # today's requests, through the gateway
            await client.chat.completions.create(
                model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
        await gateway.wait_usage_rows(3)
        seeded = seed_usage(gateway.db_path, key_id, OLD + KEPT, per_day=40)
        db, user = gateway.db_path, clean_env(TOKENROUTE_API_URL=gateway.url,
                                              TOKENROUTE_API_KEY=raw)  # fmt: skip
        old_rows = query(db, "SELECT count(*) FROM usage WHERE created_at < ?",
                         cutoff_for(now_ms(), 30))[0][0]  # fmt: skip
        assert old_rows == 40 * len(OLD)
        year, month = await usage(user, 365), await usage(user, 30)
        assert year["total_requests"] == 3 + 32 * 6  # 200, 45, 31, 29.5, 5 days ago, today
        ledger = query(db, "SELECT * FROM ledger ORDER BY id")
        assert (await books(db, clean_env()))["ok"]

        operator = ("--db", str(db), "--config", str(tmp_path / "tokenroute.toml"), "--json")
        done = await run_cli("admin", "prune-usage", *operator, env=clean_env())
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["deleted"] == old_rows and report["usage_days"] == 30
        assert report["batches"] >= len(OLD)  # a day at a time, each its own writer jobs

        assert await usage(user, 365) == year and await usage(user, 30) == month
        assert query(db, "SELECT * FROM ledger ORDER BY id") == ledger  # not a row touched
        left = query(db, "SELECT count(*), min(created_at) FROM usage")[0]
        assert left[0] == 3 + seeded - old_rows
        assert left[1] >= cutoff_for(now_ms(), 30)
        report = await books(db, clean_env())
        assert report["ok"], report["problems"]
        state = query(db, "SELECT horizon_ms, pruned_rows FROM usage_retention")
        assert state == [(cutoff_for(now_ms(), 30), old_rows)]

        # the gateway keeps billing, on new usage ids, and the books still balance
        await client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "again"}]
        )
        await gateway.wait_usage_rows(left[0] + 1)
        assert (await usage(user, 365))["total_requests"] == year["total_requests"] + 1
        assert (await books(db, clean_env()))["ok"]
        again = await run_cli("admin", "prune-usage", *operator, env=clean_env())
        assert json.loads(again.stdout)["deleted"] == 0


async def test_the_server_prunes_by_itself_in_small_batches_while_serving(
    nursery: trio.Nursery, tmp_path: Path, gateway_env: dict[str, str]
) -> None:
    toml = "[retention]\nusage_days = 30\ninterval_seconds = 0.2\nbatch_rows = 100\n"
    settings = settings_with(tmp_path, gateway_env, toml)
    async with running_gateway(nursery, settings) as gateway:
        key_id, raw = gateway.create_key(credit="10")
        seed_usage(gateway.db_path, key_id, [40, 41, 42], per_day=400)  # 12 batches of 100
        client = gateway.client(raw)
        with trio.fail_after(20):
            while query(gateway.db_path, "SELECT count(*) FROM usage WHERE request_id LIKE "
                        "'seed-%'")[0][0]:  # fmt: skip
                await client.chat.completions.create(  # requests are served meanwhile
                    model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
                )
                await trio.sleep(0.25)  # within the key's rate limit
        assert query(gateway.db_path, "SELECT pruned_rows FROM usage_retention") == [(1200,)]
        assert (await books(gateway.db_path, clean_env()))["ok"]


async def test_a_day_whose_rollups_disagree_is_not_deleted(
    services: Services, gateway_settings: Settings
) -> None:
    db = gateway_settings.db_path
    key_id = make_key(db)
    seed_usage(db, key_id, [300, 200, 100], per_day=10)
    bad_day = query(db, "SELECT min(day) FROM usage_daily WHERE day > "
                    "(SELECT min(day) FROM usage_daily)")[0][0]  # fmt: skip
    _commit(db, "UPDATE usage_daily SET requests = requests + 1 WHERE day = ?", bad_day)
    report = await services.retention.prune(30)
    assert report.not_rolled_up == [bad_day] and report.deleted == 10
    days = query(db, "SELECT DISTINCT date(created_at / 1000, 'unixepoch') FROM usage")
    assert len(days) == 2 and min(days)[0] == bad_day  # that day and what came after it
    assert any("usage_daily counts" in p for p in problems(db))


async def test_the_books_check_still_has_teeth_for_pruned_days(
    services: Services, gateway_settings: Settings
) -> None:
    db = gateway_settings.db_path
    seed_usage(db, make_key(db), [100, 99], per_day=10)
    assert (await services.retention.prune(30)).deleted == 19  # the newest row stays
    assert query(db, "SELECT count(*) FROM usage") == [(1,)]
    assert problems(db) == []
    day = query(db, "SELECT min(day) FROM usage_key_days")[0][0]
    _commit(db, "UPDATE usage_key_days SET cost = cost + 7 WHERE day = ?", day)
    found = problems(db)
    assert any(f"rolled-up day {day}, key" in p and "ledger debits" in p for p in found)
    assert any(f"rolled-up day {day}: the rollups disagree" in p for p in found)


async def test_usage_ids_are_never_reused_and_size_stays_bounded(
    services: Services, gateway_settings: Settings
) -> None:
    """Ten simulated days of steady traffic with three days kept: the file stops growing
    (deleted rows' pages are reused), and the newest row always stays, so new rows never
    take an id a ledger debit already names."""
    db = gateway_settings.db_path
    key_id = make_key(db)
    start = now_ms() - 20 * DAY_MS
    sizes = []
    for day in range(10):
        at = start + day * DAY_MS
        seed_usage(db, key_id, [0], per_day=1500, at=at, free=True)  # no ledger rows
        await services.retention.prune(3, now_ms=at + DAY_MS // 2)
        sizes.append(query(db, "PRAGMA page_count")[0][0])
    assert sizes[-1] <= sizes[5] * 1.1, sizes  # bounded, not growing by a day's rows a day
    assert sizes[-1] < sizes[2] * 2, sizes
    newest = query(db, "SELECT max(id) FROM usage")[0][0]
    await services.retention.prune(1, now_ms=now_ms() + 30 * DAY_MS)  # everything is old
    assert query(db, "SELECT id FROM usage") == [(newest,)]
    seed_usage(db, key_id, [0], per_day=5)
    assert query(db, "SELECT min(id) FROM usage WHERE id > ?", newest) == [(newest + 1,)]
    assert problems(db) == []


async def test_retention_off_keeps_everything(services: Services, gateway_settings: Settings
                                              ) -> None:  # fmt: skip
    db = gateway_settings.db_path
    seed_usage(db, make_key(db), [1000], per_day=5)
    report = await services.retention.prune(0)
    assert report.usage_days == 0 and report.deleted == 0
    assert query(db, "SELECT count(*) FROM usage") == [(5,)]


@pytest.mark.parametrize(
    ("toml", "error"),
    [
        ("[retention]\nusage_days = -1\n", "[retention] usage_days: expected 0 to 36600, got -1"),
        ("[retention]\nusage_days = 'a year'\n", "[retention] usage_days: expected an integer"),
        ("[retention]\nbatch_rows = 10\n", "[retention] batch_rows: expected 100 to 100000"),
        ("[retention]\nkeep = 3\n", "config [retention]: unknown setting 'keep'"),
        ("[retention]\ninterval_seconds = 0\n", "[retention] interval_seconds: expected at least"),
        ("[database]\nwal_autocheckpoint = -5\n", "[database] wal_autocheckpoint: expected 0"),
    ],
)
def test_bad_retention_settings_are_one_line(tmp_path: Path, toml: str, error: str) -> None:
    config = tmp_path / "tokenroute.toml"
    config.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings({}, config)
    assert str(caught.value).startswith(error) and "\n" not in str(caught.value)


def test_retention_settings_and_their_sources(tmp_path: Path) -> None:
    config = tmp_path / "tokenroute.toml"
    config.write_text("[retention]\nusage_days = 0\n[database]\nwal_autocheckpoint = 0\n")
    settings = load_settings({}, config)
    assert settings.usage_days == 0 and settings.wal_autocheckpoint == 0
    assert settings.sources["usage_days"] == "[retention] usage_days"
    defaults = load_settings({})
    assert (defaults.usage_days, defaults.retention_batch, defaults.wal_autocheckpoint) == (
        400, 5000, 1000,
    )  # fmt: skip


def _commit(db: Path, sql: str, *args: Any) -> None:
    conn = connect(db)
    try:
        conn.execute(sql, args)
    finally:
        conn.close()
