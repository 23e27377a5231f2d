"""Settings: read once from an optional TOML file and the environment, then frozen.

This is the only module that reads environment variables or the config file.
Precedence: command-line overrides > environment > file > defaults. A bad value
raises `ConfigError` with one line naming the setting.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from .config_identity import IdentitySettings, parse_identity, parse_url
from .config_metrics import MetricsSettings, parse_metrics
from .config_models import AutoSettings, ModelSettings, parse_auto, parse_models
from .config_payments import PaymentSettings, parse_payments
from .config_providers import ProviderSettings, parse_providers
from .config_scale import ScaleSettings, WorkerRole, parse_workers, scale_from
from .config_storage import parse_storage
from .config_values import (
    DEFAULT_TIER,
    TierSettings,
    parse_bool,
    parse_choice,
    parse_decimal,
    parse_int,
    parse_routes,
    parse_seconds,
    parse_tiers,
)
from .errors import ConfigError


@dataclass(frozen=True)
class Settings:
    db_path: Path = Path("tokenroute.db")
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None  # how clients reach the gateway; None: the bound address
    internal_secret: str | None = field(default=None, repr=False)
    max_body_bytes: int = 32 * 1024 * 1024
    max_body_buffer_bytes: int = 256 * 1024 * 1024  # large request bodies buffered at once
    shutdown_grace: float = 300.0
    # Reverse proxies in front that append to X-Forwarded-For (1: Caddy); 0: clients connect.
    proxy_hops: int = 0
    key_cache_seconds: float = 30.0
    markup: Decimal = Decimal(0)
    log_level: str = "info"
    log_format: str = "auto"  # human, json, or auto: json under systemd, human on a terminal
    access_log: bool = False
    providers: tuple[ProviderSettings, ...] = ()
    models: tuple[ModelSettings, ...] = ()
    tiers: tuple[TierSettings, ...] = (DEFAULT_TIER,)
    default_tier: str = "default"
    # Reserved for a request that sets no max_tokens; the upstream limit is set only
    # when the balance cannot pay for this many.
    max_output_tokens: int = 16384
    # A request whose balance cannot pay for its prompt plus this many tokens gets 402.
    min_completion_tokens: int = 16
    # model id -> the models tried next, in order, when it fails before answering
    routes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    keepalive_seconds: float = 15.0  # SSE comments during long upstream silence; 0: none
    cooldown_failures: int = 3  # failures within the window that cool an upstream down
    cooldown_window_seconds: float = 60.0
    cooldown_seconds: float = 30.0
    cooldown_long_seconds: float = 600.0  # the upstream's account is out of credit, or its key
    auto: AutoSettings = field(default_factory=AutoSettings)
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    payments: PaymentSettings = field(default_factory=PaymentSettings)
    usage_days: int = 400  # [retention]: raw usage rows older than this are deleted; 0: never
    retention_interval: float = 3600.0  # seconds between retention passes
    retention_batch: int = 5000  # usage rows deleted per writer transaction
    wal_autocheckpoint: int = 1000  # [database]: pages; 0 leaves checkpoints to Litestream
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    scale: ScaleSettings = field(default_factory=ScaleSettings)
    worker: WorkerRole | None = None  # set by the supervisor for each of its workers
    # where each server setting came from: "[server] port", "TOKENROUTE_PORT", "--port"
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def tier(self, name: str | None) -> TierSettings:
        """The named tier; the default one for a key with none, or with one no longer defined."""
        tiers = self._tiers_by_name
        return tiers.get(name or self.default_tier) or tiers.get(self.default_tier, DEFAULT_TIER)

    @functools.cached_property
    def _tiers_by_name(self) -> dict[str, TierSettings]:
        return {t.name: t for t in self.tiers}

    def provider(self, name: str) -> ProviderSettings | None:
        return next((p for p in self.providers if p.name == name), None)


_SERVER_KEYS = {
    "db": "db_path",
    "host": "host",
    "port": "port",
    "public_url": "public_url",
    "max_body_bytes": "max_body_bytes",
    "max_body_buffer_bytes": "max_body_buffer_bytes",
    "shutdown_grace_seconds": "shutdown_grace",
    "proxy_hops": "proxy_hops",
    "key_cache_seconds": "key_cache_seconds",
    "markup": "markup",
    "log_level": "log_level",
    "log_format": "log_format",
    "access_log": "access_log",
    "internal_secret_env": None,
    "default_tier": "default_tier",
    "max_output_tokens": "max_output_tokens",
    "min_completion_tokens": "min_completion_tokens",
    "keepalive_seconds": "keepalive_seconds",
    "cooldown_failures": "cooldown_failures",
    "cooldown_window_seconds": "cooldown_window_seconds",
    "cooldown_seconds": "cooldown_seconds",
    "cooldown_long_seconds": "cooldown_long_seconds",
}
_ENV_KEYS = {
    "TOKENROUTE_DB": "db_path",
    "TOKENROUTE_HOST": "host",
    "TOKENROUTE_PORT": "port",
    "TOKENROUTE_PUBLIC_URL": "public_url",
    "TOKENROUTE_INTERNAL_SECRET": "internal_secret",
    "TOKENROUTE_MAX_BODY_BYTES": "max_body_bytes",
    "TOKENROUTE_SHUTDOWN_GRACE": "shutdown_grace",
    "TOKENROUTE_PROXY_HOPS": "proxy_hops",
    "TOKENROUTE_LOG_LEVEL": "log_level",
    "TOKENROUTE_LOG_FORMAT": "log_format",
}
_LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "human", "json")


def load_settings(
    environ: Mapping[str, str],
    config_path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the frozen settings; `overrides` are command-line values (None = not given)."""
    path = config_path or environ.get("TOKENROUTE_CONFIG")
    doc = _read_toml(Path(path)) if path else {}
    sections = {"server", "providers", "models", "tiers", "routes", "auto", "auth", "accounts"}
    sections |= {"payments", "retention", "database"}
    sections |= {"payments", "metrics"}
    unknown = set(doc) - sections
    if unknown:
        raise ConfigError(f"config: unknown section {sorted(unknown)[0]!r}")
    server = _table(doc, "server", "config [server]")
    raw: dict[str, tuple[str, Any]] = {}  # field -> (setting name, raw value)
    for key, value in server.items():
        if key == "workers":
            continue  # read by scale_from
        if key not in _SERVER_KEYS:
            raise ConfigError(f"config [server]: unknown setting {key!r}")
        if _SERVER_KEYS[key]:
            raw[_SERVER_KEYS[key]] = (f"[server] {key}", value)
    secret_env = server.get("internal_secret_env")
    if secret_env is not None:
        raw["internal_secret"] = (str(secret_env), environ.get(str(secret_env)))
    for env, name in _ENV_KEYS.items():
        if env in environ:
            raw[name] = (env, environ[env])
    for name, value in (overrides or {}).items():
        if value is not None and name != "workers":
            raw[name] = (f"--{name.replace('_', '-')}", value)
    values = {name: _coerce(name, setting, value) for name, (setting, value) in raw.items()}
    database = _table(doc, "database", "config [database]")
    scale, scale_sources = scale_from(server, database, environ)
    if (overrides or {}).get("workers") is not None:
        scale = replace(scale, workers=parse_workers("--workers", overrides["workers"]))
        scale_sources["workers"] = "--workers"
    storage = parse_storage(_table(doc, "retention", "config [retention]"), database)
    values |= {name: value for name, (_, value) in storage.items()}
    raw |= storage
    tiers = parse_tiers(_table(doc, "tiers", "config [tiers]"))
    default_tier = values.get("default_tier", "default")
    if default_tier not in {t.name for t in tiers}:
        raise ConfigError(f"[server] default_tier: no tier named {default_tier!r}")
    body, buffer = (
        values.get(k, getattr(Settings, k)) for k in ("max_body_bytes", "max_body_buffer_bytes")
    )
    if buffer < body:
        raise ConfigError(
            f"[server] max_body_buffer_bytes: {buffer} is less than max_body_bytes ({body})"
        )
    return Settings(
        **values,
        sources={name: setting for name, (setting, _) in raw.items()} | scale_sources,
        scale=scale,
        providers=parse_providers(environ, _table(doc, "providers", "config [providers]")),
        models=parse_models(_table(doc, "models", "config [models]")),
        tiers=tiers,
        routes=parse_routes(_table(doc, "routes", "config [routes]")),
        auto=parse_auto(_table(doc, "auto", "config [auto]"), Path(path).parent if path else None),
        identity=parse_identity(
            _table(doc, "auth", "config [auth]"), _table(doc, "accounts", "config [accounts]")
        ),
        payments=parse_payments(_table(doc, "payments", "config [payments]"), environ),
        metrics=parse_metrics(_table(doc, "metrics", "config [metrics]")),
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc


def _table(doc: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a table")
    return value


def _coerce(name: str, setting: str, value: Any) -> Any:
    if name == "db_path":
        if not str(value).strip():
            raise ConfigError(f"{setting}: the database path is empty")
        return Path(str(value))
    if name == "port":
        port = parse_int(setting, value)
        if not 0 <= port <= 65535:
            raise ConfigError(f"{setting}: expected a port 0-65535, got {value!r}")
        return port
    if name in ("max_body_bytes", "max_body_buffer_bytes"):
        number = parse_int(setting, value)
        if number < 1024:
            raise ConfigError(f"{setting}: expected at least 1024 bytes, got {value!r}")
        return number
    if name == "proxy_hops":
        hops = parse_int(setting, value)
        if not 0 <= hops <= 8:
            raise ConfigError(f"{setting}: expected 0-8 proxies in front, got {value!r}")
        return hops
    if name in ("max_output_tokens", "min_completion_tokens", "cooldown_failures"):
        number = parse_int(setting, value)
        if number < 1:
            raise ConfigError(f"{setting}: expected a positive number of tokens, got {value!r}")
        return number
    if name == "default_tier":
        return str(value)
    if name in (
        "shutdown_grace",
        "key_cache_seconds",
        "keepalive_seconds",
        "cooldown_window_seconds",
        "cooldown_seconds",
        "cooldown_long_seconds",
    ):
        return parse_seconds(setting, value)
    if name == "markup":
        return parse_decimal(setting, value)
    if name in ("log_level", "log_format"):
        return parse_choice(setting, value, _LOG_LEVELS if name == "log_level" else LOG_FORMATS)
    if name == "access_log":
        return parse_bool(setting, value)
    if name == "host":
        if not str(value).strip():
            raise ConfigError(f"{setting}: the host is empty")
        return str(value)
    if name == "public_url":
        return parse_url(setting, value)
    if name == "internal_secret":
        if value is not None and len(str(value)) < 16:
            raise ConfigError(f"{setting}: the internal secret must be at least 16 characters")
        return None if value is None else str(value)
    raise ConfigError(f"{setting}: unknown setting")
