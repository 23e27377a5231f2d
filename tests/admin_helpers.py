"""Signing in to the admin pages with an HTTP client, as a browser would."""

from __future__ import annotations

import re

import httpx2 as httpx

from tests.conftest import RunningGateway

ADMIN, PASSWORD = "root@example.com", "operator password 1"


async def make_admin(gateway: RunningGateway, email: str = ADMIN) -> None:
    await gateway.services.accounts.create_user(email, name="Root", admin=True)
    await gateway.services.identity.set_password(email, PASSWORD)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, email: str = ADMIN) -> httpx.Response:
    page = await client.get("/admin/sign-in")
    form = {"csrf_token": csrf_of(page.text), "email": email, "password": PASSWORD}
    return await client.post("/admin/sign-in", data=form)
