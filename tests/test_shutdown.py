"""SIGTERM: stop accepting, let streams finish within the grace, then end them, still billing."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx2 as httpx
import orjson
import trio

from proxy.store import connect
from tests.fakes.openai_upstream import FakeOpenAI
from tests.process_helpers import gateway_process


async def read_stream(url: str, raw: str, lines: list[bytes], first: trio.Event) -> None:
    body = {
        "model": "openai/gpt-4o-mini",
        "stream": True,
        "messages": [{"role": "user", "content": "a long answer please"}],
    }
    async with (
        httpx.AsyncClient(timeout=30) as client,
        client.stream(
            "POST",
            url + "/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {raw}"},
        ) as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                lines.append(line.encode())
                if len(lines) == 2:
                    first.set()


def usage_rows(db: Path) -> list[dict[str, object]]:
    conn = connect(db)
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM usage")]
    finally:
        conn.close()


async def test_sigterm_lets_a_stream_finish_within_grace(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.chunk_delay = 0.15
    fake_openai.words = [f" w{i}" for i in range(10)]  # ~1.5 s
    async with gateway_process(tmp_path, fake_openai, grace=20) as (process, url, raw):
        lines: list[bytes] = []
        first = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_stream, url, raw, lines, first)
            await first.wait()
            process.send_signal(signal.SIGTERM)
            await trio.sleep(0.3)
            # no new connections once shutdown began
            async with httpx.AsyncClient() as client:
                try:
                    await client.get(url + "/healthz")
                    accepted = True
                except httpx.TransportError:
                    accepted = False
            assert not accepted
        assert lines[-1] == b"data: [DONE]"
        with trio.fail_after(10):
            assert await process.wait() == 0
    [row] = usage_rows(tmp_path / "gw.db")
    assert row["status"] == 200 and row["tokens_out"] == 10


async def test_sigterm_ends_streams_after_grace_and_bills_them(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.chunk_delay = 0.2
    fake_openai.words = [f" w{i}" for i in range(100)]  # ~20 s
    async with gateway_process(tmp_path, fake_openai, grace=0.5) as (process, url, raw):
        lines: list[bytes] = []
        first = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_stream, url, raw, lines, first)
            await first.wait()
            signalled = trio.current_time()
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(10):
                assert await process.wait() == 0
            exited = trio.current_time()
        assert exited - signalled < 5
        # the client is told, in OpenAI's shape, rather than left with a cut connection
        assert b"data: [DONE]" not in lines
        error = orjson.loads(lines[-1][len(b"data: ") :])["error"]
        assert error["code"] == 503 and "shutting down" in error["message"]
        assert len(fake_openai.stream_ends) == 1 and not fake_openai.stream_ends[0].completed
    [row] = usage_rows(tmp_path / "gw.db")
    assert row["status"] == 503 and row["estimated"] == 1
    assert int(row["tokens_out"]) >= 1 and int(row["cost"]) > 0
    assert orjson.loads(lines[1][len(b"data: ") :])["model"] == "openai/gpt-4o-mini"


async def test_sigterm_exits_once_the_last_stream_ends(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """Clients keep their connections open (as SDK clients do); the grace is long."""
    fake_openai.chunk_delay = 0.15
    fake_openai.words = [f" w{i}" for i in range(10)]  # ~1.5 s
    body = {
        "model": "openai/gpt-4o-mini",
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    async with (
        gateway_process(tmp_path, fake_openai, grace=60) as (process, url, raw),
        httpx.AsyncClient(timeout=30) as idle,
        httpx.AsyncClient(timeout=30) as busy,
    ):
        assert (await idle.get(url + "/healthz")).status_code == 200  # kept alive, idle
        assert (await idle.get(url + "/v1/models")).status_code == 401  # the edge's own route
        answered = await idle.post(  # the chat route's complete answer, then idle too
            url + "/v1/chat/completions",
            json={**body, "stream": False},
            headers={"authorization": f"Bearer {raw}"},
        )
        assert answered.status_code == 200
        lines = []
        async with busy.stream(
            "POST",
            url + "/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {raw}"},
        ) as reply:
            async for line in reply.aiter_lines():
                lines.append(line)
                if len(lines) == 2:
                    process.send_signal(signal.SIGTERM)
        ended = trio.current_time()
        assert "data: [DONE]" in lines
        with trio.fail_after(10):
            assert await process.wait() == 0
        assert trio.current_time() - ended < 3, "the process outlived its last stream"
