"""The /device page in a real headless Chromium: sign in, check the code, approve."""

from __future__ import annotations

from typing import Any

import httpx2 as httpx
import trio

from proxy.core.config import Settings
from tests.browser import artifacts, in_browser
from tests.conftest import running_gateway
from tests.fakes.openai_upstream import FakeOpenAI
from tests.test_device_flow import EMAIL, PASSWORD, ask_code, person, poll


async def test_a_person_approves_a_login_in_chromium(
    nursery: trio.Nursery, gateway_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    async with (
        running_gateway(nursery, gateway_settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as cli,
    ):
        await person(gateway)
        code = await ask_code(cli)
        shots = artifacts()

        def approve(page: Any) -> str:
            page.goto(code["verification_uri"])  # the code typed by hand, not in the link
            sign_in = page.locator("form[aria-label='sign in']")
            sign_in.locator("input[name=user_code]").fill(code["user_code"].lower())
            sign_in.locator("input[name=email]").fill(EMAIL)
            sign_in.locator("input[name=password]").fill("not the password")
            sign_in.locator("button").click()
            error = page.get_by_role("alert").inner_text()
            assert "wrong email or password" in error, error
            sign_in.locator("input[name=password]").fill(PASSWORD)
            sign_in.locator("button").click()
            page.get_by_role("button", name="Approve").wait_for()
            text = page.inner_text("body")
            assert code["user_code"] in text and "tokenroute-cli" in text, text
            page.screenshot(path=str(shots / "device-confirm.png"), full_page=True)
            page.get_by_role("button", name="Approve").click()
            status = page.get_by_role("status").inner_text()
            page.screenshot(path=str(shots / "device-approved.png"), full_page=True)
            return status

        status = await in_browser(approve)
        assert "Approved" in status and EMAIL in status
        tokens = (await poll(cli, code["device_code"])).json()
        assert "access_token" in tokens, tokens
        me = await cli.get(
            "/api/v1/me", headers={"authorization": f"Bearer {tokens['access_token']}"}
        )
        assert me.json()["email"] == EMAIL
        assert (shots / "device-approved.png").stat().st_size > 1000
