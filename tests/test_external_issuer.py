"""An external issuer by config: its tokens are accepted, its users made on first sight,
its key rotations followed, and the gateway issues nothing itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx2 as httpx
import pytest
import trio

from proxy.core.config import Settings, load_settings
from tests.conftest import running_gateway
from tests.fakes.issuer import FakeIssuer
from tests.fakes.openai_upstream import FakeOpenAI

AUDIENCE = "https://api.gateway.example"


@pytest.fixture
async def issuer(nursery: trio.Nursery) -> AsyncIterator[FakeIssuer]:
    fake = await nursery.start(FakeIssuer().run)
    yield fake
    fake.stop()


@pytest.fixture
def external_settings(tmp_path: Path, gateway_env: dict[str, str], issuer: FakeIssuer) -> Settings:
    config = tmp_path / "tokenroute.toml"
    config.write_text(
        f'[auth]\nissuer = "{issuer.url}"\naudience = "{AUDIENCE}"\nclient_id = "my-cli"\n'
        "jwks_refetch_seconds = 1\n"
    )
    return load_settings(gateway_env, config, {"db_path": tmp_path / "gw.db", "port": 0})


async def me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/api/v1/me", headers={"authorization": f"Bearer {token}"})


async def test_tokens_of_an_external_issuer(
    nursery: trio.Nursery,
    external_settings: Settings,
    issuer: FakeIssuer,
    fake_openai: FakeOpenAI,
) -> None:
    async with (
        running_gateway(nursery, external_settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        discovery = (await client.get("/api/v1/auth/discovery")).json()
        assert discovery["issuer"] == issuer.url and discovery["client_id"] == "my-cli"
        assert discovery["device_authorization_endpoint"] == issuer.url + "/oauth/device/code"
        assert discovery["resource"] == AUDIENCE

        token = issuer.sign(sub="logto_xyz", aud=AUDIENCE, email="grace@example.com",
                            name="Grace")  # fmt: skip
        first = await me(client, token)
        assert first.status_code == 200, first.text
        body = first.json()
        assert body["logto_sub"] == "logto_xyz" and body["email"] == "grace@example.com"
        assert body["display_name"] == "Grace" and body["balance_usd"] == "0.00"
        assert (await me(client, token)).json()["id"] == body["id"]  # made once
        keys = await client.post(
            "/api/v1/me/keys", headers={"authorization": f"Bearer {token}"}, json={"name": "ci"}
        )
        assert keys.status_code == 201

        refused = {
            "wrong audience": issuer.sign(sub="logto_xyz", aud="https://other.example"),
            "wrong issuer": issuer.sign(sub="logto_xyz", aud=AUDIENCE, iss="https://evil.example"),
            "expired": issuer.sign(sub="logto_xyz", aud=AUDIENCE, exp=1_000_000),
        }
        for what, bad in refused.items():
            assert (await me(client, bad)).status_code == 401, what

        # Unknown kids do not make the gateway hammer the issuer.
        before = issuer.jwks_fetches
        stranger = FakeIssuer()
        stranger.url = issuer.url
        for _ in range(20):
            forged = stranger.sign(sub="logto_xyz", aud=AUDIENCE)
            assert (await me(client, forged)).status_code == 401
        assert issuer.jwks_fetches - before <= 1

        # The issuer rotates its key: tokens signed with the new one are accepted.
        issuer.rotate()
        await trio.sleep(1.1)
        rotated = issuer.sign(sub="logto_xyz", aud=AUDIENCE)
        assert (await me(client, rotated)).status_code == 200

        # The gateway issues nothing itself.
        code = await client.post("/oauth/device/code", data={"client_id": "my-cli"})
        assert code.status_code == 400 and code.json()["error"] == "unsupported_grant_type"
        assert issuer.url in code.json()["error_description"]
        assert (await client.get("/oauth/jwks.json")).status_code == 404


async def test_an_unreachable_issuer_is_a_503_not_a_401(
    nursery: trio.Nursery, tmp_path: Path, gateway_env: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    config = tmp_path / "tokenroute.toml"
    config.write_text(f'[auth]\nissuer = "http://127.0.0.1:9"\naudience = "{AUDIENCE}"\n')
    settings = load_settings(gateway_env, config, {"db_path": tmp_path / "gw.db", "port": 0})
    async with (
        running_gateway(nursery, settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        unreachable = FakeIssuer()
        unreachable.url = "http://127.0.0.1:9"
        reply = await me(client, unreachable.sign(sub="x", aud=AUDIENCE))
        assert reply.status_code == 503
        assert "127.0.0.1:9" not in reply.text  # the operator's detail stays in the log
        again = await me(client, unreachable.sign(sub="x", aud=AUDIENCE))  # not refetched yet
        assert again.status_code == 503 and "retry-after" in again.headers
