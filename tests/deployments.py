"""Deployments of several gateway processes for the tests: two gateways on one SQLite
file, one gateway with two workers, two gateways on PostgreSQL with Redis."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from proxy.store import open_database
from tests.fakes.openai_upstream import FakeOpenAI
from tests.process_helpers import process_env, serving, wait_until

RECLAIM_AFTER = 3  # seconds of silence after which a process is taken for dead


def query(db: str, sql: str, *args: object) -> list[tuple[object, ...]]:
    conn = open_database(db)  # the SQLite file, or the PostgreSQL URL
    try:
        return [tuple(r) for r in conn.execute(sql, args).fetchall()]
    finally:
        conn.close()


def one(db: str, sql: str, *args: object) -> int:
    return int(query(db, sql, *args)[0][0])  # type: ignore[call-overload]


def environment(tmp_path: Path, fake: FakeOpenAI) -> dict[str, str]:
    config = tmp_path / "gateway.toml"
    config.write_text(f"[database]\nreclaim_after_seconds = {RECLAIM_AFTER}\n")
    return {**process_env(fake), "TOKENROUTE_CONFIG": str(config)}


def setup(tmp_path: Path, fake: FakeOpenAI, place: dict[str, str]) -> tuple[str, dict[str, str]]:
    """(the database, the environment every command and gateway runs with)."""
    env = environment(tmp_path, fake)
    if "redis" in place:
        env |= {"TOKENROUTE_DATABASE_URL": place["db"], "TOKENROUTE_REDIS_URL": place["redis"]}
    return place["db"], env


@dataclass
class Deployment:
    urls: list[str]  # where requests go, in turn
    processes: list[trio.Process]  # what a SIGTERM stops

    def url(self, i: int) -> str:
        return self.urls[i % len(self.urls)]


@asynccontextmanager
async def deployed(kind: str, db: str, env: dict[str, str], log: Path) -> AsyncIterator[Deployment]:
    async with AsyncExitStack() as stack:
        if kind == "gateways":
            served = [
                await stack.enter_async_context(serving(db, env, log, "--workers", "1"))
                for _ in range(2)
            ]
        else:
            served = [await stack.enter_async_context(serving(db, env, log, "--workers", "2"))]
            await wait_until(lambda: one(db, "SELECT count(*) FROM owners") == 2, 20)
        yield Deployment([url for _, url in served], [process for process, _ in served])


async def stop(deployment: Deployment) -> None:
    for process in deployment.processes:
        process.send_signal(signal.SIGTERM)
    with trio.fail_after(30):
        for process in deployment.processes:
            await process.wait()
            assert process.returncode == 0


# Every deployment; PostgreSQL with Redis needs those servers (the scaleout marker).
KINDS = pytest.mark.parametrize(
    "kind", ["gateways", "workers", pytest.param("postgres-redis", marks=pytest.mark.scaleout)]
)
