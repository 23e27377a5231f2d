"""A client that goes away mid-stream: the upstream is cut at once and usage is still recorded."""

from __future__ import annotations

import openai
import pytest
import trio

from tests.cli_helpers import run_json
from tests.conftest import RunningGateway
from tests.fakes.openai_upstream import FakeOpenAI


async def test_client_disconnect_cancels_upstream_and_records_usage(
    gateway: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    fake_openai.chunk_delay = 0.1
    fake_openai.words = [f" word{i}" for i in range(100)]  # ~10 s if read to the end
    key_id, raw = gateway.create_key()
    stream = await gateway.client(raw).chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "Tell me a long story"}],
        stream=True,
    )
    received = 0
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            received += 1
            if received == 3:
                break
    closed_at = trio.current_time()
    await stream.close()

    with trio.fail_after(5):
        while not fake_openai.stream_ends:  # noqa: ASYNC110 (polling the fake's record)
            await trio.sleep(0.005)
    end = fake_openai.stream_ends[0]
    assert not end.completed
    # at once, not when the stream would have ended (~10 s); loose: a shared machine stalls
    assert end.at - closed_at < 2.0, f"upstream closed {end.at - closed_at:.3f} s after the client"
    assert end.chunks_sent < 10

    [row] = await gateway.wait_usage_rows(1)
    assert row["key_id"] == key_id
    assert row["status"] == 499 and row["stream"] == 1
    # no usage chunk ever came: the bill is for what was relayed, estimated
    assert row["estimated"] == 1
    assert 3 <= row["tokens_out"] <= 2 * end.chunks_sent + 2
    assert row["cost"] > 0


async def test_a_non_streaming_client_that_leaves_cancels_the_upstream(
    gateway: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    fake_openai.think_seconds = 60  # a reasoning model, thinking
    key_id, raw = gateway.create_key()
    client = gateway.client(raw, timeout=0.5)
    with pytest.raises(openai.APITimeoutError):  # the client gives up and closes its connection
        await client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "Think hard"}]
        )
    left_at = trio.current_time()
    with trio.fail_after(5):
        while not fake_openai.cancelled:  # noqa: ASYNC110 (polling the fake's record)
            await trio.sleep(0.005)
    # at once, not after its 60 s; loose: a shared machine stalls
    assert fake_openai.cancelled[0] - left_at < 2.0, "the upstream ran on after the client left"
    [row] = await gateway.wait_usage_rows(1)
    assert (row["key_id"], row["status"], row["stream"]) == (key_id, 499, 0)
    # billed what the upstream took in: the prompt, estimated; no output
    assert row["estimated"] == 1 and row["tokens_in"] > 0 and row["tokens_out"] == 0
    assert row["cost"] > 0
    books = await run_json("admin", "check", "--db", str(gateway.db_path))
    assert books["ok"] and books["open_holds"] == 0
