"""GET /v1/models with pricing and context length; /healthz and /readyz."""

from __future__ import annotations

from pathlib import Path

import httpx2 as httpx
import pytest

from proxy.core.config import Settings, load_settings
from tests.conftest import RunningGateway


async def test_models_list_has_pricing_and_context(gateway: RunningGateway) -> None:
    _, raw = gateway.create_key()
    async with httpx.AsyncClient() as client:
        response = await client.get(
            gateway.url + "/v1/models", headers={"authorization": f"Bearer {raw}"}
        )
    body = response.json()
    assert body["object"] == "list"
    by_id = {m["id"]: m for m in body["data"]}
    mini = by_id["openai/gpt-4o-mini"]
    assert mini["object"] == "model" and mini["owned_by"] == "openai"
    assert mini["pricing"]["input"] == "0.15" and mini["pricing"]["output"] == "0.6"
    assert mini["context_length"] == 128000
    served = [m["id"] for m in body["data"] if m["id"] != "tokenroute/auto"]
    assert served and all(m.startswith("openai/") for m in served)  # only enabled providers
    auto = by_id["tokenroute/auto"]  # routes to them by prompt complexity
    assert auto["owned_by"] == "tokenroute" and auto["tiers"]["SIMPLE"]
    assert {m for models in auto["tiers"].values() for m in models} <= set(served)
    # the SDK reads the same list
    models = [m.id async for m in gateway.client(raw).models.list()]
    assert "openai/gpt-4o-mini" in models and "openai/gpt-4o" in models
    one = await gateway.client(raw).models.retrieve("openai/gpt-4o")
    assert one.id == "openai/gpt-4o"


async def test_healthz_and_readyz(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient() as client:
        health = await client.get(gateway.url + "/healthz")
        ready = await client.get(gateway.url + "/readyz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert ready.status_code == 200
    assert ready.json()["database"] == "ok" and ready.json()["providers"] == ["openai"]


class TestNoProvider:
    @pytest.fixture
    def gateway_settings(self, tmp_path: Path) -> Settings:
        return load_settings({}, None, {"db_path": tmp_path / "t.db", "port": 0})

    async def test_readyz_is_503_without_a_provider(self, gateway: RunningGateway) -> None:
        async with httpx.AsyncClient() as client:
            ready = await client.get(gateway.url + "/readyz")
        assert ready.status_code == 503
        assert "no provider" in ready.json()["reason"]
