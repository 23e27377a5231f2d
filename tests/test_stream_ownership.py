"""A stream is owned by `ChatService.open_stream`: leaving the block releases everything.

However a stream ends (never read, cancelled before its first event, failed mid-way,
read to the end), its exit frees the key's stream slot, settles its hold with a usage
row, closes the upstream connection and frees the upstream's cooldown probe. The
services run on a real database file against the fake OpenAI upstream over HTTP.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio

from proxy.core.config import Settings
from proxy.core.errors import UpstreamError
from proxy.core.money import usd_to_units
from proxy.services import (
    Chunks,
    KeyRecord,
    Services,
    StreamDone,
    StreamEvent,
    StreamFailed,
)
from tests.conftest import INTERNAL_SECRET, running_services
from tests.fakes.openai_upstream import FakeOpenAI

BODY = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def services(nursery: trio.Nursery, gateway_settings: Settings) -> AsyncIterator[Services]:
    # A cooled upstream is probed again at once: a probe that leaks blocks the next request.
    async with running_services(
        nursery, replace(gateway_settings, cooldown_seconds=0.0)
    ) as running:
        yield running


async def one_stream_key(services: Services) -> KeyRecord:
    await services.accounts.create_user("owner@example.com")
    new = await services.accounts.create_key("owner@example.com", "k", credit=usd_to_units("1"))
    await services.accounts.set_limits(new.record.id, max_streams=1)  # a leaked slot shows
    return await services.accounts.authenticate(f"Bearer {new.raw}")


async def cool_down(services: Services, fake: FakeOpenAI, key: KeyRecord) -> None:
    """Three upstream failures: the next request to it is the probe."""
    fake.status = 500
    for n in range(3):
        call = services.chat.prepare(key, BODY, f"req_fail_{n}", None, trio.current_time())
        with pytest.raises(UpstreamError):
            await services.chat.complete(call)
    fake.status = 200
    [state] = (await services.status.readiness(INTERNAL_SECRET))[1]["upstreams"].values()  # type: ignore[union-attr]
    assert "fake failure 500" in state["last_error"]  # cooled for 0 s: the next call probes


async def read_all(services: Services, key: KeyRecord, request_id: str) -> list[StreamEvent]:
    call = services.chat.prepare(key, {**BODY, "stream": True}, request_id, None, 0.0)
    async with services.chat.open_stream(call) as stream:
        return [event async for event in stream]


async def end_stream(services: Services, key: KeyRecord, how: str) -> None:
    call = services.chat.prepare(key, {**BODY, "stream": True}, "req_owned", None, 0.0)
    if how == "never read":
        async with services.chat.open_stream(call):
            pass
    elif how == "cancelled before its first event":
        with trio.CancelScope() as scope:
            async with services.chat.open_stream(call):
                scope.cancel()
                await trio.sleep(1)
        assert scope.cancelled_caught
    else:
        async with services.chat.open_stream(call) as stream:
            events = [event async for event in stream]
        assert any(isinstance(e, Chunks) for e in events)
        assert isinstance(events[-1], StreamFailed if how == "failed mid-way" else StreamDone)


def usage_row(db: Path, request_id: str) -> dict[str, Any] | None:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM usage WHERE request_id = ?", (request_id,)).fetchone()
        return dict(row) if row else None


@pytest.mark.parametrize(
    ("how", "status", "completed"),
    [
        ("never read", 499, False),
        ("cancelled before its first event", 499, False),
        ("failed mid-way", 502, False),
        ("read to the end", 200, True),
    ],
)
async def test_leaving_the_stream_releases_everything(
    services: Services, fake_openai: FakeOpenAI, how: str, status: int, completed: bool
) -> None:
    key = await one_stream_key(services)
    await cool_down(services, fake_openai, key)
    fake_openai.words = [f" w{i}" for i in range(20)]
    fake_openai.chunk_delay = 0.02  # an unread stream is cut long before it ends
    if how == "failed mid-way":
        fake_openai.fail_mid_stream_after = 2

    await end_stream(services, key, how)

    with trio.fail_after(5):  # the upstream saw its connection end
        while not fake_openai.stream_ends:  # noqa: ASYNC110 (polling the fake's record)
            await trio.sleep(0.01)
    assert fake_openai.stream_ends[0].completed is completed
    db = services.settings.db_path
    with trio.fail_after(5):  # the hold is settled by a usage row, in the same transaction
        while (row := usage_row(db, "req_owned")) is None:  # noqa: ASYNC110
            await trio.sleep(0.01)
    assert row["status"] == status and row["reserved"] > 0
    books = await services.accounts.check()
    assert books.problems == [] and books.open_holds == 0

    # The slot (max_streams = 1) and the upstream's probe are free: the next stream is served.
    fake_openai.fail_mid_stream_after = None
    events = await read_all(services, key, "req_next")
    assert isinstance(events[-1], StreamDone)
