"""Top-ups through a fake Stripe on 127.0.0.1, webhooks signed as Stripe signs them:
credited exactly once, whatever the delivery does, and never lost."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import trio

from proxy.core.config import Settings, load_settings
from proxy.core.money import usd_to_units
from tests.conftest import RunningGateway, running_gateway
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.stripe_api import SECRET_KEY, WEBHOOK_SECRET, FakeStripe, event, sign

WEBHOOK = "/api/v1/payments/stripe/webhook"


@pytest.fixture
async def fake_stripe(nursery: trio.Nursery) -> AsyncIterator[FakeStripe]:
    fake = await nursery.start(FakeStripe().run)
    yield fake
    fake.stop()


@pytest.fixture
def paying_settings(
    tmp_path: Path, gateway_env: dict[str, str], fake_stripe: FakeStripe
) -> Settings:
    config = tmp_path / "tokenroute.toml"
    config.write_text('[payments]\nmin_usd = "5"\nmax_usd = "100"\nfee_percent = "10"\n')
    env = {**gateway_env, "STRIPE_SECRET_KEY": SECRET_KEY, "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
           "STRIPE_API_BASE": fake_stripe.url}  # fmt: skip
    return load_settings(env, config, {"db_path": tmp_path / "gw.db", "port": 0})


async def books_agree(gateway: RunningGateway) -> None:
    assert (await gateway.services.accounts.check()).problems == []


async def deliver(client: httpx.AsyncClient, body: bytes, signature: str | None = None) -> int:
    headers = {"stripe-signature": signature or sign(body), "content-type": "application/json"}
    return (await client.post(WEBHOOK, content=body, headers=headers)).status_code


async def open_topup(client: httpx.AsyncClient, raw: str, amount: str = "10") -> dict[str, Any]:
    reply = await client.post("/api/v1/topup", headers={"authorization": f"Bearer {raw}"},
                              json={"amount_usd": amount})  # fmt: skip
    assert reply.status_code == 200, reply.text
    return reply.json()  # type: ignore[no-any-return]


async def balance(gateway: RunningGateway, key_id: str) -> int:
    return await gateway.services.accounts.key_balance(key_id)


async def test_paid_once_credited_once_whatever_the_delivery(
    nursery: trio.Nursery, paying_settings: Settings, fake_stripe: FakeStripe,
    fake_openai: FakeOpenAI,
) -> None:  # fmt: skip
    async with (
        running_gateway(nursery, paying_settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        key_id, raw = gateway.create_key(credit="0")
        for bad in ("4.99", "100.01", "abc", "5.001"):
            refused = await client.post("/api/v1/topup", headers={"authorization": f"Bearer {raw}"},
                                        json={"amount_usd": bad})  # fmt: skip
            assert refused.status_code == 400, bad
            assert refused.json()["error"]["param"] == "amount_usd"
        assert "from $5.00 to $100.00" in refused.json()["error"]["message"] or bad == "5.001"
        checkout = await open_topup(client, raw)
        assert checkout["checkout_url"].startswith("https://checkout.stripe.test/c/pay/cs_test_")
        assert checkout["amount_usd"] == "10.00" and checkout["credit_usd"] == "9.00"  # 10 % fee
        created = [r for r in fake_stripe.requests if r["method"] == "POST"]
        assert len(created) == 1
        form = created[0]["form"]
        assert (
            form["mode"] == "payment" and form["line_items[0][price_data][unit_amount]"] == "1000"
        )
        assert form["client_reference_id"] == checkout["payment_id"]
        assert form["metadata[key_id]"] == key_id
        assert created[0]["headers"]["Idempotency-Key"] == checkout["payment_id"]

        session = fake_stripe.pay(checkout["session_id"])
        completed = event("checkout.session.completed", session, "evt_1")
        async with trio.open_nursery() as group:  # the same event five times, at once
            for _ in range(5):
                group.start_soon(deliver, client, completed)
        succeeded = event("checkout.session.async_payment_succeeded", session, "evt_2")
        assert await deliver(client, succeeded) == 200
        assert await deliver(client, completed) == 200
        assert await balance(gateway, key_id) == usd_to_units("9")
        ledger = await gateway.services.accounts.ledger(key_id, 10)
        assert [(r["kind"], r["amount"]) for r in ledger] == [("topup", usd_to_units("9"))]
        await books_agree(gateway)

        mine = await client.get("/api/v1/me/payments", headers={"authorization": f"Bearer {raw}"})
        assert [(p["status"], p["credit_usd"]) for p in mine.json()] == [("paid", "9.00")]
        done = await client.get(f"/payments/done?payment={checkout['payment_id']}")
        assert "$9.00" in done.text and "on your key now" in done.text


async def test_forged_stale_or_altered_webhooks_credit_nothing(
    nursery: trio.Nursery, paying_settings: Settings, fake_stripe: FakeStripe,
    fake_openai: FakeOpenAI,
) -> None:  # fmt: skip
    async with (
        running_gateway(nursery, paying_settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        key_id, raw = gateway.create_key(credit="0")
        checkout = await open_topup(client, raw)
        session = fake_stripe.pay(checkout["session_id"])
        body = event("checkout.session.completed", session, "evt_forged")
        altered = body.replace(b'"paid"', b'"paid" ')
        cases = {
            "forged": sign(body, secret="whsec_someone_else"),
            "stale": sign(body, at=int(trio.current_time() * 0) + 1_000_000_000),
            "altered after signing": sign(body),
            "no signature": "",
        }
        for what, header in cases.items():
            payload = altered if what == "altered after signing" else body
            signed = {"stripe-signature": header}
            reply = await client.post(WEBHOOK, content=payload, headers=signed)
            assert reply.status_code == 400, what
        assert await balance(gateway, key_id) == 0
        assert await deliver(client, body) == 200  # the genuine one still counts, once
        assert await balance(gateway, key_id) == usd_to_units("9")
        await books_agree(gateway)


async def test_a_refund_after_spending_takes_back_to_zero_and_records_what_is_owed(
    nursery: trio.Nursery, paying_settings: Settings, fake_stripe: FakeStripe,
    fake_openai: FakeOpenAI,
) -> None:  # fmt: skip
    async with (
        running_gateway(nursery, paying_settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        key_id, raw = gateway.create_key(credit="0")
        checkout = await open_topup(client, raw)
        session = fake_stripe.pay(checkout["session_id"])
        assert await deliver(client, event("checkout.session.completed", session, "evt_a")) == 200
        await gateway.services.accounts.grant(key_id, -usd_to_units("6"), note="spent")
        charge = {"id": "ch_1", "object": "charge", "payment_intent": session["payment_intent"],
                  "amount": 1000, "amount_refunded": 1000, "refunded": True}  # fmt: skip
        refund = event("charge.refunded", charge, "evt_refund")
        for _ in range(3):
            assert await deliver(client, refund) == 200
        assert await balance(gateway, key_id) == 0
        paid = (await client.get("/api/v1/me/payments",
                                 headers={"authorization": f"Bearer {raw}"})).json()[0]  # fmt: skip
        assert paid["clawed_back_usd"] == "9.00" and paid["owed_usd"] == "6.00"
        ledger = await gateway.services.accounts.ledger(key_id, 10)
        assert ledger[0]["kind"] == "refund" and ledger[0]["amount"] == -usd_to_units("3")
        dispute = {"id": "dp_1", "object": "dispute", "amount": 1000,
                   "payment_intent": session["payment_intent"]}  # fmt: skip
        assert await deliver(client, event("charge.dispute.created", dispute, "evt_dp")) == 200
        assert await balance(gateway, key_id) == 0  # nothing left to take: already all back
        await books_agree(gateway)


async def test_reconcile_credits_a_missed_webhook_once(
    nursery: trio.Nursery, paying_settings: Settings, fake_stripe: FakeStripe,
    fake_openai: FakeOpenAI,
) -> None:  # fmt: skip
    async with (
        running_gateway(nursery, paying_settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        key_id, raw = gateway.create_key(credit="0")
        checkout = await open_topup(client, raw, amount="20")
        await open_topup(client, raw, amount="30")  # never paid
        session = fake_stripe.pay(checkout["session_id"])
        credited = await gateway.services.payments.reconcile(7)
        assert [c["session_id"] for c in credited] == [session["id"]]
        assert await gateway.services.payments.reconcile(7) == []  # not twice
        late = event("checkout.session.completed", session, "evt_late")
        assert await deliver(client, late) == 200  # the webhook comes after all
        assert await balance(gateway, key_id) == usd_to_units("18")
        await books_agree(gateway)
        assert json.loads(json.dumps(credited))[0]["credit_usd"] == "18.00"
