"""DeepSeek stays on the OpenAI-compatible path; its reasoning deltas reach the client."""

from __future__ import annotations

from pathlib import Path

import trio

from proxy.core.config import load_settings
from tests.conftest import running_gateway
from tests.fakes.openai_upstream import FakeOpenAI


async def test_reasoning_content_passes_through_and_is_billed(
    nursery: trio.Nursery, tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    env = {"DEEPSEEK_API_KEY": "sk-ds", "DEEPSEEK_BASE_URL": fake_openai.url + "/v1"}
    settings = load_settings(env, None, {"db_path": tmp_path / "gw.db", "port": 0})
    fake_openai.reasoning = ["Let me think.", " Two plus two is four."]
    fake_openai.send_usage = False  # billed from what was relayed
    async with running_gateway(nursery, settings) as gateway:
        _, raw = gateway.create_key()
        stream = await gateway.client(raw).chat.completions.create(
            model="deepseek/deepseek-reasoner",
            messages=[{"role": "user", "content": "2+2?"}],
            stream=True,
        )
        thoughts, text = [], []
        async for chunk in stream:
            assert chunk.model == "deepseek/deepseek-reasoner"
            if chunk.choices:
                delta = chunk.choices[0].delta
                thoughts.append((delta.model_extra or {}).get("reasoning_content") or "")
                text.append(delta.content or "")
        assert "".join(thoughts) == "Let me think. Two plus two is four."
        assert "".join(text) == "".join(fake_openai.words)
        assert fake_openai.requests[0]["model"] == "deepseek-reasoner"
        [row] = await gateway.wait_usage_rows(1)
    assert row["estimated"] == 1 and row["tokens_out"] >= 12  # reasoning counts as output
