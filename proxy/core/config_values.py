"""Parsing settings' values and small tables; each error is one line naming the setting."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True)
class TierSettings:
    """Request limits for a group of keys (`[tiers.NAME]`); a key may override each."""

    name: str
    rps: float = 5.0  # sustained requests per second
    burst: int = 10  # requests allowed at once before the sustained rate applies
    max_streams: int = 32  # concurrent streams per key


DEFAULT_TIER = TierSettings("default")
_TIER_KEYS = {"rps", "burst", "max_streams"}


def parse_int(setting: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{setting}: expected an integer, got {value!r}")
    try:
        return int(str(value).strip())
    except ValueError as exc:
        raise ConfigError(f"{setting}: expected an integer, got {value!r}") from exc


def parse_seconds(setting: str, value: Any) -> float:
    try:
        seconds = float(str(value).strip())
    except ValueError as exc:
        raise ConfigError(f"{setting}: expected a number of seconds, got {value!r}") from exc
    if not 0 <= seconds < 10**7:
        raise ConfigError(f"{setting}: expected a number of seconds >= 0, got {value!r}")
    return seconds


def parse_decimal(setting: str, value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ConfigError(f"{setting}: expected a decimal number, got {value!r}")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise ConfigError(f"{setting}: expected a decimal number, got {value!r}") from exc
    if not number.is_finite() or number < 0:
        raise ConfigError(f"{setting}: expected a number >= 0, got {value!r}")
    return number


def parse_choice(setting: str, value: Any, choices: tuple[str, ...]) -> str:
    """One of `choices`, in any case."""
    chosen = str(value).lower()
    if chosen not in choices:
        raise ConfigError(f"{setting}: expected one of {', '.join(choices)}, got {value!r}")
    return chosen


def parse_bool(setting: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{setting}: expected true or false, got {value!r}")


def parse_rate(setting: str, value: Any) -> float:
    try:
        rate = float(str(value).strip())
    except ValueError as exc:
        raise ConfigError(f"{setting}: expected requests per second, got {value!r}") from exc
    if not 0 < rate < 10**6:
        raise ConfigError(f"{setting}: expected requests per second > 0, got {value!r}")
    return rate


def parse_tiers(tables: Mapping[str, Any]) -> tuple[TierSettings, ...]:
    found = {DEFAULT_TIER.name: DEFAULT_TIER}
    for name, table in tables.items():
        where = f"config [tiers.{name}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: expected a table")
        unknown = set(table) - _TIER_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown setting {sorted(unknown)[0]!r}")
        base = found.get(name, DEFAULT_TIER)
        rps = parse_rate(f"{where} rps", table.get("rps", base.rps))
        burst = parse_int(f"{where} burst", table.get("burst", base.burst))
        streams = parse_int(f"{where} max_streams", table.get("max_streams", base.max_streams))
        if burst < 1 or streams < 0:
            raise ConfigError(f"{where}: burst must be at least 1 and max_streams at least 0")
        found[name] = TierSettings(name, rps, burst, streams)
    return tuple(found.values())


def parse_routes(tables: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    routes = {}
    for model_id, fallbacks in tables.items():
        where = f"config [routes] {model_id!r}"
        if "/" not in model_id:
            raise ConfigError(f"{where}: a model id is 'provider/model'")
        if not isinstance(fallbacks, list) or not all(
            isinstance(m, str) and "/" in m for m in fallbacks
        ):
            raise ConfigError(f"{where}: expected a list of 'provider/model' ids")
        routes[model_id] = tuple(dict.fromkeys(m for m in fallbacks if m != model_id))
    return routes
