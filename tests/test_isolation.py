"""Tenants are strangers: what one key sends cannot take a model away from the others, and
the operator's provider account never shows in a tenant's answer.

The fakes answer with the providers' real texts: OpenAI's for an unknown argument, for a
request over the per-minute token limit and for an exhausted quota; Anthropic's for an
account out of credit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import orjson
import pytest
import trio

from proxy.core.config import load_settings
from proxy.providers.anthropic_stream import CREDIT_TOO_LOW
from tests.cli_helpers import run_json
from tests.conftest import INTERNAL_SECRET, OPERATOR, RunningGateway, running_gateway
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI

HAIKU, MINI = "anthropic/claude-haiku-4-5", "openai/gpt-4o-mini"
HI = [{"role": "user", "content": "hi"}]
QUOTA = {
    "error": {
        "message": "You exceeded your current quota, please check your plan and billing "
        "details. For more information on this error, read the docs: "
        "https://platform.openai.com/docs/guides/error-codes/api-errors. (org-FAKE0rg)",
        "type": "insufficient_quota",
        "param": None,
        "code": "insufficient_quota",
    }
}


@dataclass
class Tenants:
    gateway: RunningGateway
    anthropic: FakeAnthropic
    openai: FakeOpenAI
    mallory: openai.AsyncOpenAI  # sends what she likes
    alice: openai.AsyncOpenAI  # just wants her answers

    async def readyz(self, operator: bool = False) -> dict[str, Any]:
        async with httpx.AsyncClient() as client:
            reply = await client.get(
                self.gateway.url + "/readyz", headers=OPERATOR if operator else {}
            )
        return orjson.loads(reply.content)  # type: ignore[no-any-return]

    async def alice_is_served(self, model: str) -> None:
        reply = await self.alice.chat.completions.create(model=model, messages=HI)  # type: ignore[arg-type]
        assert reply.choices[0].message.content and reply.model == model

    async def nothing_cools(self) -> None:
        states = (await self.readyz(operator=True))["upstreams"]
        assert all(s["state"] == "healthy" and not s["recent_failures"] for s in states.values())


@pytest.fixture
async def tenants(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Tenants]:
    anthropic = await nursery.start(FakeAnthropic().run)
    openai_fake = await nursery.start(FakeOpenAI(strict=True).run)
    env = {
        "ANTHROPIC_API_KEY": "sk-ant-test",
        "ANTHROPIC_BASE_URL": anthropic.url,
        "OPENAI_API_KEY": "sk-oa-test",
        "OPENAI_BASE_URL": openai_fake.url + "/v1",
        "TOKENROUTE_INTERNAL_SECRET": INTERNAL_SECRET,
    }
    settings = load_settings(env, None, {"db_path": tmp_path / "gw.db", "port": 0})
    async with running_gateway(nursery, settings) as gateway:
        _, mallory = gateway.create_key(email="mallory@example.com")
        _, alice = gateway.create_key(email="alice@example.com")
        yield Tenants(
            gateway, anthropic, openai_fake, gateway.client(mallory), gateway.client(alice)
        )
    anthropic.stop()
    openai_fake.stop()


MALFORMED = [
    # refused by our own Anthropic adapter, each with a correct 400
    {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png,not-base64"}}]}]},
    {"messages": HI, "tools": [{"type": "function", "function": {"description": "no name"}}]},
    {"messages": [*HI, {"role": "tool", "content": "42"}]},
]  # fmt: skip


async def test_requests_our_adapter_refuses_cool_nothing(tenants: Tenants) -> None:
    for _ in range(3):  # three times the cooldown's threshold
        for body in MALFORMED:
            with pytest.raises(openai.BadRequestError):
                await tenants.mallory.chat.completions.create(model=HAIKU, **body)  # type: ignore[call-overload]
    await tenants.nothing_cools()
    await tenants.alice_is_served(HAIKU)


async def test_upstream_refusals_of_a_request_cool_nothing(tenants: Tenants) -> None:
    every_model = [
        m.id for m in (await tenants.alice.models.list()).data if m.id.startswith("openai/")
    ]
    for _ in range(3):
        with pytest.raises(openai.BadRequestError, match="Unrecognized request argument supplied"):
            await tenants.mallory.chat.completions.create(
                model=MINI, messages=HI, extra_body={"billing": 1, "models": every_model[1:8]}
            )
    assert len(tenants.openai.requests) == 3  # a request's own error moves on to no other model
    tenants.openai.tpm_limit = 5_000
    with pytest.raises(openai.APIStatusError) as too_large:
        await tenants.mallory.chat.completions.create(
            model=MINI, messages=[{"role": "user", "content": "x" * 6_000}]
        )
    assert too_large.value.status_code == 413 and "org-" not in too_large.value.message
    await tenants.nothing_cools()
    await tenants.alice_is_served(MINI)


async def test_the_operators_account_stays_with_the_operator(tenants: Tenants) -> None:
    tenants.openai.status, tenants.openai.error_body = 429, QUOTA
    tenants.anthropic.status, tenants.anthropic.error_message = 400, CREDIT_TOO_LOW
    for model in (MINI, HAIKU):
        with pytest.raises(openai.APIStatusError) as caught:
            await tenants.mallory.chat.completions.with_raw_response.create(
                model=model, messages=HI
            )
        error = caught.value
        request_id = error.response.headers["x-request-id"]
        assert (
            error.status_code == 502 and "operator" in error.message and request_id in error.message
        )
        for word in ("org-", "quota", "credit", "billing", "Plans"):
            assert word not in error.message, word
    public = orjson.dumps(await tenants.readyz()).decode()
    assert "quota" not in public and "credit" not in public and "org-" not in public
    states = (await tenants.readyz(operator=True))["upstreams"]
    for model, words in ((MINI, "exceeded your current quota"), (HAIKU, "credit balance")):
        assert states[model]["state"] == "cooling" and states[model]["retry_in_seconds"] > 500
        assert words in states[model]["last_error"]  # the operator reads the provider's words
    usage = await run_json(
        "admin", "check", "--db", str(tenants.gateway.db_path)
    )  # nothing was billed or lost
    assert usage["ok"] and usage["open_holds"] == 0
