"""Past one process: how many workers, which shared store, how leases and owners behave.

`[server] workers` (`TOKENROUTE_WORKERS`, `--workers`) is the number of gateway processes
`tokenroute serve` runs on this machine (0: one per CPU core). `TOKENROUTE_DATABASE_URL`
(or `[database] url`) switches the store to PostgreSQL and wins over the SQLite path;
`TOKENROUTE_REDIS_URL` (or `[database] redis_url`) moves limits, stream counts and
cooldowns to Redis. `WorkerRole` is not a setting: the supervisor hands it to each worker.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config_values import parse_int, parse_seconds
from .errors import ConfigError

MAX_WORKERS = 64


@dataclass(frozen=True)
class ScaleSettings:
    workers: int = 0  # gateway processes on this machine; 0: one per CPU core
    database_url: str | None = None  # postgresql://...: the store is PostgreSQL
    redis_url: str | None = None  # redis://...: limits, stream counts, cooldowns in Redis
    # A process whose heartbeat is older than this is dead: its leases go back to the keys.
    reclaim_after: float = 15.0
    lease_idle: float = 30.0  # seconds a lease may sit unused before it is returned

    @property
    def heartbeat(self) -> float:
        """How often a process proves it is alive: well inside `reclaim_after`."""
        return self.reclaim_after / 5

    def worker_count(self) -> int:
        return self.workers or min(MAX_WORKERS, os.cpu_count() or 1)


@dataclass(frozen=True)
class WorkerRole:
    """What the supervisor tells worker `index` of `count` (not read from any setting)."""

    index: int
    count: int
    shared_state: Path  # the table of limits, stream counts and cooldowns on this machine
    listen_fd: int | None = None  # the supervisor's listening socket, when it shares one
    metrics_fd: int | None = None  # the supervisor's `[metrics] listen` socket, when set

    @property
    def run_dir(self) -> Path:
        """The supervisor's private directory: the shared table and the metrics sockets."""
        return self.shared_state.parent

    def metrics_socket(self, index: int) -> Path:
        """Where worker `index` answers its own counters to its siblings (`/metrics`)."""
        return self.run_dir / f"metrics-{index}.sock"


def parse_workers(setting: str, value: Any) -> int:
    number = parse_int(setting, value)
    if not 0 <= number <= MAX_WORKERS:
        raise ConfigError(
            f"{setting}: expected 0 (one per CPU core) to {MAX_WORKERS}, got {value!r}"
        )
    return number


def parse_database_url(setting: str, value: Any) -> str | None:
    text = str(value).strip()
    if not text:
        return None
    if not text.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"{setting}: expected a postgresql:// URL, got {redacted_url(text)!r}")
    return text


def parse_redis_url(setting: str, value: Any) -> str | None:
    text = str(value).strip()
    if not text:
        return None
    if not text.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"{setting}: expected a redis:// URL, got {redacted_url(text)!r}")
    return text


def parse_reclaim_after(setting: str, value: Any) -> float:
    seconds = parse_seconds(setting, value)
    if not 1.0 <= seconds <= 3600.0:
        raise ConfigError(f"{setting}: expected 1 to 3600 seconds, got {value!r}")
    return seconds


def scale_from(
    server: Mapping[str, Any], database: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[ScaleSettings, dict[str, str]]:
    """The scale settings and where each came from (file < environment)."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    given = [
        ("workers", "[server] workers", server.get("workers"), parse_workers),
        ("database_url", "[database] url", database.get("url"), parse_database_url),
        ("redis_url", "[database] redis_url", database.get("redis_url"), parse_redis_url),
        ("reclaim_after", "[database] reclaim_after_seconds",
         database.get("reclaim_after_seconds"), parse_reclaim_after),
        ("workers", "TOKENROUTE_WORKERS", environ.get("TOKENROUTE_WORKERS"), parse_workers),
        ("database_url", "TOKENROUTE_DATABASE_URL", environ.get("TOKENROUTE_DATABASE_URL"),
         parse_database_url),
        ("redis_url", "TOKENROUTE_REDIS_URL", environ.get("TOKENROUTE_REDIS_URL"),
         parse_redis_url),
    ]  # fmt: skip
    for name, setting, value, parse in given:
        if value is not None:
            values[name] = parse(setting, value)
            sources[name] = setting
    return ScaleSettings(**values), sources


def redacted_url(url: str) -> str:
    """A URL without its password, fit for an error or a log line."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url
