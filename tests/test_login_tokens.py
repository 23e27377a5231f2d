"""Login tokens the gateway must refuse, signing-key rotation, and disabled users.

Forged tokens are signed here with the gateway's own key read from its database (or a
key of our own), so each differs from a good token in exactly one way.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from typing import Any

import httpx2 as httpx
import trio

from proxy.core.config import Settings
from proxy.identity.tokens import SigningKeys, new_signing_key
from tests.conftest import RunningGateway, running_gateway
from tests.fakes.openai_upstream import FakeOpenAI
from tests.test_device_flow import EMAIL, ask_code, person, poll


async def login(gateway: RunningGateway, client: httpx.AsyncClient) -> dict[str, Any]:
    code = await ask_code(client)
    await gateway.services.device_flow.approve_as(code["user_code"], EMAIL)
    reply = await poll(client, code["device_code"])
    assert reply.status_code == 200, reply.text
    return reply.json()  # type: ignore[no-any-return]


def gateway_keys(gateway: RunningGateway) -> SigningKeys:
    conn = sqlite3.connect(gateway.db_path)
    try:
        rows = conn.execute(
            "SELECT kid, private_jwk, retired_at IS NOT NULL FROM signing_keys ORDER BY created_at"
        ).fetchall()
    finally:
        conn.close()
    return SigningKeys([(kid, jwk, bool(retired)) for kid, jwk, retired in rows])


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))  # type: ignore[no-any-return]


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def status_of(client: httpx.AsyncClient, token: str) -> int:
    reply = await client.get("/api/v1/me", headers={"authorization": f"Bearer {token}"})
    if reply.status_code == 401:
        assert reply.json()["error"]["type"] == "authentication_error"
    return reply.status_code


async def test_forged_and_stale_tokens_get_401(
    nursery: trio.Nursery, gateway_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    async with (
        running_gateway(nursery, gateway_settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        await person(gateway)
        good = (await login(gateway, client))["access_token"]
        assert await status_of(client, good) == 200
        claims = claims_of(good)
        keys = gateway_keys(gateway)
        now = int(time.time())

        def signed(**changes: Any) -> str:
            return keys.sign({**claims, **changes})

        stranger_kid, stranger_jwk = new_signing_key()
        stranger = SigningKeys([(stranger_kid, stranger_jwk, False)])
        head, body, signature = good.split(".")
        forged = {
            "expired": signed(exp=now - 120, iat=now - 3720, nbf=now - 3720),
            "wrong audience": signed(aud="https://elsewhere.example"),
            "wrong issuer": signed(iss="https://evil.example"),
            "no subject": keys.sign({k: v for k, v in claims.items() if k != "sub"}),
            "unknown user": signed(sub="0" * 32),
            "tampered": f"{head}.{b64({**claims, 'sub': 'someone-else'})}.{signature}",
            "alg none": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{body}.",
            "unknown kid": stranger.sign(claims),
            "not a token": "eyJhbGciOiJFUzI1NiJ9.garbage",
        }
        for what, token in forged.items():
            assert await status_of(client, token) == 401, what
        assert await status_of(client, good) == 200  # nothing above changed the good one

        # Rotation: the old key keeps verifying until its tokens expire; new tokens use the new.
        new_kid = await gateway.services.identity.rotate_signing_key()
        assert await status_of(client, good) == 200
        fresh = (await login(gateway, client))["access_token"]
        header = json.loads(base64.urlsafe_b64decode(fresh.split(".")[0] + "=="))
        assert header["kid"] == new_kid and header["alg"] == "ES256"
        assert await status_of(client, fresh) == 200
        jwks = (await client.get("/oauth/jwks.json")).json()
        assert {k["kid"] for k in jwks["keys"]} == {keys.kid, new_kid}
        assert all("d" not in k for k in jwks["keys"])  # public halves only
        config = (await client.get("/.well-known/openid-configuration")).json()
        assert config["jwks_uri"] == gateway.url + "/oauth/jwks.json"
        assert config["issuer"] == gateway.url


async def test_a_disabled_user_loses_logins_and_keys(
    nursery: trio.Nursery, gateway_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    async with (
        running_gateway(nursery, gateway_settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        await person(gateway)
        tokens = await login(gateway, client)
        auth = {"authorization": f"Bearer {tokens['access_token']}"}
        key = (await client.post("/api/v1/me/keys", headers=auth, json={"name": "k"})).json()
        await gateway.services.accounts.grant(key["id"], 1_000_000_000)
        sdk = gateway.client(key["raw"])
        await sdk.chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )

        await gateway.services.accounts.set_user_status(EMAIL, "disabled")
        assert await status_of(client, tokens["access_token"]) == 401
        as_key = await client.get(
            "/api/v1/balance", headers={"authorization": f"Bearer {key['raw']}"}
        )
        assert as_key.status_code == 401
        chat = await client.post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {key['raw']}"},
            json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert chat.status_code == 401 and "disabled" in chat.json()["error"]["message"]
        refresh = await client.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
                  "client_id": "tokenroute-cli"},
        )  # fmt: skip
        assert refresh.json()["error"] == "invalid_grant"

        await gateway.services.accounts.set_user_status(EMAIL, "active")
        assert await status_of(client, tokens["access_token"]) == 200
        again = await client.get(
            "/api/v1/balance", headers={"authorization": f"Bearer {key['raw']}"}
        )
        assert again.status_code == 200
