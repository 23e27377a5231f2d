"""Server-sent events: an incremental decoder (bytes in, events out) and the encoder.

The decoder follows the WHATWG event-stream rules that matter for LLM APIs:
lines end in LF, CRLF or CR; `data:` lines of one event are joined with LF;
comments (`:`) are ignored; an event is dispatched on a blank line.
"""

from __future__ import annotations

from dataclasses import dataclass

DONE = b"data: [DONE]\n\n"


@dataclass(slots=True)
class Event:
    data: str
    event: str | None = None
    id: str | None = None


class Decoder:
    """Feed raw chunks as they arrive; get back the events they complete."""

    __slots__ = ("_buffer", "_data", "_event", "_id", "_pending_cr")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[Event]:
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._pending_cr = chunk.endswith(b"\r")
        buffer = self._buffer + chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buffer.split(b"\n")
        self._buffer = lines.pop()
        events: list[Event] = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def flush(self) -> list[Event]:
        """End of stream: a last event without its blank line still counts."""
        events = []
        if self._buffer:
            line, self._buffer = self._buffer, b""
            event = self._line(line)
            if event is not None:
                events.append(event)
        event = self._line(b"")
        if event is not None:
            events.append(event)
        return events

    def _line(self, line: bytes) -> Event | None:
        if not line:
            if not self._data and self._event is None:
                return None
            event = Event("\n".join(self._data), self._event, self._id)
            self._data, self._event = [], None
            return event
        if line.startswith(b":"):
            return None
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        text = value.decode("utf-8", errors="replace")
        if name == b"data":
            self._data.append(text)
        elif name == b"event":
            self._event = text
        elif name == b"id":
            self._id = text
        return None


def encode_data(payload: bytes) -> bytes:
    """One `data:` event around a JSON payload (JSON has no raw newlines)."""
    return b"data: " + payload + b"\n\n"


def encode_comment(text: str = "") -> bytes:
    return b": " + text.encode() + b"\n\n"
