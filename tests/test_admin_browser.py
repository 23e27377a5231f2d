"""The operator's day in a real headless Chromium: sign in, create a user and a key (raw shown
once), grant credit (preview, confirm), see a request made with the openai SDK on the
dashboard and in the usage explorer, export it as CSV, revoke the key and see its next call
fail. A screenshot of each page goes to `.test-artifacts/`."""

from __future__ import annotations

import csv
import io
from typing import Any

import openai
import pytest
import trio

from proxy.core.config import Settings
from tests.admin_helpers import ADMIN, PASSWORD, make_admin
from tests.browser import artifacts, in_browser
from tests.conftest import running_gateway
from tests.fakes.openai_upstream import FakeOpenAI


async def test_an_operators_day_in_chromium(
    nursery: trio.Nursery, gateway_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    async with running_gateway(nursery, gateway_settings) as gateway:
        await make_admin(gateway)
        url, shots = gateway.url, artifacts()

        def shot(page: Any, name: str) -> None:
            page.screenshot(path=str(shots / f"admin-{name}.png"), full_page=True)

        def set_up(page: Any) -> dict[str, str]:
            page.goto(url + "/admin/")  # redirected to sign-in
            page.fill("input[name=email]", ADMIN)
            page.fill("input[name=password]", PASSWORD)
            page.click("form[aria-label='sign in'] button")
            page.get_by_role("heading", name="Dashboard").wait_for()
            page.click("text=Users")
            form = page.locator("form[aria-label='create user']")
            form.locator("input[name=email]").fill("customer@example.com")
            form.locator("input[name=name]").fill("Customer")
            form.locator("button").click()
            page.get_by_role("heading", name="customer@example.com").wait_for()
            shot(page, "user")
            form = page.locator("form[aria-label='create key']")
            form.locator("input[name=name]").fill("shop")
            form.locator("button").click()
            raw = page.locator("#raw-key").inner_text().strip()
            shot(page, "key-created")
            key_url = f"{url}/admin/keys/{page.locator('#key-id').inner_text()}"
            form = page.locator("form[aria-label='credit']")
            form.locator("input[name=amount]").fill("2.50")
            form.locator("input[name=note]").fill("welcome credit")
            form.locator("button").click()
            preview = page.locator("form[aria-label='confirm credit']").inner_text()
            assert "grant $2.50" in preview and "$0.00 → $2.50" in preview, preview
            shot(page, "credit-preview")
            page.locator("form[aria-label='confirm credit'] button").click()
            status = page.get_by_role("status").inner_text()
            assert "grant of $2.50 done" in status, status
            return {"raw": raw, "key_url": key_url}

        made = await in_browser(set_up)
        raw = made["raw"]
        assert raw.startswith("sk-tr-")
        sdk = openai.AsyncOpenAI(base_url=url + "/v1", api_key=raw, max_retries=0)
        async with sdk:
            reply = await sdk.chat.completions.with_raw_response.create(
                model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
            request_id = reply.headers["x-request-id"]
            await gateway.wait_usage_rows(1)

            def check_and_revoke(page: Any) -> str:
                page.goto(url + "/admin/sign-in")
                page.fill("input[name=email]", ADMIN)
                page.fill("input[name=password]", PASSWORD)
                page.click("form[aria-label='sign in'] button")
                page.get_by_role("heading", name="Dashboard").wait_for()
                body = page.inner_text("body")
                assert "1 requests" in body and "shop" in body, body[:800]
                shot(page, "dashboard")
                page.click("text=Usage")
                page.get_by_role("heading", name="Usage").wait_for()
                assert request_id in page.inner_text("body")
                shot(page, "usage")
                with page.expect_download() as download:
                    page.click("text=Export CSV")
                exported = download.value.path().read_text()
                page.goto(made["key_url"])
                page.locator("form[aria-label='revoke'] button").click()
                assert "revoked" in page.get_by_role("status").inner_text()
                shot(page, "key-revoked")
                page.click("text=Audit")
                audit = page.inner_text("body")
                assert "revoke-key" in audit and "grant" in audit and "create-key" in audit
                shot(page, "audit")
                return str(exported)

            exported = await in_browser(check_and_revoke)
            rows = list(csv.DictReader(io.StringIO(exported)))
            assert [r["request_id"] for r in rows] == [request_id]
            assert rows[0]["status"] == "200" and int(rows[0]["cost"]) > 0
            with pytest.raises(openai.AuthenticationError):
                await sdk.chat.completions.create(
                    model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
                )
        print(f"\nadmin page screenshots: {shots}")
