"""`[providers.NAME]` and the providers the usual environment variables turn on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .config_values import parse_int, parse_seconds
from .errors import ConfigError

# Providers enabled by the env vars users already have.
BUILTIN_PROVIDERS: dict[str, tuple[str, tuple[str, ...], str, str]] = {
    # name: (kind, key envs (first set wins), base-url env, default base url)
    "openai": (
        "openai-compatible",
        ("OPENAI_API_KEY",),
        "OPENAI_BASE_URL",
        "https://api.openai.com/v1",
    ),
    "anthropic": (
        "anthropic",
        ("ANTHROPIC_API_KEY",),
        "ANTHROPIC_BASE_URL",
        "https://api.anthropic.com",
    ),
    "google": (
        "google",
        ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
        "GEMINI_BASE_URL",
        "https://generativelanguage.googleapis.com",
    ),
    "deepseek": (
        "openai-compatible",
        ("DEEPSEEK_API_KEY",),
        "DEEPSEEK_BASE_URL",
        "https://api.deepseek.com/v1",
    ),
    "mistral": (
        "mistral",
        ("MISTRAL_API_KEY",),
        "MISTRAL_BASE_URL",
        "https://api.mistral.ai/v1",
    ),
}
# "mistral" chats as "openai-compatible" does; its embeddings take Mistral's own fields.
PROVIDER_KINDS = ("openai-compatible", "anthropic", "google", "mistral")


@dataclass(frozen=True)
class ProviderSettings:
    name: str
    kind: str
    base_url: str
    api_key: str | None = field(default=None, repr=False)  # a secret: never logged
    models: tuple[str, ...] = ()  # extra upstream model ids to list in the catalog
    connect_timeout: float = 10.0
    first_byte_timeout: float = 600.0  # reasoning models think for minutes
    idle_timeout: float = 300.0  # longest silence between two chunks of a stream
    max_connections: int = 16384  # upstream connections; LLM streams hold one each
    pool_shards: int = 0  # 0: one small pool per 64 connections


_PROVIDER_KEYS = {
    "kind",
    "base_url",
    "api_key_env",
    "models",
    "connect_timeout",
    "first_byte_timeout",
    "idle_timeout",
    "max_connections",
    "pool_shards",
    "enabled",
}


def parse_providers(
    environ: Mapping[str, str], tables: Mapping[str, Any]
) -> tuple[ProviderSettings, ...]:
    found: dict[str, ProviderSettings] = {}
    for name, (kind, key_envs, url_env, default_url) in BUILTIN_PROVIDERS.items():
        table = tables.get(name, {})
        envs = (table["api_key_env"],) if "api_key_env" in table else key_envs
        key = next((environ[e] for e in map(str, envs) if environ.get(e)), None)
        if key and table.get("enabled", True) is not False:
            url = table.get("base_url") or environ.get(url_env) or default_url
            found[name] = _provider(name, {**table, "kind": kind}, key, url)
    for name, table in tables.items():
        if name in BUILTIN_PROVIDERS:
            continue
        where = f"config [providers.{name}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: expected a table")
        if "/" in name or not name.strip():
            raise ConfigError(f"{where}: a provider name cannot be empty or contain '/'")
        if table.get("enabled", True) is False:
            continue
        if "base_url" not in table:
            raise ConfigError(f"{where}: base_url is required")
        key_env = table.get("api_key_env")
        key = environ.get(str(key_env)) if key_env else None
        if key_env and not key:
            raise ConfigError(f"{where}: api_key_env names {key_env!r}, which is not set")
        found[name] = _provider(name, table, key, str(table["base_url"]))
    return tuple(found.values())


def _provider(name: str, table: Mapping[str, Any], key: str | None, url: str) -> ProviderSettings:
    where = f"config [providers.{name}]"
    unknown = set(table) - _PROVIDER_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown setting {sorted(unknown)[0]!r}")
    kind = table.get("kind", "openai-compatible")
    if kind not in PROVIDER_KINDS:
        raise ConfigError(
            f"{where} kind: expected one of {', '.join(PROVIDER_KINDS)}, got {kind!r}"
        )
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where} base_url: expected an http(s) URL, got {url!r}")
    models = table.get("models", [])
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        raise ConfigError(f"{where} models: expected a list of model ids")
    limits = {
        k: parse_int(f"{where} {k}", table[k])
        for k in ("max_connections", "pool_shards")
        if k in table
    }
    if limits.get("max_connections", 1) < 1 or limits.get("pool_shards", 0) < 0:
        raise ConfigError(f"{where}: max_connections must be at least 1, pool_shards at least 0")
    timeouts = {
        k: parse_seconds(f"{where} {k}", table[k])
        for k in ("connect_timeout", "first_byte_timeout", "idle_timeout")
        if k in table
    }
    return ProviderSettings(
        name=name,
        kind=kind,
        base_url=url.rstrip("/"),
        api_key=key,
        models=tuple(models),
        **limits,
        **timeouts,
    )
