"""What the CLI keeps between runs: `~/.tokenroute/credentials.json` and `last_key.txt`.

Both are readable by their owner only (files 0600, the directory 0700) and written
whole (to a temporary file, then renamed), so a crash never leaves half a token.
`HOME` decides where; nothing else is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

DIRECTORY = ".tokenroute"
CREDENTIALS = "credentials.json"
LAST_KEY = "last_key.txt"


def home() -> Path:
    return Path(os.environ.get("HOME") or Path.home()) / DIRECTORY


def load_credentials() -> dict[str, Any] | None:
    try:
        data = json.loads((home() / CREDENTIALS).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("access_token") else None


def save_credentials(data: dict[str, Any]) -> None:
    _write_private(CREDENTIALS, json.dumps(data, indent=1) + "\n")


def forget_credentials() -> bool:
    """Delete the credentials; whether there were any."""
    try:
        (home() / CREDENTIALS).unlink()
    except FileNotFoundError:
        return False
    return True


def save_last_key(raw: str) -> None:
    _write_private(LAST_KEY, raw + "\n")


def last_key() -> str | None:
    try:
        raw = (home() / LAST_KEY).read_text().strip()
    except OSError:
        return None
    return raw or None


def _write_private(name: str, text: str) -> None:
    folder = home()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    temporary = folder / f".{name}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(temporary, 0o600)
    os.replace(temporary, folder / name)
