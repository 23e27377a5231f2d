"""What the supervisor and a worker process say to each other over the worker's stdin and
stdout (`cli/supervisor.py`, `cli/worker.py`); kept apart so that the supervisor does
not import the server.

Down: the Settings, pickled, after their length (8 bytes, big-endian); the pipe then
stays open, and its end tells the worker that the supervisor died. Up: one JSON line,
`{"ready": pid}` once serving, or `{"error": ..., "code": ...}` with the one line that
stopped the start.
"""

from __future__ import annotations

import pickle
from typing import IO, Any, BinaryIO

import orjson

from proxy.core.config import Settings


def encode_settings(settings: Settings) -> bytes:
    body = pickle.dumps(settings, protocol=pickle.HIGHEST_PROTOCOL)
    return len(body).to_bytes(8, "big") + body


def decode_settings(stream: BinaryIO) -> Settings:
    size = int.from_bytes(_read_exactly(stream, 8), "big")
    return pickle.loads(_read_exactly(stream, size))  # type: ignore[no-any-return]


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            raise SystemExit(
                "tokenroute worker: no settings on stdin (the supervisor starts workers)"
            )
        data += chunk
    return data


def parse_status(line: bytes) -> dict[str, Any]:
    """The worker's status line as the supervisor reads it (an unreadable line: {})."""
    try:
        status = orjson.loads(line)
    except orjson.JSONDecodeError:
        return {}
    return status if isinstance(status, dict) else {}


class Status:
    """The one line this worker owes its supervisor."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self._pipe: IO[bytes] | None = pipe

    def send(self, **status: Any) -> None:
        if self._pipe is None:
            return
        try:
            self._pipe.write(orjson.dumps(status) + b"\n")
            self._pipe.close()
        except OSError:
            pass  # the supervisor is gone; stdin's end tells us so
        self._pipe = None

    @property
    def sent(self) -> bool:
        return self._pipe is None
