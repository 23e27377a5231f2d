"""No fault loses money: a database that cannot commit holds the books back, says so, refuses
new paid requests, and commits every settled request exactly once when it recovers.

The faults are real: the database on a small tmpfs that fills up, and a write lock held
by another process for longer than the busy timeout.
"""

from __future__ import annotations

import errno
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest
import trio

from proxy.core.config import Settings
from tests.cli_helpers import run_json
from tests.conftest import RunningGateway, running_gateway
from tests.fakes.openai_upstream import FakeOpenAI

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def small_disk(tmp_path: Path) -> AsyncIterator[Path]:
    """A 16 MiB tmpfs (the tests run as root, as CI does)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)], check=True)
    try:
        yield disk  # type: ignore[misc]
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of the disk; the returned file gives them back."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:  # unbuffered: closing has nothing to flush
        try:
            while True:
                out.write(b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


async def readyz(gateway: RunningGateway) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient() as client:
        reply = await client.get(gateway.url + "/readyz")
    return reply.status_code, reply.json()


async def wait_ready(
    gateway: RunningGateway, ready: bool, saying: str = "", deadline: float = 20
) -> dict[str, Any]:
    """/readyz once it is (not) ready, and says so in its `database` field."""
    with trio.fail_after(deadline):
        while True:
            status, body = await readyz(gateway)
            if (status == 200) == ready and saying in str(body["database"]):
                return body
            await trio.sleep(0.05)


async def ask(client: openai.AsyncOpenAI, outcomes: list[int]) -> None:
    try:
        await client.chat.completions.create(model="openai/gpt-4o-mini", messages=HI)
        outcomes.append(200)
    except openai.APIStatusError as exc:
        outcomes.append(exc.status_code)


async def books_balance(gateway: RunningGateway, answered: int) -> None:
    rows = gateway.usage_rows()
    assert len(rows) == answered == len({r["request_id"] for r in rows})  # each once
    assert all(r["status"] == 200 and r["cost"] > 0 for r in rows)
    books = await run_json("admin", "check", "--db", str(gateway.db_path))
    assert books["ok"] and books["open_holds"] == 0, books


async def test_a_full_disk_holds_the_books_back_and_loses_nothing(
    nursery: trio.Nursery, gateway_settings: Settings, small_disk: Path
) -> None:
    settings = replace(gateway_settings, db_path=small_disk / "gw.db")
    async with running_gateway(nursery, settings) as gateway:
        _, raw = gateway.create_key(credit="10")
        client = gateway.client(raw)
        outcomes: list[int] = []
        await ask(client, outcomes)  # the key's balance is loaded
        filler = fill(small_disk)
        async with trio.open_nursery() as requests:
            for _ in range(6):  # within the key's burst of 10
                requests.start_soon(ask, client, outcomes)
        await wait_ready(gateway, ready=False, saying="full")
        refused: list[int] = []
        await ask(client, refused)  # fail closed: nothing it cannot record
        assert refused == [503]
        filler.unlink()
        await wait_ready(gateway, ready=True)
        await ask(client, outcomes)
        answered = outcomes.count(200)
        assert answered >= 2 and set(outcomes) <= {200, 503}
        with trio.fail_after(5):
            while len(gateway.usage_rows()) < answered:  # noqa: ASYNC110 (the writer's commits)
                await trio.sleep(0.05)
        await books_balance(gateway, answered)


async def test_a_lock_held_elsewhere_past_the_busy_timeout(
    gateway: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    _, raw = gateway.create_key(credit="10")
    client = gateway.client(raw)
    outcomes: list[int] = []
    await ask(client, outcomes)
    holder = await trio.lowlevel.open_process(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            f"c = sqlite3.connect({str(gateway.db_path)!r}, isolation_level=None)\n"
            "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(8)\n",
        ],
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None
    assert (await holder.stdout.receive_some()).startswith(b"locked")
    await ask(client, outcomes)  # answered; its settlement waits for the lock
    await wait_ready(gateway, ready=False, saying="locked")  # past the 5 s busy timeout
    refused: list[int] = []
    await ask(client, refused)
    assert refused == [503]
    await holder.wait()
    await wait_ready(gateway, ready=True)
    assert outcomes == [200, 200]
    with trio.fail_after(5):
        while len(gateway.usage_rows()) < 2:  # noqa: ASYNC110 (the writer's commits)
            await trio.sleep(0.05)
    await books_balance(gateway, 2)


async def test_an_impossible_token_count_cannot_poison_a_batch(
    gateway: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    _, raw = gateway.create_key(credit="10")
    client = gateway.client(raw)
    fake_openai.prompt_tokens = 2**63  # no SQLite integer holds it
    outcomes: list[int] = []
    async with trio.open_nursery() as requests:
        for _ in range(5):
            requests.start_soon(ask, client, outcomes)
    assert outcomes == [200] * 5
    rows = await gateway.wait_usage_rows(5)
    assert all(r["estimated"] == 1 and 0 < r["tokens_in"] < 1000 for r in rows)
    await books_balance(gateway, 5)
