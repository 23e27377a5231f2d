"""Parsing one setting's value; each error is one line naming the setting."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import ConfigError


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
