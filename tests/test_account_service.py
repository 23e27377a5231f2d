"""AccountService, the operations every surface shares, on a running set of services.

Errors come back as the gateway's errors (404 unknown, 409 duplicate, 400 bad input);
credit and limits moved here apply to the next request at once; usage counts only
successful requests.
"""

from __future__ import annotations

import openai
import pytest
import trio

from proxy.core.errors import BadRequest, Conflict, InsufficientQuota, NotFound
from proxy.core.money import usd_to_units
from proxy.services import KeyRecord, Services
from tests.conftest import RunningGateway
from tests.fakes.openai_upstream import FakeOpenAI

BODY = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


async def new_key(services: Services, credit: str = "0") -> tuple[str, KeyRecord]:
    accounts = services.accounts
    await accounts.create_user("ann@example.com", name="Ann")
    new = await accounts.create_key("ann@example.com", "app", credit=usd_to_units(credit))
    return new.raw, await accounts.authenticate(f"Bearer {new.raw}")


async def ask(services: Services, key: KeyRecord, request_id: str) -> None:
    call = services.chat.prepare(key, BODY, request_id, None, trio.current_time())
    await services.chat.complete(call)


async def test_credit_granted_here_is_spendable_at_once(services: Services) -> None:
    _, key = await new_key(services)
    with pytest.raises(InsufficientQuota):
        await ask(services, key, "req_broke")
    credit = await services.accounts.grant(key.id, usd_to_units("1"), note="welcome")
    assert (credit.kind, credit.balance) == ("grant", usd_to_units("1"))
    await ask(services, key, "req_paid")  # no wait for another process's change notice
    taken = await services.accounts.grant(key.id, -usd_to_units("0.5"))
    assert taken.kind == "adjustment"
    books = await services.accounts.check()
    assert books.problems == [] and books.open_holds == 0


async def test_new_limits_apply_to_the_next_request(services: Services) -> None:
    raw, key = await new_key(services, credit="1")
    await services.chat.admit(key)
    await services.accounts.set_limits(key.id, rps=1, burst=1)
    fresh = await services.accounts.authenticate(f"Bearer {raw}")
    assert (fresh.rps, fresh.burst) == (1, 1)
    assert (await services.chat.limit_headers(fresh))["x-ratelimit-limit-requests"] == "1"


async def test_errors_are_the_gateways(services: Services) -> None:
    accounts = services.accounts
    await accounts.create_user("ann@example.com")
    with pytest.raises(Conflict, match="already exists"):
        await accounts.create_user("ANN@example.com")
    with pytest.raises(BadRequest, match="not an email"):
        await accounts.create_user("ann")
    with pytest.raises(NotFound, match="no user with email") as missing:
        await accounts.create_key("bob@example.com", "x")
    assert missing.value.param == "email"
    for bad in (accounts.revoke_key("nope"), accounts.grant("nope", 1), accounts.ledger("nope", 5)):
        with pytest.raises(NotFound, match="no key with id nope"):
            await bad
    with pytest.raises(BadRequest) as tier:
        await accounts.set_limits("nope", tier="gold")
    assert tier.value.param == "tier"
    with pytest.raises(BadRequest, match="days"):
        await accounts.usage(0, user_id="x")


async def test_usage_counts_successful_requests(
    services: Services, fake_openai: FakeOpenAI
) -> None:
    _, key = await new_key(services, credit="1")
    for n in range(3):
        await ask(services, key, f"req_ok_{n}")
    fake_openai.status = 500
    with pytest.raises(Exception, match="fake failure 500"):
        await ask(services, key, "req_failed")
    with trio.fail_after(5):
        while (await services.accounts.usage(1, key_id=key.id))["requests"] < 3:  # noqa: ASYNC110 (the writer commits on its own time)
            await trio.sleep(0.02)
    summary = await services.accounts.usage(7, user_id=key.user_id)
    assert summary["requests"] == 3  # the failed one is not usage
    assert summary["tokens_in"] == 3 * fake_openai.prompt_tokens
    [model] = summary["by_model"]  # type: ignore[misc]
    assert model["model"] == "openai/gpt-4o-mini" and model["cost"] == summary["cost"] > 0
    ledger = await services.accounts.ledger(key.id, 10)
    assert -sum(int(r["amount"]) for r in ledger if r["kind"] == "usage") == summary["cost"]


async def test_credit_granted_in_the_server_is_spendable_over_http(gateway: RunningGateway) -> None:
    """A grant on the server's own connection (as the management API makes) needs no restart."""
    accounts = gateway.services.accounts
    await accounts.create_user("bo@example.com")
    new = await accounts.create_key("bo@example.com", "app", credit=0)
    client = gateway.client(new.raw)
    with pytest.raises(openai.APIStatusError) as refused:
        await client.chat.completions.create(**BODY)  # type: ignore[call-overload]
    assert refused.value.status_code == 402
    await accounts.grant(new.record.id, usd_to_units("1"), note="top-up")
    reply = await client.chat.completions.create(**BODY)  # type: ignore[call-overload]
    assert reply.choices[0].message.content
    assert (await accounts.check()).problems == []
