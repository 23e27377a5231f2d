"""`tokenroute login` in a real terminal (tmux): the docs' lines, in order."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import trio

from proxy.core.config import Settings
from tests.cli_helpers import TOKENROUTE
from tests.conftest import running_gateway
from tests.fakes.openai_upstream import FakeOpenAI
from tests.test_device_flow import EMAIL, person


def tmux(*args: str) -> str:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed: apt-get install -y tmux")
    done = subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def screen_until(session: str, text: str) -> str:
    with trio.fail_after(20):
        while True:
            shown = await trio.to_thread.run_sync(tmux, "capture-pane", "-p", "-t", session)
            if text in shown:
                return shown
            await trio.sleep(0.2)


async def test_login_in_a_terminal_prints_the_docs_lines(
    nursery: trio.Nursery,
    tmp_path: Path,
    fast_login: Settings,
    fake_openai: FakeOpenAI,
) -> None:
    session = f"tokenroute-login-{tmp_path.name}"
    async with running_gateway(nursery, fast_login) as gateway:
        await person(gateway)
        command = (f"HOME={tmp_path} TOKENROUTE_API_URL={gateway.url} {TOKENROUTE} login "
                   "--no-browser; echo exit=$?; sleep 60")  # fmt: skip
        await trio.to_thread.run_sync(
            tmux, "new-session", "-d", "-s", session, "-x", "120", "-y", "20", command
        )
        try:
            shown = await screen_until(session, "Waiting for authorization...")
            lines = [line for line in shown.splitlines() if line.strip()]
            assert lines[0] == f"Visit: {gateway.url}/device"
            assert lines[1].startswith("And enter code: ") and len(lines[1]) == len(
                "And enter code: XXXX-XXXX"
            )
            await gateway.services.device_flow.approve_as(lines[1].split(": ")[1], EMAIL)
            shown = await screen_until(session, "exit=")
            assert "OK logged in" in shown and "exit=0" in shown
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(tmux, "kill-session", "-t", session)
