"""Printing results and errors the same way in every command."""

from __future__ import annotations

import json
import sys
from typing import Any

EXIT_OK = 0
EXIT_USER = 1
EXIT_NETWORK = 2
EXIT_SERVER = 3


def emit(data: Any, as_json: bool, human: str) -> None:
    if as_json:
        print(json.dumps(data, indent=None, separators=(",", ":")))
    else:
        print(human)


def fail(message: str, code: int, as_json: bool) -> int:
    """One line on stderr (and a JSON error on stdout for --json); returns the exit code."""
    if as_json:
        print(json.dumps({"error": {"message": message, "exit_code": code}}))
    print(f"tokenroute: error: {message}", file=sys.stderr)
    return code
