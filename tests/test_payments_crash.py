"""The real gateway process killed (SIGKILL) while a webhook is in flight: Stripe redelivers,
and the top-up is credited exactly once. The CLI's `topup` returns the fake's URL."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2 as httpx
import trio

from proxy.core.money import usd_to_units
from tests.cli_helpers import run_cli, run_json
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.stripe_api import SECRET_KEY, WEBHOOK_SECRET, FakeStripe, event, sign
from tests.process_helpers import create_key, process_env, serving
from tests.test_payments import WEBHOOK, fake_stripe  # noqa: F401 (a fixture)


async def post_and_die(url: str, body: bytes, process: trio.Process) -> None:
    """Send the webhook on a raw socket, then kill the gateway before reading its answer."""
    host, port = url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    head = (f"POST {WEBHOOK} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
            f"stripe-signature: {sign(body)}\r\ncontent-length: {len(body)}\r\n\r\n")  # fmt: skip
    await stream.send_all(head.encode() + body)
    await trio.sleep(0.01)  # it has the request; its answer is not read
    process.kill()
    await process.wait()
    await stream.aclose()


async def test_killed_mid_webhook_then_redelivered_credits_once(
    tmp_path: Path,
    fake_openai: FakeOpenAI,
    fake_stripe: FakeStripe,  # noqa: F811
) -> None:
    db = str(tmp_path / "gw.db")
    env = {**process_env(fake_openai), "STRIPE_SECRET_KEY": SECRET_KEY,
           "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET, "STRIPE_API_BASE": fake_stripe.url}  # fmt: skip
    key = await create_key(db, env, credit="0")
    async with serving(db, env, tmp_path / "first.log") as (process, url):
        cli = {**env, "HOME": str(tmp_path / "home"), "TOKENROUTE_API_URL": url,
               "TOKENROUTE_API_KEY": key["raw"]}  # fmt: skip
        checkout = await run_json("topup", "--amount", "10", env=cli)
        assert checkout["checkout_url"] == fake_stripe.sessions[checkout["session_id"]]["url"]
        assert [r["path"] for r in fake_stripe.requests] == ["/v1/checkout/sessions"]  # only
        session = fake_stripe.pay(checkout["session_id"])
        body = event("checkout.session.completed", session, "evt_crash")
        await post_and_die(url, body, process)
    async with serving(db, env, tmp_path / "second.log") as (_, url):
        async with httpx.AsyncClient(base_url=url) as client:
            for _ in range(2):  # Stripe retries until it gets a 2xx
                reply = await client.post(WEBHOOK, content=body,
                                          headers={"stripe-signature": sign(body)})  # fmt: skip
                assert reply.status_code == 200, reply.text
            mine = await client.get("/api/v1/balance",
                                    headers={"authorization": f"Bearer {key['raw']}"})  # fmt: skip
        assert mine.json()["balance_usd"] == "10.00"
    check = await run_cli("admin", "check", "--json", "--db", db, env=env)
    assert check.returncode == 0, check.stdout
    ledger = await run_json("admin", "ledger", "--key", key["id"], "--db", db, env=env)
    topups = [row for row in ledger["entries"] if row["kind"] == "topup"]
    assert len(topups) == 1 and usd_to_units(topups[0]["amount_usd"]) == usd_to_units("10")
    assert json.loads(check.stdout)
