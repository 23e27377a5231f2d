"""Long upstream silence mid-stream: SSE comments keep the client's connection alive."""

from __future__ import annotations

from pathlib import Path

import httpx2 as httpx
import trio

from proxy.core.config import load_settings
from tests.conftest import running_gateway
from tests.fakes.openai_upstream import FakeOpenAI


async def test_silence_is_filled_with_keepalive_comments(
    nursery: trio.Nursery, tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    config = tmp_path / "tokenroute.toml"
    config.write_text("[server]\nkeepalive_seconds = 0.2\n")
    env = {"OPENAI_API_KEY": "sk-up", "OPENAI_BASE_URL": fake_openai.url + "/v1"}
    settings = load_settings(env, config, {"db_path": tmp_path / "gw.db", "port": 0})
    fake_openai.chunk_delay = 0.7  # a model thinking between tokens
    fake_openai.words = ["a", "b"]
    async with running_gateway(nursery, settings) as gateway:
        _, raw = gateway.create_key()
        lines: list[str] = []
        async with (
            httpx.AsyncClient(timeout=10) as client,
            client.stream(
                "POST",
                gateway.url + "/v1/chat/completions",
                headers={"authorization": f"Bearer {raw}"},
                json={
                    "model": "openai/gpt-4o-mini",
                    "messages": [{"role": "user", "content": "x"}],
                    "stream": True,
                },
            ) as response,
        ):
            async for line in response.aiter_lines():
                if line:
                    lines.append(line)
    comments = [i for i, line in enumerate(lines) if line.startswith(":")]
    data = [i for i, line in enumerate(lines) if line.startswith("data:")]
    assert len(comments) >= 4  # ~3 per 0.7 s gap, two gaps
    assert lines[-1] == "data: [DONE]" and len(data) >= 4
    # comments sit between events, never inside one
    assert all(lines[i] == ": keep-alive" for i in comments)
