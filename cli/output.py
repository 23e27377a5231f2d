"""Printing results and errors the same way in every command."""

from __future__ import annotations

import json
import sys
from typing import Any

EXIT_OK = 0
EXIT_USER = 1
EXIT_NETWORK = 2
EXIT_SERVER = 3


class UserFacingError(Exception):
    """Reported as one line; exit code 1 (the user's to fix) unless told otherwise."""

    def __init__(self, message: str, code: int = EXIT_USER) -> None:
        super().__init__(message)
        self.code = code


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


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Columns aligned to their widest cell."""
    widths = [
        max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)
    ]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(
            str(cell).ljust(width) for cell, width in zip(line, widths, strict=False)
        ).rstrip()
        for line in lines
    )


def money(usd: str | None) -> str:
    return "-" if usd is None else (f"-${usd[1:]}" if usd.startswith("-") else f"${usd}")


def short_time(iso: str | None) -> str:
    """An ISO 8601 UTC time as local, short: 2026-12-01 14:05."""
    if not iso:
        return "-"
    from datetime import datetime

    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
