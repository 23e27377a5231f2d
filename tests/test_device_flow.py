"""The whole RFC 8628 device flow over real HTTP, then every user endpoint with its token.

One client plays the CLI (asks for a code, polls); a second plays the person's browser
(signs in on /device with the page's CSRF token, approves). The tokens it gets are
used on /api/v1; refresh rotates; logout revokes.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import trio

from proxy.core.config import Settings, load_settings
from proxy.core.money import usd_to_units
from tests.conftest import INTERNAL_SECRET, RunningGateway, running_gateway
from tests.fakes.openai_upstream import FakeOpenAI

CLIENT = "tokenroute-cli"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
EMAIL, PASSWORD = "ada@example.com", "correct horse battery"
CONFIG = """
[auth]
poll_interval_seconds = 1
"""


@pytest.fixture
def flow_settings(tmp_path: Path, gateway_env: dict[str, str]) -> Settings:
    config = tmp_path / "tokenroute.toml"
    config.write_text(CONFIG)
    env = {**gateway_env, "TOKENROUTE_INTERNAL_SECRET": INTERNAL_SECRET}
    return load_settings(env, config, {"db_path": tmp_path / "gw.db", "port": 0})


async def person(gateway: RunningGateway) -> None:
    accounts, identity = gateway.services.accounts, gateway.services.identity
    await accounts.create_user(EMAIL, name="Ada")
    await identity.set_password(EMAIL, PASSWORD)


async def ask_code(client: httpx.AsyncClient) -> dict[str, Any]:
    reply = await client.post("/oauth/device/code", data={"client_id": CLIENT})
    assert reply.status_code == 200, reply.text
    assert reply.headers["cache-control"] == "no-store"
    return reply.json()  # type: ignore[no-any-return]


async def poll(client: httpx.AsyncClient, device_code: str) -> httpx.Response:
    return await client.post(
        "/oauth/token",
        data={"grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": CLIENT},
    )


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


async def approve_in_browser(
    browser: httpx.AsyncClient, user_code: str, decision: str = "approve"
) -> httpx.Response:
    """What a person does on /device: sign in, check the code, decide."""
    page = await browser.get("/device", params={"user_code": user_code})
    assert page.status_code == 200 and "Sign in" in page.text
    assert page.headers["x-frame-options"] == "DENY"
    signed = await browser.post(
        "/device/sign-in",
        data={
            "csrf_token": csrf_of(page.text),
            "user_code": user_code.lower().replace("-", ""),  # typed sloppily: still found
            "email": EMAIL,
            "password": PASSWORD,
        },
    )
    assert signed.status_code == 303, signed.text
    confirm = await browser.get(signed.headers["location"])
    assert confirm.status_code == 200
    assert CLIENT in confirm.text and user_code in confirm.text, confirm.text
    return await browser.post(
        "/device/decide",
        data={"csrf_token": csrf_of(confirm.text), "user_code": user_code, "decision": decision},
    )


async def test_device_flow_then_every_user_endpoint(
    nursery: trio.Nursery, flow_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    async with (
        running_gateway(nursery, flow_settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as cli,
        httpx.AsyncClient(base_url=gateway.url) as browser,
    ):
        await person(gateway)
        discovery = (await cli.get("/api/v1/auth/discovery")).json()
        assert set(discovery) == {
            "issuer",
            "client_id",
            "device_authorization_endpoint",
            "token_endpoint",
            "scopes",
            "resource",
        }
        assert discovery["client_id"] == CLIENT and discovery["issuer"] == gateway.url
        assert discovery["token_endpoint"] == gateway.url + "/oauth/token"

        code = await ask_code(cli)
        letters = "[BCDFGHJKLMNPQRSTVWXZ]{4}"
        assert re.fullmatch(f"{letters}-{letters}", code["user_code"])
        assert code["verification_uri"] == gateway.url + "/device"
        assert code["interval"] == 1 and code["expires_in"] == 600
        pending = await poll(cli, code["device_code"])
        assert pending.status_code == 400
        assert pending.json()["error"] == "authorization_pending"
        too_fast = await poll(cli, code["device_code"])
        assert too_fast.json()["error"] == "slow_down"

        decided = await approve_in_browser(browser, code["user_code"])
        assert decided.status_code == 200 and "Approved" in decided.text

        await trio.sleep(6.1)  # the interval grew by 5 s with slow_down
        granted = await poll(cli, code["device_code"])
        assert granted.status_code == 200, granted.text
        tokens = granted.json()
        assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 3600
        again = await poll(cli, code["device_code"])
        assert again.json()["error"] == "invalid_grant"  # a device code is used once

        auth = {"authorization": f"Bearer {tokens['access_token']}"}
        me = (await cli.get("/api/v1/me", headers=auth)).json()
        assert set(me) == {"id", "display_name", "email", "logto_sub", "balance_usd", "status"}
        assert me["email"] == EMAIL and me["display_name"] == "Ada" and me["status"] == "active"
        assert me["balance_usd"] == "0.00"
        balance = (await cli.get("/api/v1/balance", headers=auth)).json()
        assert balance == {"balance_usd": "0.00", "currency": "USD"}
        assert (await cli.get("/api/v1/me/keys", headers=auth)).json() == []

        created = await cli.post("/api/v1/me/keys", headers=auth, json={"name": "fieryeye"})
        assert created.status_code == 201, created.text
        key = created.json()
        assert key["raw"].startswith("sk-tr-") and key["key_prefix"] == key["raw"][:10]
        assert key["name"] == "fieryeye" and key["balance_usd"] == "0.00"
        listed = (await cli.get("/api/v1/me/keys", headers=auth)).json()
        assert [k["id"] for k in listed] == [key["id"]]
        assert "raw" not in listed[0] and set(listed[0]) == {
            "id", "name", "key_prefix", "balance_usd", "status", "created_at", "last_used_at",
        }  # fmt: skip

        await gateway.services.accounts.grant(key["id"], 2_000_000_000, note="test credit")
        chat = await gateway.client(key["raw"]).chat.completions.with_raw_response.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        request_id = chat.headers["x-request-id"]
        shown_cost = chat.parse().usage.model_extra["cost"]  # what the client is told it cost
        stream = await gateway.client(key["raw"]).chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
            stream=True, stream_options={"include_usage": True},
        )  # fmt: skip
        chunks = [chunk async for chunk in stream]
        stream_cost = chunks[-1].usage.model_extra["cost"]
        await gateway.wait_usage_rows(2)
        usage = (await cli.get("/api/v1/usage", params={"days": 7}, headers=auth)).json()
        assert usage["range_days"] == 7 and usage["total_requests"] == 2
        assert usage["total_tokens_in"] > 0
        costs = [usd_to_units(shown_cost), usd_to_units(stream_cost)]
        assert min(costs) > 0 and usd_to_units(usage["total_cost_usd"]) == sum(costs)
        assert [k["key_id"] for k in usage["by_key"]] == [key["id"]]
        assert usage["by_key"][0]["name"] == "fieryeye" and usage["by_key"][0]["requests"] == 2
        assert len(usage["by_day"]) == 1 and usage["by_day"][0]["requests"] == 2
        assert usage["by_model"][0]["model"] == "openai/gpt-4o-mini"
        generation = await cli.get("/api/v1/generation", params={"id": request_id}, headers=auth)
        assert generation.status_code == 200 and generation.json()["id"] == request_id
        assert generation.json()["cost_usd"] == shown_cost and generation.json()["status"] == 200
        someone = await cli.get("/api/v1/generation", params={"id": "req_nope"}, headers=auth)
        assert someone.status_code == 404
        for days in ("0", "366", "x"):
            bad = await cli.get("/api/v1/usage", params={"days": days}, headers=auth)
            assert bad.status_code == 400 and "1 to 365" in bad.json()["error"]["message"]
        topup = await cli.post("/api/v1/topup", headers=auth, json={"amount_usd": "5"})
        assert topup.status_code == 503
        assert topup.json()["error"]["type"] == "service_unavailable"

        # The key itself: scoped to itself, no key management.
        as_key = {"authorization": f"Bearer {key['raw']}"}
        assert (await cli.get("/api/v1/balance", headers=as_key)).json()["balance_usd"] == (
            (await cli.get("/api/v1/me/keys", headers=auth)).json()[0]["balance_usd"]
        )
        forbidden = await cli.get("/api/v1/me/keys", headers=as_key)
        assert forbidden.status_code == 403 and "login" in forbidden.json()["error"]["message"]

        revoked = await cli.post(f"/api/v1/me/keys/{key['id']}/revoke", headers=auth)
        assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
        assert (await cli.get("/api/v1/balance", headers=as_key)).status_code == 401

        # Refresh rotates; the old refresh token is refused, and its reuse ends the family.
        refreshed = await cli.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
                  "client_id": CLIENT},
        )  # fmt: skip
        assert refreshed.status_code == 200, refreshed.text
        new = refreshed.json()
        assert new["refresh_token"] != tokens["refresh_token"]
        assert (await cli.get("/api/v1/me", headers={
            "authorization": f"Bearer {new['access_token']}"})).status_code == 200  # fmt: skip
        reused = await cli.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
                  "client_id": CLIENT},
        )  # fmt: skip
        assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
        after_reuse = await cli.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": new["refresh_token"],
                  "client_id": CLIENT},
        )  # fmt: skip
        assert after_reuse.json()["error"] == "invalid_grant"


async def test_logout_revokes_and_denied_expired_codes_get_the_rfc_errors(
    nursery: trio.Nursery, flow_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    async with (
        running_gateway(nursery, flow_settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as cli,
        httpx.AsyncClient(base_url=gateway.url) as browser,
    ):
        await person(gateway)
        # Approved from the server's terminal (the operator's way), then logged out.
        code = await ask_code(cli)
        await gateway.services.device_flow.approve_as(code["user_code"], EMAIL)
        tokens = (await poll(cli, code["device_code"])).json()
        assert "refresh_token" in tokens, tokens
        logout = await cli.post("/oauth/revoke", data={"token": tokens["refresh_token"]})
        assert logout.status_code == 200
        refused = await cli.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
                  "client_id": CLIENT},
        )  # fmt: skip
        assert refused.json()["error"] == "invalid_grant"

        denied = await ask_code(cli)
        decided = await approve_in_browser(browser, denied["user_code"], decision="deny")
        assert "Denied" in decided.text
        assert (await poll(cli, denied["device_code"])).json()["error"] == "access_denied"

        expired = await ask_code(cli)
        conn = sqlite3.connect(gateway.db_path)
        with conn:
            conn.execute("UPDATE device_codes SET expires_at = 0")
        conn.close()
        assert (await poll(cli, expired["device_code"])).json()["error"] == "expired_token"

        unknown = await poll(cli, "dc_not-a-code")
        assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_grant"
        wrong_client = await cli.post(
            "/oauth/token",
            data={"grant_type": DEVICE_GRANT, "device_code": expired["device_code"],
                  "client_id": "someone-else"},
        )  # fmt: skip
        assert wrong_client.status_code == 401 and wrong_client.json()["error"] == "invalid_client"
        grant = await cli.post("/oauth/token", data={"grant_type": "password", "client_id": CLIENT})
        assert grant.json()["error"] == "unsupported_grant_type"

        # A form without the page's CSRF token is refused.
        forged = await browser.post(
            "/device/sign-in", data={"email": EMAIL, "password": PASSWORD, "user_code": "x"}
        )
        assert forged.status_code == 403
