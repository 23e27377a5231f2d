"""The admin API behind X-Internal-Secret: users, keys, credit, ledger, usage, audit."""

from __future__ import annotations

from pathlib import Path

import httpx2 as httpx
import trio

from proxy.core.config import Settings, load_settings
from tests.conftest import INTERNAL_SECRET, OPERATOR, running_gateway
from tests.fakes.openai_upstream import FakeOpenAI


async def test_admin_api_with_and_without_the_secret(
    nursery: trio.Nursery, gateway_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    async with (
        running_gateway(nursery, gateway_settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url + "/api/v1/admin") as admin,
    ):
        new_user = {"email": "partner-user@example.com", "name": "P"}
        for headers in ({}, {"x-internal-secret": "x" * len(INTERNAL_SECRET)}):
            refused = await admin.post("/users", json=new_user, headers=headers)
            assert refused.status_code == 401
            assert refused.json()["error"]["type"] == "authentication_error"
        made = await admin.post("/users", json=new_user, headers=OPERATOR)
        assert made.status_code == 201, made.text
        user = made.json()
        assert user["email"] == new_user["email"] and user["status"] == "active"
        assert (await admin.post("/users", json=new_user, headers=OPERATOR)).status_code == 409
        found = await admin.get("/users", params={"email": "PARTNER-user@example.com"},
                                headers=OPERATOR)  # fmt: skip
        assert found.json()["id"] == user["id"]  # emails match whatever their case

        key = await admin.post(f"/users/{user['id']}/keys", headers=OPERATOR,
                               json={"name": "storefront", "credit_usd": "5.00"})  # fmt: skip
        assert key.status_code == 201
        key = key.json()
        assert key["raw"].startswith("sk-tr-") and key["balance_usd"] == "5.00"
        grant = await admin.post(f"/keys/{key['id']}/credit", headers=OPERATOR,
                                 json={"amount_usd": "2.50", "note": "goodwill"})  # fmt: skip
        assert grant.json() == {"key_id": key["id"], "kind": "grant", "amount_usd": "2.50",
                                "balance_usd": "7.50"}  # fmt: skip
        taken = await admin.post(f"/keys/{key['id']}/credit", headers=OPERATOR,
                                 json={"amount_usd": "-1", "note": "correction"})  # fmt: skip
        assert taken.json()["kind"] == "adjustment" and taken.json()["balance_usd"] == "6.50"
        too_much = await admin.post(f"/keys/{key['id']}/credit", headers=OPERATOR,
                                    json={"amount_usd": "-100"})  # fmt: skip
        assert too_much.status_code == 400 and "below zero" in too_much.json()["error"]["message"]
        for bad in ({"amount_usd": 1.5}, {"amount_usd": "abc"}, {"amount_usd": "0"}, {}):
            wrong = await admin.post(f"/keys/{key['id']}/credit", headers=OPERATOR, json=bad)
            assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "amount_usd"
        ledger = (await admin.get(f"/keys/{key['id']}/ledger", headers=OPERATOR)).json()
        assert [(r["kind"], r["amount_usd"], r["note"]) for r in ledger] == [
            ("adjustment", "-1.00", "correction"),
            ("grant", "2.50", "goodwill"),
            ("grant", "5.00", "opening credit"),
        ]

        await gateway.client(key["raw"]).chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        await gateway.wait_usage_rows(1)
        by_user = await admin.get("/usage", params={"days": 1, "user": user["id"]},
                                  headers=OPERATOR)  # fmt: skip
        assert by_user.json()["total_requests"] == 1
        assert by_user.json()["by_key"][0]["key_id"] == key["id"]
        assert (await admin.get("/usage", params={"days": 1}, headers=OPERATOR)).status_code == 400

        disabled = await admin.post(f"/users/{user['id']}/disable", headers=OPERATOR)
        assert disabled.json()["status"] == "disabled"
        chat = await admin.post(
            gateway.url + "/v1/chat/completions",
            headers={"authorization": f"Bearer {key['raw']}"},
            json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
        )
        assert chat.status_code == 401
        await admin.post(f"/users/{user['id']}/enable", headers=OPERATOR)

        audit = (await admin.get("/audit", headers=OPERATOR)).json()
        assert [row["action"] for row in audit] == [
            "user-active", "user-disabled", "adjustment", "grant", "create-key", "create-user",
        ]  # fmt: skip
        assert {row["address"] for row in audit} == {"127.0.0.1"}
        assert all(row["actor"] == "internal-secret" for row in audit)
        check = gateway.services.accounts
        assert (await check.check()).problems == []


async def test_without_an_internal_secret_the_admin_api_is_off(
    nursery: trio.Nursery, tmp_path: Path, gateway_env: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    settings = load_settings(gateway_env, None, {"db_path": tmp_path / "gw.db", "port": 0})
    async with (
        running_gateway(nursery, settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        off = await client.get("/api/v1/admin/users", params={"email": "a@b.c"}, headers=OPERATOR)
        assert off.status_code == 404 and "off" in off.json()["error"]["message"]
