"""The installed package carries every part the server needs, wherever it is started from."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_the_server_imports_from_any_directory(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import admin.views, proxy.app, cli.main; "
         "from importlib.resources import files; "
         "assert files('admin').joinpath('templates/base.html').is_file(); "
         "assert files('proxy.data').joinpath('llms.txt').is_file(); "
         "assert files('proxy.http').joinpath('templates/device.html').is_file(); "
         "assert files('migrations').joinpath('0007_usage_daily.sql').is_file()"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
