"""A gateway with fake Anthropic, OpenAI and Gemini upstreams, for the Messages API tests."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import trio

from proxy.core.config import load_settings
from tests.conftest import INTERNAL_SECRET, RunningGateway, running_gateway
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.openai_upstream import FakeOpenAI

CONFIG = """
[providers.anthropic]
first_byte_timeout = 2
idle_timeout = 2

[routes]
"anthropic/claude-sonnet-4-5" = ["openai/gpt-4o"]
"""
# A 1x1 PNG and a tiny PDF, as the SDK sends media: base64 in the body.
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
        "0000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
    )
).decode()
PDF = base64.b64encode(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n").decode()
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@dataclass
class Messages:
    gateway: RunningGateway
    anthropic: FakeAnthropic
    openai: FakeOpenAI
    gemini: FakeGemini
    key_id: str
    raw: str

    def client(self, raw: str | None = None, **kwargs: Any) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            base_url=self.gateway.url, api_key=raw or self.raw, max_retries=0, **kwargs
        )

    def sync_client(self, raw: str | None = None) -> anthropic.Anthropic:
        """For a worker thread: the gateway runs on this test's event loop."""
        return anthropic.Anthropic(
            base_url=self.gateway.url, api_key=raw or self.raw, max_retries=0
        )

    def balance(self, key_id: str | None = None) -> int:
        conn = self.gateway.db()
        try:
            row = conn.execute(
                "SELECT balance FROM api_keys WHERE id = ?", (key_id or self.key_id,)
            ).fetchone()
        finally:
            conn.close()
        return int(row[0])


@asynccontextmanager
async def messages_world(
    nursery: trio.Nursery, tmp_path: Path, config: str = CONFIG
) -> AsyncIterator[Messages]:
    fake_anthropic = await nursery.start(FakeAnthropic(api_key="sk-ant-test").run)
    fake_openai = await nursery.start(FakeOpenAI().run)
    fake_gemini = await nursery.start(FakeGemini().run)
    path = tmp_path / "tokenroute.toml"
    path.write_text(config)
    env = {
        "ANTHROPIC_API_KEY": "sk-ant-test",
        "ANTHROPIC_BASE_URL": fake_anthropic.url,
        "OPENAI_API_KEY": "sk-oa-test",
        "OPENAI_BASE_URL": fake_openai.url + "/v1",
        "GEMINI_API_KEY": "gm-test",
        "GEMINI_BASE_URL": fake_gemini.url,
        "TOKENROUTE_INTERNAL_SECRET": INTERNAL_SECRET,
    }
    settings = load_settings(env, path, {"db_path": tmp_path / "gw.db", "port": 0})
    async with running_gateway(nursery, settings) as gateway:
        key_id, raw = gateway.create_key()
        yield Messages(gateway, fake_anthropic, fake_openai, fake_gemini, key_id, raw)
    for fake in (fake_anthropic, fake_openai, fake_gemini):
        fake.stop()
