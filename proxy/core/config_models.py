"""The `[models]` and `[auto]` tables: per-model overrides and auto-routing settings."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from .config_values import parse_bool, parse_decimal, parse_int, parse_seconds
from .errors import ConfigError
from .model import MODEL_KINDS

AUTO_TIERS = ("SIMPLE", "MEDIUM", "COMPLEX", "REASONING")


@dataclass(frozen=True)
class ModelSettings:
    """A model added or changed by the operator (`[models."provider/model"]`)."""

    id: str
    upstream_id: str | None = None
    input_price: Decimal | None = None  # USD per 1M tokens
    output_price: Decimal | None = None
    cache_read_price: Decimal | None = None
    context_length: int | None = None
    markup: Decimal | None = None  # fraction: 0.1 adds 10 %
    hidden: bool = False
    free: bool = False  # served at no charge: the only way a model without prices may serve
    # What tokenroute/auto may use it for; None keeps the built-in knowledge.
    tiers: tuple[str, ...] | None = None
    tools: bool | None = None
    vision: bool | None = None
    kind: str | None = None  # CHAT or EMBEDDING; None: known embedding models by name, else chat


@dataclass(frozen=True)
class AutoSettings:
    """`[auto]`: how tokenroute/auto maps tiers to models and keeps sessions steady."""

    # tier -> the models to use, in order; a tier not named uses the cheapest able ones
    models: dict[str, tuple[str, ...]] = field(default_factory=dict)
    session_seconds: float = 1800.0  # a session stays at or above its last tier this long
    completion_reserve: int = 1024  # tokens of answer a model's window must leave room for
    scoring: Mapping[str, Any] | None = None  # the operator's scoring data; None: built-in
    scoring_source: str = "built-in scoring"


_MODEL_KEYS = {
    "upstream_id",
    "input_price",
    "output_price",
    "cache_read_price",
    "context_length",
    "markup",
    "hidden",
    "free",
    "tiers",
    "tools",
    "vision",
    "kind",
}
_AUTO_KEYS = {"models", "session_seconds", "completion_reserve", "scoring"}


def parse_models(tables: Mapping[str, Any]) -> tuple[ModelSettings, ...]:
    out = []
    for model_id, table in tables.items():
        where = f"config [models.{model_id!r}]"
        provider, _, name = model_id.partition("/")
        if not provider or not name:
            raise ConfigError(f"{where}: a model id is 'provider/model'")
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: expected a table")
        unknown = set(table) - _MODEL_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown setting {sorted(unknown)[0]!r}")
        prices = {
            k: parse_decimal(f"{where} {k}", table[k])
            for k in ("input_price", "output_price", "cache_read_price", "markup")
            if k in table
        }
        flags = {k: parse_bool(f"{where} {k}", table[k]) for k in ("tools", "vision") if k in table}
        context = table.get("context_length")
        tiers = table.get("tiers")
        out.append(
            ModelSettings(
                id=model_id,
                upstream_id=str(table["upstream_id"]) if "upstream_id" in table else None,
                context_length=parse_int(f"{where} context_length", context) if context else None,
                hidden=parse_bool(f"{where} hidden", table.get("hidden", False)),
                free=parse_bool(f"{where} free", table.get("free", False)),
                tiers=None if tiers is None else parse_tier_names(f"{where} tiers", tiers),
                kind=_kind(where, table["kind"]) if "kind" in table else None,
                **prices,
                **flags,
            )
        )
    return tuple(out)


def _kind(where: str, value: Any) -> str:
    if value not in MODEL_KINDS:
        raise ConfigError(f"{where} kind: expected {' or '.join(map(repr, MODEL_KINDS))}")
    return str(value)


def parse_tier_names(setting: str, value: Any) -> tuple[str, ...]:
    names = value if isinstance(value, list) else None
    if names is None or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{setting}: expected a list of tiers ({', '.join(AUTO_TIERS)})")
    upper = tuple(n.upper() for n in names)
    bad = [n for n in upper if n not in AUTO_TIERS]
    if bad:
        raise ConfigError(f"{setting}: {bad[0]!r} is not a tier ({', '.join(AUTO_TIERS)})")
    return upper


def parse_auto(table: Mapping[str, Any], config_dir: Path | None) -> AutoSettings:
    unknown = set(table) - _AUTO_KEYS
    if unknown:
        raise ConfigError(f"config [auto]: unknown setting {sorted(unknown)[0]!r}")
    mapping = table.get("models", {})
    if not isinstance(mapping, dict):
        raise ConfigError("config [auto.models]: expected a table of tier = model or [models]")
    models = {}
    for tier, ids in mapping.items():
        where = f"config [auto.models] {tier}"
        if tier.upper() not in AUTO_TIERS:
            raise ConfigError(f"{where}: not a tier ({', '.join(AUTO_TIERS)})")
        ids = [ids] if isinstance(ids, str) else ids
        if (
            not isinstance(ids, list)
            or not ids
            or not all(isinstance(m, str) and "/" in m for m in ids)
        ):
            raise ConfigError(f"{where}: expected a 'provider/model' id or a list of them")
        models[tier.upper()] = tuple(dict.fromkeys(ids))
    reserve = parse_int("config [auto] completion_reserve", table.get("completion_reserve", 1024))
    if reserve < 1:
        raise ConfigError("config [auto] completion_reserve: expected a positive number of tokens")
    settings = AutoSettings(
        models=models,
        session_seconds=parse_seconds(
            "config [auto] session_seconds", table.get("session_seconds", 1800)
        ),
        completion_reserve=reserve,
    )
    if "scoring" not in table:
        return settings
    path = Path(str(table["scoring"]))
    if not path.is_absolute() and config_dir is not None:
        path = config_dir / path
    try:
        scoring = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"config [auto] scoring: cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config [auto] scoring: {path}: {exc}") from exc
    return AutoSettings(
        models=models,
        session_seconds=settings.session_seconds,
        completion_reserve=reserve,
        scoring=scoring,
        scoring_source=str(path),
    )
