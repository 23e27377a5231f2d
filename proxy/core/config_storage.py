"""`[retention]` and `[database]`: how long raw usage rows live, and who checkpoints the WAL.

They become plain fields of `Settings` (so the settings page lists each with its source);
this module only reads and checks the two tables, one line per bad value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .config_values import parse_int, parse_seconds
from .errors import ConfigError

SCALE_KEYS = ("url", "redis_url", "reclaim_after_seconds")
# setting in the file -> (Settings field, smallest allowed, largest allowed)
_RETENTION = {
    "usage_days": ("usage_days", 0, 100 * 366),  # 0: keep raw usage rows forever
    "batch_rows": ("retention_batch", 100, 100_000),  # rows deleted per writer transaction
}
_DATABASE = {
    # SQLite's default is 1000 pages; 0 leaves checkpoints to Litestream (ops/README.md)
    "wal_autocheckpoint": ("wal_autocheckpoint", 0, 1_000_000),
}


def parse_storage(
    retention: Mapping[str, Any], database: Mapping[str, Any]
) -> dict[str, tuple[str, Any]]:
    """Settings field -> (where it was set, its value), for the keys the tables give."""
    found: dict[str, tuple[str, Any]] = {}
    for section, table, known in (("retention", retention, _RETENTION),
                                  ("database", database, _DATABASE)):  # fmt: skip
        for key, value in table.items():
            setting = f"[{section}] {key}"
            if key == "interval_seconds" and section == "retention":
                seconds = parse_seconds(setting, value)
                if seconds < 0.1:
                    raise ConfigError(f"{setting}: expected at least 0.1 seconds, got {value!r}")
                found["retention_interval"] = (setting, seconds)
                continue
            if section == "database" and key in SCALE_KEYS:
                continue  # read by config_scale
            if key not in known:
                raise ConfigError(f"config [{section}]: unknown setting {key!r}")
            name, low, high = known[key]
            number = parse_int(setting, value)
            if not low <= number <= high:
                raise ConfigError(f"{setting}: expected {low} to {high}, got {value!r}")
            found[name] = (setting, number)
    return found
