"""Claude Code, the real command-line agent, against the gateway: `claude -p "say OK"`.

It speaks only Anthropic's Messages API (`ANTHROPIC_BASE_URL`), sends its own default
model's bare id, a large system prompt with cache_control, two dozen tools, thinking
settings and beta headers, and reads the stream. `.ci/run` installs it from the npm
registry into `.tools/` (see the README).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio

from tests.conftest import ROOT
from tests.messages_helpers import Messages, messages_world

INSTALL = "npm install --prefix .tools @anthropic-ai/claude-code"


def claude_command() -> str:
    local = ROOT / ".tools" / "node_modules" / ".bin" / "claude"
    found = str(local) if local.exists() else shutil.which("claude")
    assert found, f"Claude Code is not installed; run: {INSTALL}"
    return found


@pytest.fixture
async def world(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Messages]:
    async with messages_world(nursery, tmp_path) as world:
        world.anthropic.words = ["OK"]
        world.anthropic.calls_tools = False
        yield world


def claude_env(world: Messages, tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": world.gateway.url,
        "ANTHROPIC_API_KEY": world.raw,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
    }


async def run_claude(world: Messages, tmp_path: Path, *args: str) -> dict[str, Any]:
    """`claude -p ...` against the gateway; its JSON result."""
    with trio.fail_after(90):
        done = await trio.run_process(
            [claude_command(), "-p", *args, "--output-format", "json"],
            env=claude_env(world, tmp_path),
            cwd=tmp_path,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode() + done.stdout.decode()
    return orjson.loads(done.stdout)  # type: ignore[no-any-return]


async def test_claude_code_says_ok_through_the_gateway(world: Messages, tmp_path: Path) -> None:
    answer = await run_claude(world, tmp_path, "say OK")
    assert answer["result"] == "OK" and answer["is_error"] is False
    # Its default model, a bare Claude id, went to the Anthropic upstream as it was named,
    # with Claude Code's own body (tools, thinking, cache_control) and beta headers.
    asked = world.anthropic.requests[-1]
    assert asked["model"].startswith("claude-") and asked["stream"] is True
    assert asked["tools"] and "cache_control" in orjson.dumps(asked["system"]).decode()
    assert "claude-code" in world.anthropic.headers[-1]["anthropic-beta"]
    rows = await world.gateway.wait_usage_rows(1)
    assert all(r["status"] == 200 and r["cost"] > 0 for r in rows)
    assert rows[-1]["served_model"] == f"anthropic/{asked['model']}"
    assert world.balance() == 10 * 10**9 - sum(r["cost"] for r in rows)


async def test_claude_code_calls_the_gateways_mcp_tools(world: Messages, tmp_path: Path) -> None:
    """The model (the fake) asks for the `balance` tool; Claude Code calls it on `/mcp`
    with the key, and sends the tool's result back through `/v1/messages`."""
    world.anthropic.calls_tools, world.anthropic.tool_name = True, "mcp__tokenroute__balance"
    server = {
        "type": "http",
        "url": world.gateway.url + "/mcp",
        "headers": {"Authorization": f"Bearer {world.raw}"},
    }
    config = orjson.dumps({"mcpServers": {"tokenroute": server}}).decode()
    answer = await run_claude(
        world, tmp_path, "What is my balance?", "--strict-mcp-config", "--mcp-config", config,
        "--allowedTools", "mcp__tokenroute__balance",
    )  # fmt: skip
    said = answer["result"].removeprefix("The tool said: ")
    assert said != answer["result"], answer["result"]  # the tool's result came back
    balance = Decimal(orjson.loads(said)["balance_usd"])
    # The key's $10, less the first turn once its debit committed (it may not have yet).
    assert Decimal("9") < balance <= Decimal("10")
    last = world.anthropic.requests[-1]["messages"][-1]["content"]
    assert any(block.get("type") == "tool_result" for block in last)
