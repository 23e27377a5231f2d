"""Log lines: one JSON object a line for machines (journald, Loki, jq), words for a terminal.

A record says what happened in its `event` (`request`, `start`, `config`, `upstream`,
`shutdown`, or `log` for a plain message) and carries its data in `fields`, passed as
`extra={"event": ..., "fields": {...}}` (see `event`). The JSON formatter puts the fields
beside the message; the human one appends them as `name=value`. A worker of
`serve --workers N` says which it is on every line (`"worker": i`, or `[worker i]`), so
the interleaved lines of N processes on one stderr can be told apart. Nothing here knows a
secret: callers log key ids, never keys, and no tokens, passwords or provider keys.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import orjson

HUMAN = "%(asctime)s %(levelname)s %(name)s %(message)s"
HUMAN_WORKER = "%(asctime)s %(levelname)s [worker {worker}] %(name)s %(message)s"


def event(name: str, **fields: Any) -> dict[str, Any]:
    """`extra=` for a structured record: `log.info("...", extra=event("start", port=8080))`."""
    return {"event": name, "fields": fields}


def fields_of(record: logging.LogRecord) -> Mapping[str, Any]:
    found = getattr(record, "fields", None)
    return found if isinstance(found, Mapping) else {}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, the worker (in a worker), event, msg,
    then the record's fields."""

    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self._worker = worker

    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        line: dict[str, Any] = {
            "ts": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            **({} if self._worker is None else {"worker": self._worker}),
            "event": getattr(record, "event", None) or "log",
            "msg": record.getMessage(),
        }
        for name, value in fields_of(record).items():
            line.setdefault(name, value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class HumanFormatter(logging.Formatter):
    """The classic line, with a structured record's fields after its message."""

    def __init__(self, worker: int | None = None) -> None:
        super().__init__(HUMAN if worker is None else HUMAN_WORKER.format(worker=worker))

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = fields_of(record)
        if not fields:
            return text
        pairs = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        head, newline, rest = text.partition("\n")  # a traceback stays below the line
        return f"{head} {pairs}{newline}{rest}"
