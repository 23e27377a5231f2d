"""Running the real `tokenroute` command as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

TOKENROUTE = str(Path(sys.executable).with_name("tokenroute"))


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENROUTE_", "OPENAI_"))}
    return {**env, **extra}


async def run_cli(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return await trio.to_thread.run_sync(
        lambda: subprocess.run(
            [TOKENROUTE, *args],
            capture_output=True,
            text=True,
            env=env or clean_env(),
            timeout=60,
            input=stdin,
        )
    )


async def run_json(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Any:
    done = await run_cli(*args, "--json", env=env, stdin=stdin)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
