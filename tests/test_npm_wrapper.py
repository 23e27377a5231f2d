"""`npx tokenroute`: the Node wrapper runs the Python CLI, passing stdout and exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli_helpers import TOKENROUTE

ROOT = Path(__file__).resolve().parent.parent
WRAPPER = ROOT / "cli" / "npm" / "bin" / "tokenroute.js"


def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.fail("Node.js is not installed: apt-get install -y nodejs")
    return found


def run(path: str, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": path, "HOME": str(home)}
    return subprocess.run([node(), str(WRAPPER), *args], capture_output=True, text=True,
                          env=env, timeout=60)  # fmt: skip


def test_the_wrapper_passes_output_and_exit_codes_through(tmp_path: Path) -> None:
    python_bin = str(Path(TOKENROUTE).parent)
    path = os.pathsep.join([python_bin, "/usr/bin", "/bin"])
    version = run(path, "--version", home=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("tokenroute ")
    no_key = run(path, "env", "--json", home=tmp_path)
    assert no_key.returncode == 1
    assert json.loads(no_key.stdout)["error"]["exit_code"] == 1  # stdout passed through
    assert "keys create" in no_key.stderr
    unreachable = run(path, "balance", "--api-url", "http://127.0.0.1:9", home=tmp_path)
    assert unreachable.returncode == 1  # not logged in: a user error before any network


def test_without_the_cli_it_says_how_to_install_and_never_loops(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "tokenroute").symlink_to(WRAPPER)  # npx puts the wrapper itself on PATH
    path = os.pathsep.join([str(bin_dir), str(Path(node()).parent)])
    done = run(path, "--version", home=tmp_path)
    assert done.returncode == 1 and "pipx install tokenroute" in done.stderr
