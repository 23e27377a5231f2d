"""`/oauth/authorize` in a real headless Chromium: an application asks, the person signs in,
sees who asks and where they will be sent, allows, and lands on the application's callback
with a code (the page's CSP lets its form lead there, and nowhere else)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2 as httpx
import trio

from proxy.core.config import Settings
from tests.browser import artifacts, in_browser
from tests.conftest import running_gateway
from tests.test_mcp_oauth import CALLBACK, EMAIL, PASSWORD, VERIFIER, authorize_url, register


async def test_a_person_allows_an_application_in_chromium(
    nursery: trio.Nursery, gateway_settings: Settings
) -> None:
    async with (
        running_gateway(nursery, gateway_settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):
        await gateway.services.accounts.create_user(EMAIL, name="Agent Owner")
        await gateway.services.identity.set_password(EMAIL, PASSWORD)
        client_id = (await register(http)).json()["client_id"]
        shots = artifacts()

        def allow(page: Any) -> str:
            page.route(CALLBACK + "*", lambda route: route.fulfill(body="back in the app"))
            page.goto(gateway.url + authorize_url(client_id))
            text = page.inner_text("body")
            assert "Test Agent" in text and CALLBACK in text, text
            form = page.locator("form[aria-label='sign in']")
            form.locator("input[name=email]").fill(EMAIL)
            form.locator("input[name=password]").fill("not the password")
            form.locator("button").click()
            error = page.get_by_role("alert").inner_text()
            assert "wrong email or password" in error, error
            page.locator("input[name=password]").fill(PASSWORD)
            page.locator("form[aria-label='sign in'] button").click()
            page.get_by_role("button", name="Allow").wait_for()
            page.screenshot(path=str(shots / "authorize-consent.png"), full_page=True)
            page.get_by_role("button", name="Allow").click()
            page.wait_for_url(CALLBACK + "*")
            assert page.inner_text("body") == "back in the app"
            return str(page.url)

        landed = await in_browser(allow)
        query = parse_qs(urlsplit(landed).query)
        assert query["state"] == ["st-1"] and query["iss"] == [gateway.url]
        tokens = await http.post(
            "/oauth/token",
            data={"grant_type": "authorization_code", "client_id": client_id,
                  "code": query["code"][0], "redirect_uri": CALLBACK, "code_verifier": VERIFIER},
        )  # fmt: skip
        assert tokens.status_code == 200, tokens.text
        me = await http.get(
            "/api/v1/me", headers={"authorization": f"Bearer {tokens.json()['access_token']}"}
        )
        assert me.json()["email"] == EMAIL
