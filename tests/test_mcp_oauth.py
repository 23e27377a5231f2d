"""An MCP client that logs in by itself: OAuth 2.1 with PKCE against the gateway's issuer.

The official `mcp` client is given no token, only the `/mcp` URL: it is refused with a
pointer to the protected-resource metadata, finds our issuer, registers itself (RFC
7591), sends its person to `/oauth/authorize` (here a browser-like HTTP client signs in
and allows it), exchanges the code with its PKCE verifier, and calls tools. The refusals
on the way are checked too: unknown clients and unregistered redirect URIs are answered
on the page, a wrong verifier or a reused code gets `invalid_grant`.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2 as httpx
import pytest
import trio
from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)

from proxy.core.config import Settings
from tests.conftest import RunningGateway, running_gateway

EMAIL, PASSWORD = "agent-owner@example.com", "a long enough password"
CALLBACK = "http://127.0.0.1:33418/callback"
VERIFIER = "v" * 64
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).decode()[:43]


class Memory:
    """The client's token storage (the SDK's protocol), in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


class Person:
    """A browser that signs in on the authorization page and allows (or denies)."""

    def __init__(self, base_url: str, allow: bool = True) -> None:
        self.base_url = base_url
        self.allow = allow
        self.sent_to: str | None = None  # the authorization URL the client opened
        self.pages: list[str] = []

    async def open(self, url: str) -> None:
        self.sent_to = url

    async def decide(self) -> AuthorizationCodeResult:
        assert self.sent_to is not None, "the client never sent its person anywhere"
        location = await self.walk(self.sent_to)
        query = parse_qs(urlsplit(location).query)
        assert location.startswith(CALLBACK), location
        assert "code" in query, query
        return AuthorizationCodeResult(
            code=query["code"][0], state=query.get("state", [None])[0], iss=query["iss"][0]
        )

    async def walk(self, url: str) -> str:
        """Sign in and decide; where the browser is sent at the end."""
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30) as browser:
            page = await browser.get(url)
            assert page.status_code == 200, page.text
            self.pages.append(page.text)
            signed = await browser.post(
                "/oauth/authorize/sign-in",
                data={**hidden_fields(page.text), "email": EMAIL, "password": PASSWORD},
            )
            assert signed.status_code == 303, signed.text
            consent = await browser.get(signed.headers["location"])
            self.pages.append(consent.text)
            decision = {"decision": "approve" if self.allow else "deny"}
            answer = await browser.post(
                "/oauth/authorize/decide", data={**hidden_fields(consent.text), **decision}
            )
            assert answer.status_code == 303, answer.text
            return answer.headers["location"]  # type: ignore[no-any-return]


def hidden_fields(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html))


@pytest.fixture
async def gateway(
    nursery: trio.Nursery, gateway_settings: Settings
) -> AsyncIterator[RunningGateway]:
    async with running_gateway(nursery, gateway_settings) as running:
        await running.services.accounts.create_user(EMAIL, name="Agent Owner")
        await running.services.identity.set_password(EMAIL, PASSWORD)
        yield running


def client_metadata() -> OAuthClientMetadata:
    return OAuthClientMetadata(
        client_name="Test Agent",
        redirect_uris=[CALLBACK],  # type: ignore[list-item]
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
    )


async def test_an_mcp_client_logs_in_by_itself_and_calls_tools(gateway: RunningGateway) -> None:
    person, storage = Person(gateway.url), Memory()
    auth = OAuthClientProvider(
        server_url=gateway.url + "/mcp",
        client_metadata=client_metadata(),
        storage=storage,
        redirect_handler=person.open,
        callback_handler=person.decide,
    )
    async with (
        httpx.AsyncClient(auth=auth, timeout=30) as http,
        streamable_http_client(gateway.url + "/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        result = await session.call_tool("whoami", {})
    assert not result.is_error
    said = " ".join(block.text for block in result.content if block.type == "text")
    assert EMAIL in said
    assert person.sent_to is not None and person.sent_to.startswith(
        gateway.url + "/oauth/authorize"
    )
    assert "Test Agent" in person.pages[-1] and CALLBACK in person.pages[-1]
    assert storage.client is not None and storage.client.client_id.startswith("mcp_")
    assert storage.tokens is not None and storage.tokens.refresh_token
    async with httpx.AsyncClient(base_url=gateway.url) as plain:  # the token works on the API
        me = await plain.get(
            "/api/v1/me", headers={"authorization": f"Bearer {storage.tokens.access_token}"}
        )
        refreshed = await plain.post(
            "/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": storage.tokens.refresh_token,
                "client_id": storage.client.client_id,
            },
        )
    assert me.status_code == 200 and me.json()["email"] == EMAIL
    assert refreshed.status_code == 200 and refreshed.json()["refresh_token"]


async def register(http: httpx.AsyncClient, **metadata: Any) -> httpx.Response:
    return await http.post(
        "/oauth/register",
        json={"client_name": "Test Agent", "redirect_uris": [CALLBACK], **metadata},
    )


def authorize_url(client_id: str, **extra: str) -> str:
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": CALLBACK,
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
        "state": "st-1",
        **extra,
    }
    return "/oauth/authorize?" + "&".join(f"{k}={v}" for k, v in query.items())


async def test_refusals_on_the_way(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        metadata = await http.get("/.well-known/oauth-authorization-server")
        assert metadata.json()["authorization_endpoint"] == gateway.url + "/oauth/authorize"
        assert metadata.json()["code_challenge_methods_supported"] == ["S256"]
        bad_uri = await register(http, redirect_uris=["http://evil.example.com/cb"])
        secret = await register(http, token_endpoint_auth_method="client_secret_basic")
        client_id = (await register(http)).json()["client_id"]
        unknown = await http.get(authorize_url("mcp_nonesuch"))
        elsewhere = await http.get(authorize_url(client_id, redirect_uri="https://x.example/cb"))
        no_pkce = await http.get(authorize_url(client_id, code_challenge_method="plain"))
        location = await Person(gateway.url).walk(authorize_url(client_id))
        code = parse_qs(urlsplit(location).query)["code"][0]
        token = {"grant_type": "authorization_code", "client_id": client_id, "code": code,
                 "redirect_uri": CALLBACK}  # fmt: skip
        wrong = await http.post("/oauth/token", data={**token, "code_verifier": "w" * 64})
        right = await http.post("/oauth/token", data={**token, "code_verifier": VERIFIER})
        again = await http.post("/oauth/token", data={**token, "code_verifier": VERIFIER})
        after = await http.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "client_id": client_id,
                  "refresh_token": right.json()["refresh_token"]},
        )  # fmt: skip
        denied = await Person(gateway.url, allow=False).walk(authorize_url(client_id))
    assert bad_uri.status_code == 400 and bad_uri.json()["error"] == "invalid_redirect_uri"
    assert secret.status_code == 400 and secret.json()["error"] == "invalid_client_metadata"
    assert unknown.status_code == 400 and "unknown client_id" in unknown.text
    assert elsewhere.status_code == 400 and "redirect_uri is not one" in elsewhere.text
    assert no_pkce.status_code == 303
    assert parse_qs(urlsplit(no_pkce.headers["location"]).query)["error"] == ["invalid_request"]
    assert parse_qs(urlsplit(location).query)["state"] == ["st-1"]
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    assert right.status_code == 200 and right.json()["token_type"] == "Bearer"
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert after.status_code == 400, "a reused code revokes the tokens it gave"
    assert parse_qs(urlsplit(denied).query)["error"] == ["access_denied"]
