"""The admin pages over HTTP: who gets in, forms that need their CSRF token, escaping of
everything a user or an upstream can write, the cookie's flags, throttled sign-in."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import httpx2 as httpx
import trio

from proxy.core.config import Settings, load_settings
from tests.admin_helpers import ADMIN, PASSWORD, csrf_of, make_admin, sign_in
from tests.conftest import running_gateway
from tests.fakes.openai_upstream import FakeOpenAI

XSS = "<script>alert(1)</script>"
PAGES = (
    "/admin/",
    "/admin/users",
    "/admin/keys",
    "/admin/usage",
    "/admin/audit",
    "/admin/models",
    "/admin/money",
)


async def test_only_signed_in_administrators_get_in(
    nursery: trio.Nursery, gateway_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    async with (
        running_gateway(nursery, gateway_settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        for path in PAGES:
            away = await client.get(path)
            assert away.status_code == 303 and away.headers["location"].startswith(
                "/admin/sign-in?next="
            ), path
        await make_admin(gateway)
        await gateway.services.accounts.create_user("plain@example.com")
        await gateway.services.identity.set_password("plain@example.com", PASSWORD)
        plain = await sign_in(client, "plain@example.com")
        assert plain.status_code == 403 and "not an administrator" in plain.text
        signed = await sign_in(client)
        assert signed.status_code == 303
        cookie = signed.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
        for path in PAGES:
            page = await client.get(path)
            assert page.status_code == 200, path
            assert "default-src 'none'" in page.headers["content-security-policy"]
            assert page.headers["x-frame-options"] == "DENY"
            assert page.headers["referrer-policy"] == "no-referrer"
        css = await client.get("/admin/static/admin.css")
        assert css.status_code == 200 and "font-family" in css.text
        # An administrator who loses the role is refused at the next page.
        conn = sqlite3.connect(gateway.db_path)
        with conn:
            conn.execute("UPDATE users SET is_admin = 0 WHERE email = ?", (ADMIN,))
        conn.close()
        assert (await client.get("/admin/users")).status_code == 403


async def test_forms_need_their_csrf_token_and_change_nothing_without_it(
    nursery: trio.Nursery, gateway_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    async with (
        running_gateway(nursery, gateway_settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        await make_admin(gateway)
        await sign_in(client)
        for token in (None, "wrong-token"):
            data = {"email": "mallory@example.com"} | ({"csrf_token": token} if token else {})
            refused = await client.post("/admin/users", data=data)
            assert refused.status_code == 403
        listing = await client.get("/admin/users", params={"q": "mallory"})
        assert "mallory@example.com" not in listing.text
        made = await client.post("/admin/users", data={"email": "alice@example.com",
                                 "csrf_token": csrf_of(listing.text)})  # fmt: skip
        assert made.status_code == 303


async def test_everything_written_by_users_or_upstreams_is_escaped(
    nursery: trio.Nursery, gateway_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    async with (
        running_gateway(nursery, gateway_settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        await make_admin(gateway)
        await sign_in(client)
        accounts = gateway.services.accounts
        user = await accounts.create_user("x@example.com", name=XSS)
        new = await accounts.create_key(user.email, XSS, credit=1_000_000_000)
        await accounts.grant(new.record.id, 5, note=XSS)
        conn = sqlite3.connect(gateway.db_path)
        with conn:
            conn.execute(
                "INSERT INTO usage (request_id, key_id, user_id, requested_model, served_model, "
                "status, error, created_at) VALUES ('req_x', ?, ?, ?, ?, 502, ?, "
                "CAST(strftime('%s','now') AS INTEGER) * 1000)",
                (new.record.id, user.id, XSS, XSS, XSS),
            )
        conn.close()
        pages = [*PAGES, f"/admin/users/{user.id}", f"/admin/keys/{new.record.id}",
                 "/admin/users?q=" + XSS]  # fmt: skip
        for path in pages:
            html = (await client.get(path)).text
            assert XSS not in html, path
        assert "&lt;script&gt;" in (await client.get(f"/admin/keys/{new.record.id}")).text


async def test_the_cookie_is_secure_behind_https(
    nursery: trio.Nursery, tmp_path: Path, gateway_env: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    env = {**gateway_env, "TOKENROUTE_PUBLIC_URL": "https://gateway.example"}
    settings = load_settings(env, None, {"db_path": tmp_path / "gw.db", "port": 0})
    async with (
        running_gateway(nursery, settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        page = await client.get("/admin/sign-in")
        assert "Secure" in page.headers["set-cookie"]  # the browser sends it over https only


async def test_the_eleventh_wrong_password_is_throttled(
    nursery: trio.Nursery, gateway_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    async with (
        running_gateway(nursery, gateway_settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        await make_admin(gateway)
        token = csrf_of((await client.get("/admin/sign-in")).text)
        statuses = []
        for _ in range(11):
            reply = await client.post("/admin/sign-in", data={
                "csrf_token": token, "email": ADMIN, "password": "wrong"})  # fmt: skip
            statuses.append(reply.status_code)
        assert statuses[0] == 401 and statuses[-1] == 429


async def test_models_page_masks_secrets_and_money_page_checks_the_books(
    nursery: trio.Nursery, gateway_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    async with (
        running_gateway(nursery, gateway_settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        await make_admin(gateway)
        await sign_in(client)
        models = await client.get("/admin/models")
        assert "openai/gpt-4o-mini" in models.text
        assert gateway_settings.internal_secret is not None
        assert gateway_settings.internal_secret not in models.text
        assert "(set, hidden)" in models.text and "TOKENROUTE_INTERNAL_SECRET" in models.text
        assert "sk-upstream-secret-123" not in models.text  # the provider's key
        page = await client.get("/admin/money")
        checked = await client.post("/admin/money/check", data={"csrf_token": csrf_of(page.text)})
        assert checked.status_code == 200 and "the books agree" in checked.text


async def test_moving_credit_and_setting_limits_from_a_key_page(
    nursery: trio.Nursery, gateway_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    async with (
        running_gateway(nursery, gateway_settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        await make_admin(gateway)
        await sign_in(client)
        accounts = gateway.services.accounts
        await accounts.create_user("owner@example.com")
        a = (await accounts.create_key("owner@example.com", "a", credit=5_000_000_000)).record
        b = (await accounts.create_key("owner@example.com", "b")).record
        page = await client.get(f"/admin/keys/{a.id}")
        token = csrf_of(page.text)
        move = f"/admin/keys/{a.id}/move"
        moved = await client.post(
            move, data={"csrf_token": token, "to_key": b.id, "amount": "1.25"}
        )
        assert moved.status_code == 200 and "moved $1.25 to b" in moved.text
        assert await accounts.key_balance(b.id) == 1_250_000_000
        too_much = await client.post(
            move, data={"csrf_token": token, "to_key": b.id, "amount": "99"}
        )
        assert too_much.status_code == 400 and await accounts.key_balance(a.id) == 3_750_000_000
        form = {
            "csrf_token": token,
            "tier": "default",
            "rps": "2",
            "burst": "3",
            "max_streams": "1",
        }
        limits = await client.post(f"/admin/keys/{a.id}/limits", data=form)
        assert limits.status_code == 200
        key = await accounts.key(a.id)
        assert (key.rps, key.burst, key.max_streams) == (2.0, 3, 1)
        bad = await client.post(f"/admin/keys/{a.id}/limits", data={**form, "rps": "fast"})
        assert bad.status_code == 400
        assert (await accounts.check()).problems == []


async def test_a_reset_link_sets_a_password_once(
    nursery: trio.Nursery, gateway_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    async with (
        running_gateway(nursery, gateway_settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
        httpx.AsyncClient(base_url=gateway.url) as person,
    ):
        await make_admin(gateway)
        await sign_in(client)
        user = await gateway.services.accounts.create_user("forgot@example.com")
        page = await client.get(f"/admin/users/{user.id}")
        made = await client.post(f"/admin/users/{user.id}/reset-link",
                                 data={"csrf_token": csrf_of(page.text)})  # fmt: skip
        link = re.search(r'id="reset-link">([^<]+)<', made.text)
        assert made.status_code == 200 and link, made.text[:500]
        path = link.group(1).removeprefix(gateway.url)
        form = await person.get(path)
        assert form.status_code == 200 and "forgot@example.com" in form.text
        token = path.split("token=")[1]
        fields = {"csrf_token": csrf_of(form.text), "token": token}
        short = await person.post("/reset-password", data={**fields, "password": "short"})
        assert short.status_code == 400 and "8 characters" in short.text
        done = await person.post("/reset-password", data={**fields, "password": "brand new pw"})
        assert done.status_code == 200 and "Done" in done.text
        signed = await gateway.services.identity.sign_in(
            "forgot@example.com", "brand new pw", "127.0.0.1"
        )
        assert signed.id == user.id
        again = await person.get(path)
        assert again.status_code == 404 and "used or expired" in again.text
        assert (await person.get("/reset-password?token=pr_nothing")).status_code == 404
        audit = await client.get("/admin/audit", params={"action": "reset"})
        assert "password-reset-link" in audit.text


async def test_keys_filter_by_owner_status_and_idleness(
    nursery: trio.Nursery, gateway_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    async with (
        running_gateway(nursery, gateway_settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        await make_admin(gateway)
        await sign_in(client)
        used_id, raw = gateway.create_key(credit="1", email="busy@example.com")
        idle_id, _ = gateway.create_key(credit="1", email="quiet@example.com")
        await gateway.client(raw).chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        await gateway.wait_usage_rows(1)
        idle = (await client.get("/admin/keys", params={"idle": "7"})).text
        assert f"/admin/keys/{idle_id}" in idle and f"/admin/keys/{used_id}" not in idle
        owned = (await client.get("/admin/keys", params={"owner": "busy@"})).text
        assert f"/admin/keys/{used_id}" in owned and f"/admin/keys/{idle_id}" not in owned
        await gateway.services.accounts.revoke_key(idle_id)
        active = (await client.get("/admin/keys", params={"status": "active"})).text
        assert f"/admin/keys/{idle_id}" not in active and f"/admin/keys/{used_id}" in active
