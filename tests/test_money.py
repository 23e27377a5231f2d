"""A key is a hard spend cap: holds before the upstream call, exact settlement after."""

from __future__ import annotations

from typing import Any

import openai
import pytest
import trio

from proxy.store import ledger as books
from tests.cli_helpers import run_cli
from tests.conftest import RunningGateway
from tests.fakes.openai_upstream import FakeOpenAI

MODEL = "openai/gpt-4o-mini"  # $0.15 / $0.60 per 1M tokens: 150 / 600 nano-USD a token
# The fake reports 11 prompt and 7 completion tokens for a plain request.
COST = 11 * 150 + 7 * 600
HI = [{"role": "user", "content": "hi"}]


def books_of(gateway: RunningGateway, key_id: str) -> dict[str, Any]:
    conn = gateway.db()
    try:
        balance = conn.execute("SELECT balance FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        ledger = conn.execute(
            "SELECT kind, amount, usage_id FROM ledger WHERE key_id = ? ORDER BY id", (key_id,)
        ).fetchall()
        holds = conn.execute("SELECT count(*) FROM holds").fetchone()[0]
        return {
            "balance": balance[0],
            "ledger": [dict(r) for r in ledger],
            "holds": holds,
            "problems": books.check(conn),
        }
    finally:
        conn.close()


def raise_limits(gateway: RunningGateway, key_id: str, **limits: Any) -> None:
    conn = gateway.db()
    try:
        with books.transaction(conn):
            books.set_limits(conn, key_id, **limits)
    finally:
        conn.close()


async def test_concurrent_requests_never_spend_more_than_the_key_holds(
    gateway: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    key_id, raw = gateway.create_key(credit=f"{20 * COST / 1e9:.9f}")  # pays for 20
    raise_limits(gateway, key_id, rps=10_000, burst=1_000)
    client = gateway.client(raw)
    fake_openai.chunk_delay = 0.0
    outcomes: list[str] = []

    async def one() -> None:
        try:
            await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=7
            )
            outcomes.append("ok")
        except openai.APIStatusError as exc:
            assert exc.status_code == 402, exc
            assert exc.body["type"] == "insufficient_quota"  # type: ignore[index]
            outcomes.append("402")

    async with trio.open_nursery() as nursery:
        for _ in range(200):
            nursery.start_soon(one)

    ok = outcomes.count("ok")
    assert ok + outcomes.count("402") == 200
    assert 1 <= ok <= 20 and outcomes.count("402") >= 180
    rows = await gateway.wait_usage_rows(ok)
    assert len(rows) == ok and all(r["status"] == 200 and r["cost"] == COST for r in rows)
    state = books_of(gateway, key_id)
    assert state["balance"] == 20 * COST - ok * COST >= 0
    assert state["balance"] == sum(row["amount"] for row in state["ledger"])
    assert [r["amount"] for r in state["ledger"] if r["kind"] == "usage"] == [-COST] * ok
    assert state["holds"] == 0 and state["problems"] == []
    assert len(fake_openai.requests) == ok  # a refused request never reached the upstream


async def test_no_balance_is_402_without_calling_the_upstream(
    gateway: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    _, raw = gateway.create_key(credit="0")
    with pytest.raises(openai.APIStatusError) as caught:
        await gateway.client(raw).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 402
    message = caught.value.body["message"]  # type: ignore[index]
    assert "$0.00" in message and MODEL in message and "Top up" in message
    assert fake_openai.requests == []
    assert gateway.usage_rows() == []


async def test_completion_limit_is_lowered_to_what_the_balance_pays_for(
    gateway: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    key_id, raw = gateway.create_key(credit="0.001")  # 1,000,000 units: ~1,600 output tokens
    client = gateway.client(raw)
    asked = await client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=100_000
    )
    clamped = int(asked.headers["x-tokenroute-max-tokens"])
    assert fake_openai.requests[-1]["max_tokens"] == clamped
    assert 1_000 < clamped < 1_667  # 1,000,000 / 600, less the prompt

    unlimited = await client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}]
    )
    # no limit asked: OpenAI gets the field its newer models accept
    sent = fake_openai.requests[-1]
    assert "max_tokens" not in sent
    assert sent["max_completion_tokens"] == int(unlimited.headers["x-tokenroute-max-tokens"])

    small = await client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=50
    )
    assert "x-tokenroute-max-tokens" not in small.headers  # affordable: left as asked
    assert fake_openai.requests[-1]["max_tokens"] == 50
    await gateway.wait_usage_rows(3)
    state = books_of(gateway, key_id)
    assert state["balance"] == 1_000_000 - 3 * COST and state["problems"] == []


async def test_failed_upstream_costs_nothing_and_releases_the_hold(
    gateway: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    key_id, raw = gateway.create_key(credit="1")
    fake_openai.status = 500
    with pytest.raises(openai.APIStatusError) as caught:
        await gateway.client(raw).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 502
    [row] = await gateway.wait_usage_rows(1)
    assert row["cost"] == 0 and row["reserved"] > 0 and row["status"] == 502
    state = books_of(gateway, key_id)
    assert state["balance"] == 10**9 and state["holds"] == 0
    assert [r["kind"] for r in state["ledger"]] == ["grant"]


async def test_an_aborted_stream_is_billed_once_for_what_was_relayed(
    gateway: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    key_id, raw = gateway.create_key(credit="1")
    fake_openai.chunk_delay = 0.05
    fake_openai.words = [f" w{i}" for i in range(100)]
    stream = await gateway.client(raw).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "count"}], stream=True
    )
    seen = 0
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            seen += 1
            if seen == 5:
                break
    await stream.close()
    [row] = await gateway.wait_usage_rows(1)
    await trio.sleep(0.2)
    assert len(gateway.usage_rows()) == 1  # billed once
    assert row["status"] == 499 and row["estimated"] == 1
    assert 5 <= row["tokens_out"] <= 20  # what was relayed, not what the answer would have been
    state = books_of(gateway, key_id)
    assert state["balance"] == 10**9 - row["cost"] and row["cost"] > 0
    assert state["holds"] == 0 and state["problems"] == []


async def test_grant_beside_the_running_server_is_spendable_at_once(
    gateway: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    key_id, raw = gateway.create_key(credit="0")
    client = gateway.client(raw)
    with pytest.raises(openai.APIStatusError):
        await client.chat.completions.create(model=MODEL, messages=HI)
    db = str(gateway.db_path)
    done = await run_cli("admin", "grant", "--key", key_id, "--amount", "0.50", "--db", db)
    assert done.returncode == 0, done.stderr
    with trio.fail_after(1.5):
        while True:
            try:
                await client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "a"}]
                )
                break
            except openai.APIStatusError as exc:
                assert exc.status_code == 402
                await trio.sleep(0.05)
    await gateway.wait_usage_rows(1)
    state = books_of(gateway, key_id)
    assert state["balance"] == 500_000_000 - COST and state["problems"] == []
