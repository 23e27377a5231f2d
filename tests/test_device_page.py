"""The sign-in page refuses what it should: guessed passwords (throttled), closed sign-up,
markup in what it echoes, forms from elsewhere; with sign-up open, a person can join."""

from __future__ import annotations

import re
from pathlib import Path

import httpx2 as httpx
import trio

from proxy.core.config import Settings, load_settings
from tests.conftest import running_gateway
from tests.fakes.openai_upstream import FakeOpenAI
from tests.test_device_flow import EMAIL, PASSWORD, ask_code, csrf_of, person, poll


async def test_sign_in_is_throttled_and_output_is_escaped(
    nursery: trio.Nursery, gateway_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    async with (
        running_gateway(nursery, gateway_settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as browser,
    ):
        await person(gateway)
        page = await browser.get("/device", params={"user_code": '"><script>alert(1)</script>'})
        assert "<script>alert(1)</script>" not in page.text
        assert "&lt;script&gt;" in page.text or "&#34;&gt;&lt;script" in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        csrf = csrf_of(page.text)
        statuses = []
        for _ in range(6):
            guess = {"csrf_token": csrf, "email": EMAIL, "password": "guess", "user_code": ""}
            reply = await browser.post("/device/sign-in", data=guess)
            statuses.append(reply.status_code)
        assert statuses == [401] * 5 + [429]
        # Even the right password waits now: the throttle is per email and per address.
        right = await browser.post("/device/sign-in", data={
            "csrf_token": csrf, "email": EMAIL, "password": PASSWORD, "user_code": ""})  # fmt: skip
        assert right.status_code == 429 and "try again in" in right.text

        join = {"csrf_token": csrf, "email": "new@example.com", "password": "long enough pw"}
        closed = await browser.post("/device/sign-up", data=join)
        assert closed.status_code == 403 and "closed" in closed.text


async def test_open_sign_up_makes_an_account_that_can_log_in(
    nursery: trio.Nursery, tmp_path: Path, gateway_env: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    config = tmp_path / "tokenroute.toml"
    config.write_text('[accounts]\nsignup = "open"\n')
    settings = load_settings(gateway_env, config, {"db_path": tmp_path / "gw.db", "port": 0})
    async with (
        running_gateway(nursery, settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as cli,
        httpx.AsyncClient(base_url=gateway.url) as browser,
    ):
        code = await ask_code(cli)
        page = await browser.get(code["verification_uri_complete"])
        assert "Create account" in page.text
        short = await browser.post("/device/sign-up", data={
            "csrf_token": csrf_of(page.text), "email": "new@example.com", "name": "New",
            "password": "short", "user_code": code["user_code"]})  # fmt: skip
        assert short.status_code == 400 and "8 characters" in short.text
        joined = await browser.post("/device/sign-up", data={
            "csrf_token": csrf_of(page.text), "email": "new@example.com", "name": "New",
            "password": "long enough pw", "user_code": code["user_code"]})  # fmt: skip
        assert joined.status_code == 303
        confirm = await browser.get(joined.headers["location"])
        decided = await browser.post("/device/decide", data={
            "csrf_token": csrf_of(confirm.text), "user_code": code["user_code"],
            "decision": "approve"})  # fmt: skip
        assert "Approved" in decided.text
        tokens = (await poll(cli, code["device_code"])).json()
        me = await cli.get(
            "/api/v1/me", headers={"authorization": f"Bearer {tokens['access_token']}"}
        )
        assert me.json()["email"] == "new@example.com" and me.json()["display_name"] == "New"
        again = await browser.post("/device/sign-up", data={
            "csrf_token": csrf_of(confirm.text), "email": "NEW@example.com",
            "password": "long enough pw"})  # fmt: skip
        assert again.status_code == 409
        assert re.search(r"exists", again.text)
