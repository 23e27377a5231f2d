"""Server-sent events: an incremental decoder (bytes in, events out) and the encoder.

The decoder follows the WHATWG event-stream rules that matter for LLM APIs:
lines end in LF, CRLF or CR; `data:` lines of one event are joined with LF;
comments (`:`) are ignored; an event is dispatched on a blank line.
"""

from __future__ import annotations

from dataclasses import dataclass

DONE = b"data: [DONE]\n\n"
MAX_LINE = 16 * 1024 * 1024  # bytes: a longer stream line is an error, not a memory hog


@dataclass(slots=True)
class Event:
    data: str
    event: str | None = None
    id: str | None = None


class LineTooLong(ValueError):
    """A stream line over the decoder's cap."""


class Decoder:
    """Feed raw chunks as they arrive; get back the events they complete.

    Work is linear in the bytes fed: a chunk without a line end is only kept, and the
    pieces of a long line are joined once, when it ends. A line longer than `max_line`
    bytes raises `LineTooLong` rather than growing without bound.
    """

    __slots__ = ("_data", "_event", "_id", "_max_line", "_parts", "_pending_cr", "_size")

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._parts: list[bytes] = []  # the line being received, in pieces
        self._size = 0
        self._max_line = max_line
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[Event]:
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._pending_cr = chunk.endswith(b"\r")
        if b"\n" not in chunk and b"\r" not in chunk:
            self._keep(chunk)
            return []
        buffer = b"".join([*self._parts, chunk]) if self._parts else chunk
        self._parts, self._size = [], 0
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buffer.split(b"\n")
        self._keep(lines.pop())
        events: list[Event] = []
        for line in lines:
            if len(line) > self._max_line:
                raise LineTooLong(f"a stream line is over {self._max_line} bytes")
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _keep(self, piece: bytes) -> None:
        if piece:
            self._parts.append(piece)
            self._size += len(piece)
            if self._size > self._max_line:
                raise LineTooLong(f"a stream line is over {self._max_line} bytes")

    def flush(self) -> list[Event]:
        """End of stream: a last event without its blank line still counts."""
        events = []
        if self._parts:
            line = b"".join(self._parts)
            self._parts, self._size = [], 0
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
