"""The MCP server at `/mcp`, driven by the official `mcp` client against a live gateway.

Every tool is called with a login token and with an `sk-tr` key, and its data compared
with what `/api/v1` (or `/v1`) answers for the same token; a key made by `keys_create`
then serves a chat request upstream. A key is refused key management with the API's own
message, as an MCP tool error; a missing or bad token is refused with 401 and a pointer
to the protected-resource metadata, which names our issuer.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest
import trio
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from proxy.core.config import Settings, load_settings
from proxy.core.money import usd_to_units
from tests.conftest import running_gateway
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.stripe_api import SECRET_KEY, WEBHOOK_SECRET, FakeStripe
from tests.test_device_flow import EMAIL
from tests.test_key_management import login, new_key

TOOLS = {"whoami", "balance", "keys_list", "keys_create", "keys_revoke", "topup_url", "usage",
         "models", "route_explain"}  # fmt: skip
MESSAGES = [{"role": "user", "content": "What's the capital of France?"}]
KEYS_NEED_LOGIN = "managing keys needs a login token (tokenroute login), not an API key"
OLDER_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
TEN = {"amount_usd": "10"}
BALANCE_3 = {"balance_usd": "3.00", "currency": "USD"}
STREAMABLE = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@pytest.fixture
async def fake_stripe(nursery: trio.Nursery) -> AsyncIterator[FakeStripe]:
    fake = await nursery.start(FakeStripe().run)
    yield fake
    fake.stop()


@pytest.fixture
def mcp_settings(tmp_path: Path, gateway_env: dict[str, str], fake_stripe: FakeStripe) -> Settings:
    """Auto-routing over the fake OpenAI's catalog, and payments through the fake Stripe."""
    config = tmp_path / "tokenroute.toml"
    config.write_text('[payments]\nmin_usd = "5"\nmax_usd = "100"\nfee_percent = "10"\n')
    env = {**gateway_env, "STRIPE_SECRET_KEY": SECRET_KEY, "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
           "STRIPE_API_BASE": fake_stripe.url}  # fmt: skip
    return load_settings(env, config, {"db_path": tmp_path / "gw.db", "port": 0})


@asynccontextmanager
async def mcp_session(
    url: str, token: str, *, modern: bool = False
) -> AsyncIterator[ClientSession]:
    """The official client on `/mcp` with a bearer token: the per-request protocol
    (2026-07-28, `server/discover`) or the initialize handshake that older clients use."""
    async with (
        httpx.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=30) as http,
        streamable_http_client(url + "/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await (session.discover() if modern else session.initialize())
        yield session


async def call(session: ClientSession, tool: str, **arguments: Any) -> Any:
    """A tool's data (the JSON block, last in its content); fails on a tool error."""
    result = await session.call_tool(tool, arguments)
    texts = [block.text for block in result.content if block.type == "text"]
    assert not result.is_error, texts
    data = json.loads(texts[-1])
    if isinstance(data, dict):
        assert result.structured_content == data
    return data


async def refusal(session: ClientSession, tool: str, **arguments: Any) -> str:
    """The message of a tool error (MCP's `isError`)."""
    result = await session.call_tool(tool, arguments)
    assert result.is_error, result
    [block] = result.content
    assert block.type == "text"
    return block.text


def leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        [error] = error.exceptions
    return error


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_every_tool_with_a_login_then_with_a_key(
    nursery: trio.Nursery, mcp_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    async with (
        running_gateway(nursery, mcp_settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as api,
    ):
        auth = await login(gateway, api)
        jwt = auth["authorization"].removeprefix("Bearer ")
        funded = await new_key(api, auth, name="funded")
        await gateway.services.accounts.grant(funded["id"], usd_to_units("10"))

        async with mcp_session(gateway.url, jwt) as session:
            assert session.protocol_version == "2025-11-25"
            hello = session.initialize_result
            assert hello is not None and hello.server_info.name == "tokenroute"
            assert hello.instructions and "Never pay" in hello.instructions
            listed = (await session.list_tools()).tools
            assert {tool.name for tool in listed} == TOOLS
            for tool in listed:
                assert tool.input_schema["type"] == "object", tool.name
                assert tool.description and "\n" not in tool.description, tool.name
            schemas = {tool.name: tool.input_schema for tool in listed}
            assert schemas["keys_create"]["required"] == ["name"]
            assert schemas["route_explain"]["required"] == ["messages"]
            assert schemas["usage"]["properties"]["days"]["maximum"] == 365

            me = (await api.get("/api/v1/me", headers=auth)).json()
            assert await call(session, "whoami") == me and me["email"] == EMAIL
            balance = (await api.get("/api/v1/balance", headers=auth)).json()
            assert await call(session, "balance") == balance
            assert balance == {"balance_usd": "10.00", "currency": "USD"}

            made = await session.call_tool(
                "keys_create", {"name": "agent", "credit_usd": "2.50", "from_key": funded["id"]}
            )
            note, data = (block.text for block in made.content if block.type == "text")
            agent = json.loads(data)
            assert agent["raw"].startswith("sk-tr-") and agent["raw"] not in note
            assert agent["balance_usd"] == "2.50" and agent["name"] == "agent"
            assert "only" in note and f"OPENAI_BASE_URL={gateway.url}/v1" in note
            listing = await call(session, "keys_list")
            assert listing == (await api.get("/api/v1/me/keys", headers=auth)).json()
            assert {k["id"]: k["balance_usd"] for k in listing} == {
                funded["id"]: "7.50", agent["id"]: "2.50"}  # fmt: skip

            # The new key serves a chat request upstream.
            reply = await gateway.client(agent["raw"]).chat.completions.create(
                model="openai/gpt-4o-mini", messages=MESSAGES
            )
            assert reply.choices[0].message.content and fake_openai.requests
            [row] = await gateway.wait_usage_rows(1)
            assert row["key_id"] == agent["id"]

            used = await call(session, "usage", days=7)
            assert used == (await api.get("/api/v1/usage?days=7", headers=auth)).json()
            assert used["total_requests"] == 1 and used["by_key"][0]["key_id"] == agent["id"]
            models = await call(session, "models")
            assert models == (await api.get("/v1/models", headers=bearer(agent["raw"]))).json()
            assert "openai/gpt-4o-mini" in {m["id"] for m in models["data"]}
            explained = await call(session, "route_explain", messages=MESSAGES)
            by_api = await api.post(
                "/v1/route/explain", headers=bearer(agent["raw"]), json={"messages": MESSAGES}
            )
            assert explained == by_api.json() and explained["tier"] == "SIMPLE"

            checkout = await session.call_tool("topup_url", TEN)
            note, data = (block.text for block in checkout.content if block.type == "text")
            paid = json.loads(data)
            assert "Nothing has been paid" in note and paid["checkout_url"] in note
            assert paid["checkout_url"].startswith("https://checkout.stripe.test/")
            by_api = (await api.post("/api/v1/topup", headers=auth, json=TEN)).json()
            assert set(paid) == set(by_api) and paid["key_id"] == by_api["key_id"] == agent["id"]
            assert (paid["amount_usd"], paid["credit_usd"]) == ("10.00", "9.00")

            # The API's refusals, word for word, as tool errors.
            for tool, arguments, path in (
                ("usage", {"days": 0}, "/api/v1/usage?days=0"),
                ("usage", {"key": "key_nope"}, "/api/v1/usage?key=key_nope"),
            ):
                refused = (await api.get(path, headers=auth)).json()["error"]["message"]
                assert await refusal(session, tool, **arguments) == refused
            bad = {"name": "x", "credit_usd": "2"}
            refused = (await api.post("/api/v1/me/keys", headers=auth, json=bad)).json()
            assert await refusal(session, "keys_create", **bad) == refused["error"]["message"]
            assert "from_key" in refused["error"]["message"]

        async with mcp_session(gateway.url, agent["raw"], modern=True) as session:
            assert session.protocol_version == "2026-07-28"
            key_auth = bearer(agent["raw"])
            me = await call(session, "whoami")
            assert me == (await api.get("/api/v1/me", headers=key_auth)).json()
            assert me["balance_usd"] == (await call(session, "balance"))["balance_usd"]
            assert usd_to_units(me["balance_usd"]) < usd_to_units("2.50")  # the chat was billed
            used = await call(session, "usage")
            assert used == (await api.get("/api/v1/usage", headers=key_auth)).json()
            assert used["total_requests"] == 1
            models = await call(session, "models")
            assert models == (await api.get("/v1/models", headers=key_auth)).json()
            explained = await call(session, "route_explain", messages=MESSAGES, session_id="s1")
            by_api = await api.post("/v1/route/explain", headers={**key_auth, "x-session-id": "s1"},
                                    json={"messages": MESSAGES})  # fmt: skip
            assert explained == by_api.json()
            paid = await call(session, "topup_url", amount_usd="5")
            assert paid["key_id"] == agent["id"] and paid["credit_usd"] == "4.50"

            # A key reads and tops up itself only, as on /api/v1.
            for tool, arguments in (("keys_list", {}), ("keys_create", {"name": "x"}),
                                    ("keys_revoke", {"key_id": funded["id"]})):  # fmt: skip
                assert await refusal(session, tool, **arguments) == KEYS_NEED_LOGIN
            refused = await api.get("/api/v1/me/keys", headers=key_auth)
            assert refused.status_code == 403
            assert refused.json()["error"]["message"] == KEYS_NEED_LOGIN
            others = f"/api/v1/usage?key={funded['id']}"
            refused = (await api.get(others, headers=key_auth)).json()["error"]["message"]
            assert await refusal(session, "usage", key=funded["id"]) == refused
            assert refused == "an API key can read its own usage only"
            wrong = {"amount_usd": "5", "key": funded["id"]}
            refused = (await api.post("/api/v1/topup", headers=key_auth, json=wrong)).json()
            assert await refusal(session, "topup_url", **wrong) == refused["error"]["message"]

        async with mcp_session(gateway.url, jwt, modern=True) as session:
            revoked = await call(session, "keys_revoke", key_id=agent["id"])
            assert revoked["id"] == agent["id"] and revoked["status"] == "revoked"
            missing = await refusal(session, "keys_revoke", key_id="key_nope")
            by_api = await api.post("/api/v1/me/keys/key_nope/revoke", headers=auth)
            assert missing == by_api.json()["error"]["message"]
        with pytest.raises(openai.AuthenticationError):
            await gateway.client(agent["raw"]).chat.completions.create(
                model="openai/gpt-4o-mini", messages=MESSAGES
            )


async def test_refused_without_a_good_token(
    nursery: trio.Nursery, gateway_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    async with (
        running_gateway(nursery, gateway_settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as client,
    ):
        metadata = f"{gateway.url}/.well-known/oauth-protected-resource"
        hello = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        challenge = f'Bearer resource_metadata="{metadata}"'
        for headers, expected in (
            ({}, challenge),
            (bearer("not-a-token"), challenge + ', error="invalid_token"'),
            (bearer("sk-tr-" + "0" * 40), challenge + ', error="invalid_token"'),
        ):
            refused = await client.post("/mcp", json=hello, headers={**STREAMABLE, **headers})
            assert refused.status_code == 401, refused.text
            assert refused.headers["www-authenticate"] == expected
            assert refused.json()["error"]["type"] == "authentication_error"
            assert refused.json()["jsonrpc"] == "2.0" and refused.json()["id"] is None
            assert refused.headers["x-request-id"]

        # The official client shows the gateway's reason (the body is a JSON-RPC error too).
        with pytest.raises(BaseExceptionGroup) as raised:
            async with mcp_session(gateway.url, "not-a-token"):
                pass
        error = leaf(raised.value)
        assert isinstance(error, MCPError) and error.error.code == 401
        assert error.error.message == "the login token is invalid or expired"

        # The document the challenge names: our resource, our issuer.
        issuer = (await client.get("/.well-known/openid-configuration")).json()["issuer"]
        for path in (metadata, metadata + "/mcp"):
            document = (await client.get(path)).json()
            assert document == {
                "resource": f"{gateway.url}/mcp",
                "authorization_servers": [issuer],
                "bearer_methods_supported": ["header"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "resource_name": "tokenroute",
                "resource_documentation": f"{gateway.url}/llms.txt",
            }
        assert issuer == gateway.url

        # A good token from another Host is the SDK's DNS-rebinding guard's to refuse.
        _, raw = gateway.create_key()
        rebound = await client.post(
            "/mcp", json=hello, headers={**STREAMABLE, **bearer(raw), "host": "evil.example"}
        )
        assert rebound.status_code == 421


async def test_the_handshake_versions_older_clients_send(
    nursery: trio.Nursery, gateway_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    async with (
        running_gateway(nursery, gateway_settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as client,
    ):
        _, raw = gateway.create_key(credit="3")
        headers = {**STREAMABLE, **bearer(raw)}
        for version in OLDER_VERSIONS:
            hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                     "params": {"protocolVersion": version, "capabilities": {},
                                "clientInfo": {"name": "old", "version": "1"}}}  # fmt: skip
            answer = await client.post("/mcp", json=hello, headers=headers)
            assert answer.status_code == 200, answer.text
            assert answer.json()["result"]["protocolVersion"] == version
            versioned = {**headers, "mcp-protocol-version": version}
            called = await client.post("/mcp", headers=versioned, json={
                "jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "balance", "arguments": {}}})  # fmt: skip
            assert called.status_code == 200, called.text
            result = called.json()["result"]
            assert json.loads(result["content"][0]["text"]) == BALANCE_3
