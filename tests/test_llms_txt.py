"""`/llms.txt` and `/llms-full.txt` are what `ops/llms.py` makes of the CLI and the routes
today (so they cannot drift), served with the gateway's own URL."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import httpx2 as httpx
import trio

from proxy.core.config import Settings
from tests.conftest import running_gateway
from tests.fakes.openai_upstream import FakeOpenAI

ROOT = Path(__file__).resolve().parent.parent


def generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("llms", ROOT / "ops" / "llms.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_files_match_the_cli_and_the_routes() -> None:
    short, full = await trio.to_thread.run_sync(generator().render)
    data = ROOT / "proxy" / "data"
    stale = "stale: run `.venv/bin/python ops/llms.py`"
    assert (data / "llms.txt").read_text() == short, stale
    assert (data / "llms-full.txt").read_text() == full, stale
    for command in ("login", "keys create", "env", "test", "topup", "usage", "whoami"):
        assert f"### tokenroute {command}\n" in full
    assert "POST   /v1/chat/completions (Bearer)" in full
    assert "{base_url}/mcp" in short and "- keys_create: " in full


async def test_served_with_the_gateways_url(
    nursery: trio.Nursery, gateway_settings: Settings, fake_openai: FakeOpenAI
) -> None:
    async with (
        running_gateway(nursery, gateway_settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        short = await client.get("/llms.txt")
        assert short.status_code == 200 and short.headers["content-type"].startswith("text/plain")
        assert f"{gateway.url}/v1" in short.text and "{base_url}" not in short.text
        full = await client.get("/llms-full.txt")
        assert "## Exit codes" in full.text and f"{gateway.url}/openapi.json" in full.text
