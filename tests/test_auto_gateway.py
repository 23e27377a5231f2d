"""tokenroute/auto through the gateway with the openai SDK: headers, usage, sessions, explain."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest
import trio

from tests.auto_helpers import PROOF, QUESTION, TOOLS, ask, settings_for
from tests.conftest import RunningGateway, running_gateway
from tests.fakes.openai_upstream import FakeOpenAI


@dataclass
class Auto:
    gateway: RunningGateway
    upstream: FakeOpenAI
    raw: str
    key_id: str

    def client(self, **kwargs: Any) -> Any:
        return self.gateway.client(self.raw, **kwargs)

    async def post(self, path: str, body: dict[str, Any], **headers: str) -> httpx.Response:
        async with httpx.AsyncClient() as http:
            return await http.post(
                self.gateway.url + path,
                json=body,
                headers={"authorization": f"Bearer {self.raw}", **headers},
            )


@pytest.fixture
async def auto(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Auto]:
    upstream = await nursery.start(FakeOpenAI().run)
    settings = settings_for(tmp_path, base_url=upstream.url + "/v1")
    async with running_gateway(nursery, settings) as gateway:
        key_id, raw = gateway.create_key()
        yield Auto(gateway, upstream, raw, key_id)
    upstream.stop()


async def test_a_simple_question_goes_to_the_cheapest_model_and_says_so(auto: Auto) -> None:
    reply = await auto.client().chat.completions.with_raw_response.create(
        model="tokenroute/auto", messages=[{"role": "user", "content": QUESTION}]
    )
    assert reply.parse().model == "local/nano"
    assert auto.upstream.requests[-1]["model"] == "nano"
    assert reply.headers["x-tokenroute-tier"] == "SIMPLE"
    assert reply.headers["x-tokenroute-model"] == "local/nano"
    score = float(reply.headers["x-tokenroute-score"])
    [row] = await auto.gateway.wait_usage_rows(1)
    assert row["requested_model"] == "tokenroute/auto" and row["served_model"] == "local/nano"
    assert row["tier"] == "SIMPLE" and row["score"] == pytest.approx(score)
    assert row["cost"] > 0


async def test_a_streamed_proof_with_tools_goes_to_the_reasoning_model_with_tools(
    auto: Auto,
) -> None:
    body = ask(PROOF, tools=True)
    stream = await auto.client().chat.completions.create(
        model=body["model"], messages=body["messages"], tools=TOOLS, stream=True
    )
    models = {chunk.model async for chunk in stream}
    assert models == {"local/thinker-tools"}
    sent = auto.upstream.requests[-1]
    assert sent["model"] == "thinker-tools" and sent["tools"] == TOOLS
    [row] = await auto.gateway.wait_usage_rows(1)
    assert row["tier"] == "REASONING" and row["served_model"] == "local/thinker-tools"


async def test_sessions_keep_their_tier_by_header_or_user(auto: Auto) -> None:
    async def tier(text: str, **extra: Any) -> tuple[str, str]:
        reply = await auto.client().chat.completions.with_raw_response.create(
            model="tokenroute/auto", messages=[{"role": "user", "content": text}], **extra
        )
        return reply.headers["x-tokenroute-tier"], reply.parse().model

    assert await tier(PROOF, extra_headers={"x-session-id": "agent-1"}) == (
        "REASONING",
        "local/thinker",
    )
    # the next turn is trivial, but the session stays where it was
    assert await tier("thanks!", extra_headers={"x-session-id": "agent-1"}) == (
        "REASONING",
        "local/thinker",
    )
    assert await tier("thanks!", extra_headers={"x-session-id": "agent-2"}) == (
        "SIMPLE",
        "local/nano",
    )
    assert await tier("thanks!") == ("SIMPLE", "local/nano")  # no session: no memory
    assert (await tier(PROOF, user="u-7"))[0] == "REASONING"
    assert (await tier("ok", user="u-7"))[0] == "REASONING"  # `user` names a session too


async def test_explain_answers_without_calling_upstream_or_charging(auto: Auto) -> None:
    before = (
        auto.gateway.db()
        .execute("SELECT balance FROM api_keys WHERE id = ?", (auto.key_id,))
        .fetchone()[0]
    )
    response = await auto.post("/v1/route/explain", ask(PROOF, tools=True))
    assert response.status_code == 200
    explained = response.json()
    assert explained["tier"] == "REASONING" and explained["model"] == "local/thinker-tools"
    assert explained["candidates"] == ["local/thinker-tools"]
    assert explained["needs"]["tools"] is True
    assert explained["score"] == float(response.headers["x-tokenroute-score"])
    fired = {s["signal"]: s["weight"] for s in explained["signals"]}
    assert fired["proof"] > 0 and fired["tools"] > 0
    assert sum(fired.values()) == pytest.approx(explained["score"], abs=0.05)
    simple = (await auto.post("/v1/route/explain", {"messages": ask(QUESTION)["messages"]})).json()
    assert simple["tier"] == "SIMPLE" and simple["candidates"][:2] == ["local/nano", "local/mini"]
    assert auto.upstream.requests == []
    assert auto.gateway.usage_rows() == []
    after = (
        auto.gateway.db()
        .execute("SELECT balance FROM api_keys WHERE id = ?", (auto.key_id,))
        .fetchone()[0]
    )
    assert after == before
    async with httpx.AsyncClient() as http:
        anonymous = await http.post(auto.gateway.url + "/v1/route/explain", json=ask(QUESTION))
    assert anonymous.status_code == 401 and anonymous.json()["error"]["type"]


async def test_bounds_and_bad_routes_through_the_sdk(auto: Auto) -> None:
    capped = await auto.client().chat.completions.create(
        model="tokenroute/auto",
        messages=[{"role": "user", "content": PROOF}],
        extra_body={"route": {"max_tier": "MEDIUM"}},
    )
    assert capped.model == "local/mini"
    assert "route" not in auto.upstream.requests[-1]  # ours, never sent upstream
    with pytest.raises(openai.BadRequestError) as caught:
        await auto.client().chat.completions.create(
            model="tokenroute/auto",
            messages=[{"role": "user", "content": QUESTION}],
            extra_body={"route": {"min_tier": "HARDEST"}},
        )
    assert caught.value.status_code == 400
    assert "route.min_tier must be one of" in caught.value.message


async def test_models_lists_auto_with_its_tiers(auto: Auto) -> None:
    listed = {m.id: m async for m in auto.client().models.list()}
    entry = listed["tokenroute/auto"].model_dump()
    assert entry["tiers"]["SIMPLE"][0] == "local/nano"
    assert entry["tiers"]["REASONING"] == ["local/thinker", "local/thinker-tools"]
    one = await auto.client().models.retrieve("tokenroute/auto")
    assert one.id == "tokenroute/auto"
