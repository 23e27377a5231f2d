"""A user's own keys over /api/v1: credit moved between them exactly, and a revocation that
holds within a second on another gateway process sharing the database."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import httpx2 as httpx
import trio

from proxy.core.config import Settings, load_settings
from proxy.core.money import usd_to_units
from tests.conftest import RunningGateway, running_gateway
from tests.fakes.openai_upstream import FakeOpenAI
from tests.process_helpers import process_env, serving
from tests.test_device_flow import EMAIL, ask_code, person, poll


async def login(gateway: RunningGateway, client: httpx.AsyncClient) -> dict[str, str]:
    await person(gateway)
    code = await ask_code(client)
    await gateway.services.device_flow.approve_as(code["user_code"], EMAIL)
    tokens = (await poll(client, code["device_code"])).json()
    return {"authorization": f"Bearer {tokens['access_token']}"}


async def new_key(client: httpx.AsyncClient, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    reply = await client.post("/api/v1/me/keys", headers=auth, json=body)
    assert reply.status_code == 201, reply.text
    return reply.json()  # type: ignore[no-any-return]


async def test_transfers_between_own_keys_are_exact(
    nursery: trio.Nursery, gateway_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    async with (
        running_gateway(nursery, gateway_settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as client,
    ):
        auth = await login(gateway, client)
        a = await new_key(client, auth, name="a")
        await gateway.services.accounts.grant(a["id"], usd_to_units("10"))
        b = await new_key(client, auth, name="b", credit_usd="3.25", from_key=a["id"])
        assert b["balance_usd"] == "3.25"

        rng = random.Random(7)
        moves = [(rng.choice([(a, b), (b, a)]), rng.randint(1, 40)) for _ in range(100)]
        results: list[int] = []

        async def move(pair: tuple[dict[str, Any], dict[str, Any]], cents: int) -> None:
            source, target = pair
            reply = await client.post(
                f"/api/v1/me/keys/{source['id']}/transfer",
                headers=auth,
                json={"to_key": target["id"], "amount_usd": f"{cents / 100:.2f}"},
            )
            assert reply.status_code in (200, 400), reply.text  # 400: not enough on the source
            results.append(reply.status_code)

        async with trio.open_nursery() as group:
            for pair, cents in moves:
                group.start_soon(move, pair, cents)
        assert results.count(200) > 50
        keys = {k["id"]: k for k in (await client.get("/api/v1/me/keys", headers=auth)).json()}
        total = sum(usd_to_units(k["balance_usd"]) for k in keys.values())
        assert total == usd_to_units("10")  # nothing made or lost
        assert (await gateway.services.accounts.check()).problems == []  # balance == ledger

        # Wrong inputs: each refused with the field named, nothing moved.
        stranger_key = gateway.create_key(email="someone@example.com")[0]
        wrong = [
            ({"to_key": stranger_key, "amount_usd": "1"}, "to_key"),
            ({"to_key": b["id"], "amount_usd": "-1"}, "amount_usd"),
            ({"to_key": b["id"], "amount_usd": 1.5}, "amount_usd"),
            ({"to_key": a["id"], "amount_usd": "1"}, "to_key"),
            ({"amount_usd": "1"}, "to_key"),
            ({"to_key": b["id"], "amount_usd": "1000000"}, None),
        ]
        for body, param in wrong:
            reply = await client.post(
                f"/api/v1/me/keys/{a['id']}/transfer", headers=auth, json=body
            )
            assert reply.status_code in (400, 404), (body, reply.text)
            if param:
                assert param in reply.text, (body, reply.text)
        after = {
            k["id"]: k["balance_usd"]
            for k in (await client.get("/api/v1/me/keys", headers=auth)).json()
        }
        assert after == {k: v["balance_usd"] for k, v in keys.items()}
        theirs = await client.post(f"/api/v1/me/keys/{stranger_key}/revoke", headers=auth)
        assert theirs.status_code == 404  # another user's key is no key of yours


async def test_revocation_holds_on_another_process_within_a_second(
    nursery: trio.Nursery, tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    env = process_env(fake_openai)
    settings = load_settings(env, None, {"db_path": tmp_path / "gw.db", "port": 0})
    async with (
        running_gateway(nursery, settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        auth = await login(gateway, client)
        key = await new_key(client, auth, name="shared")
        await gateway.services.accounts.grant(key["id"], usd_to_units("1"))
        async with serving(str(settings.db_path), env, tmp_path / "second.log") as (_, other):
            use = {"authorization": f"Bearer {key['raw']}"}
            body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
            ok = await client.post(other + "/v1/chat/completions", headers=use, json=body)
            assert ok.status_code == 200, ok.text  # the other process knows (and caches) the key
            revoked = await client.post(f"/api/v1/me/keys/{key['id']}/revoke", headers=auth)
            assert revoked.status_code == 200
            at = trio.current_time()
            while True:
                reply = await client.post(other + "/v1/chat/completions", headers=use, json=body)
                if reply.status_code == 401:
                    break
                assert reply.status_code == 200
                await trio.sleep(0.05)
            # The store polls its data_version each second; the margin is for a busy machine.
            assert trio.current_time() - at < 2.0
