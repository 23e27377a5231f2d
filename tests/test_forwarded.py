"""Behind a reverse proxy (`proxy_hops`), the client is the address the proxy saw, not the
proxy: throttles and the audit log see people, and a client cannot pick its own address."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import trio

from proxy.core.config import Settings, load_settings
from proxy.core.errors import ConfigError
from proxy.http.forwarded import Forwarded
from tests.conftest import OPERATOR, running_gateway


async def seen(hops: int, scope: dict[str, Any]) -> dict[str, Any]:
    got: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        got.update(scope)

    await Forwarded(app, hops)(scope, None, None)
    return got


def http(*headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {"type": "http", "scheme": "http", "client": ("127.0.0.1", 5555),
            "headers": [(b"host", b"api.example.com"), *headers]}  # fmt: skip


async def test_the_nearest_proxys_entry_is_the_client() -> None:
    spoofed = http((b"x-forwarded-for", b"6.6.6.6, 203.0.113.9"), (b"x-forwarded-proto", b"https"))
    one = await seen(1, spoofed)
    assert one["client"] == ("203.0.113.9", 0) and one["scheme"] == "https"
    assert spoofed["client"] == ("127.0.0.1", 5555)  # the server's scope is not changed
    assert (await seen(2, spoofed))["client"] == ("6.6.6.6", 0)
    split = http((b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"203.0.113.9"))
    assert (await seen(1, split))["client"] == ("203.0.113.9", 0)
    too_few = await seen(2, http((b"x-forwarded-for", b"203.0.113.9")))
    assert too_few["client"] == ("127.0.0.1", 5555)
    assert (await seen(1, http((b"x-forwarded-proto", b"gopher"))))["scheme"] == "http"
    lifespan = {"type": "lifespan"}
    assert await seen(1, lifespan) == lifespan


def test_the_setting_is_a_small_count() -> None:
    assert load_settings({"TOKENROUTE_PROXY_HOPS": "1"}).proxy_hops == 1
    assert load_settings({}).proxy_hops == 0
    for bad in ("-1", "9", "caddy"):
        with pytest.raises(ConfigError, match="TOKENROUTE_PROXY_HOPS"):
            load_settings({"TOKENROUTE_PROXY_HOPS": bad})


@pytest.mark.parametrize(("hops", "address"), [(1, "203.0.113.9"), (0, "127.0.0.1")])
async def test_the_audit_log_names_the_client_behind_the_proxy(
    nursery: trio.Nursery, tmp_path: Path, gateway_env: dict[str, str], hops: int, address: str
) -> None:
    settings = load_settings(
        {**gateway_env, "TOKENROUTE_INTERNAL_SECRET": OPERATOR["x-internal-secret"],
         "TOKENROUTE_PROXY_HOPS": str(hops)},
        None, {"db_path": tmp_path / "gw.db", "port": 0},
    )  # fmt: skip
    async with (
        running_gateway(nursery, settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url + "/api/v1/admin") as admin,
    ):
        forwarded = {**OPERATOR, "x-forwarded-for": "6.6.6.6, 203.0.113.9"}
        made = await admin.post("/users", json={"email": "p@example.com"}, headers=forwarded)
        assert made.status_code == 201, made.text
        audit = (await admin.get("/audit", headers=OPERATOR)).json()
    assert [row["address"] for row in audit] == [address]


def test_settings_default_to_clients_connecting() -> None:
    assert Settings().proxy_hops == 0
