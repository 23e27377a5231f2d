"""The model catalog: `provider/model` ids, prices and context lengths.

Prices come from the `genai-prices` package, resolved once when the catalog is
built; the operator's config can add models, override a price or context length,
add a markup, or hide a model. Prices are held as integer pico-USD per token with
the markup already applied, so costing a request is integer arithmetic.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from typing import Any

from genai_prices import data_snapshot
from genai_prices.types import ModelInfo, ModelPrice, TieredPrices

from ..core.config import ModelSettings, ProviderSettings, Settings
from ..core.errors import ConfigError
from ..core.model import CHAT, EMBEDDING, Model, Price, Rates
from ..core.money import rate_from_usd_per_mtok

# The common models listed for each built-in provider when its key is set.
BUILTIN_MODELS: dict[str, tuple[str, ...]] = {
    "openai": (
        "gpt-4o-mini",
        "gpt-4o",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "gpt-5",
        "gpt-5-mini",
        "gpt-5-nano",
        "o3",
        "o4-mini",
    ),
    "anthropic": (
        "claude-haiku-4-5",
        "claude-sonnet-4-5",
        "claude-sonnet-4-6",
        "claude-opus-4-5",
        "claude-opus-4-8",
        "claude-sonnet-5",
        "claude-haiku-5-5",
        "claude-opus-4-1",
        "claude-3-5-haiku-latest",
    ),
    "google": ("gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-2.5-pro"),
    "deepseek": ("deepseek-chat", "deepseek-reasoner"),
    "mistral": (
        "mistral-large-2512",
        "mistral-medium-latest",
        "mistral-small-latest",
        "codestral-latest",
    ),
}
# Context windows genai-prices does not carry.
CONTEXT_FALLBACK: dict[str, int] = {
    "gemini-2.5-pro": 1048576,
    "mistral-medium-latest": 131072,
    "mistral-small-latest": 131072,
}

# -- embedding models ------------------------------------------------------------------------
# Listed for each built-in provider beside its chat models; billed by their input alone.
EMBEDDING_MODELS: dict[str, tuple[str, ...]] = {
    "openai": ("text-embedding-3-small", "text-embedding-3-large"),
    "mistral": ("mistral-embed", "codestral-embed"),
    "google": ("gemini-embedding-001",),
}
# Input windows (per input) genai-prices does not carry.
EMBEDDING_CONTEXT: dict[str, int] = {"gemini-embedding-001": 2048}
KNOWN_EMBEDDINGS = frozenset(name for names in EMBEDDING_MODELS.values() for name in names)


def model_kind(name: str, upstream_id: str, override: ModelSettings | None) -> str:
    """The operator's `kind`, else embedding for the embedding models known by name."""
    if override and override.kind:
        return override.kind
    return EMBEDDING if KNOWN_EMBEDDINGS & {name, upstream_id} else CHAT


def embedding_price(price: Price) -> Price:
    """An embedding model bills input only: any output or cache price a table lists is moot."""

    def strip(rates: Rates) -> Rates:
        return Rates(input=rates.input)

    return Price(strip(price.base), tuple((start, strip(r)) for start, r in price.tiers))


# -- the catalog -----------------------------------------------------------------------------


ANTHROPIC_PREFIX = "claude-"  # a bare id like this means the Anthropic provider's model
MAX_RESOLVED = 512  # Anthropic ids met on requests and kept (dated ids, new models)


class Catalog:
    def __init__(
        self, models: Iterable[Model], resolve: Callable[[str], Model | None] | None = None
    ) -> None:
        self._models = {m.id: m for m in models}
        self._resolve = resolve
        self._resolved: dict[str, Model | None] = {}

    def get(self, model_id: str) -> Model | None:
        """A servable model, or None (unknown, hidden, or its provider is disabled).

        Anthropic's own ids work too (Claude Code and the Anthropic SDKs send them):
        `claude-sonnet-4-5` is the Anthropic provider's, and a dated or new Claude id
        that genai-prices can price is served as it is named (see `build_catalog`).
        """
        model = self._models.get(model_id)
        if model is None and self._resolve is not None:
            model = self._resolved_model(model_id)
        return None if model is None or model.hidden else model

    def _resolved_model(self, model_id: str) -> Model | None:
        if model_id in self._resolved:
            return self._resolved[model_id]
        assert self._resolve is not None
        model = self._resolve(model_id)
        if len(self._resolved) < MAX_RESOLVED:  # bounded: ids are the client's to choose
            self._resolved[model_id] = model
        return model

    def listed(self) -> list[Model]:
        return [m for m in self._models.values() if not m.hidden]

    def __len__(self) -> int:
        return len(self._models)


def build_catalog(settings: Settings, now: datetime | None = None) -> Catalog:
    now = now or datetime.now(tz=UTC)
    overrides = {m.id: m for m in settings.models}
    models: dict[str, Model] = {}
    for provider in settings.providers:
        names = list(BUILTIN_MODELS.get(provider.name, ())) + list(provider.models)
        names += EMBEDDING_MODELS.get(provider.name, ())
        names += [
            m.id.split("/", 1)[1] for m in settings.models if m.id.startswith(f"{provider.name}/")
        ]
        for name in dict.fromkeys(names):
            model_id = f"{provider.name}/{name}"
            model = _model(provider, name, overrides.get(model_id), settings.markup, now)
            _check_priced(model, overrides.get(model_id))
            models[model_id] = model
    anthropic = next((p for p in settings.providers if p.kind == "anthropic"), None)

    def resolve(model_id: str) -> Model | None:
        """A Claude id the catalog does not list: a dated id of a listed model is that model
        (its price, overrides, and `hidden` too) under its own name; a model genai-prices
        can price is served at that price; anything else is unknown."""
        name = model_id.removeprefix(f"{anthropic.name}/") if anthropic else model_id
        if anthropic is None or not name.startswith(ANTHROPIC_PREFIX) or "/" in name:
            return None
        listed = models.get(f"{anthropic.name}/{name}")
        if listed is not None:
            return listed
        info = _genai_model(anthropic.name, name)
        if info is None:
            return None
        family = models.get(f"{anthropic.name}/{info.id}")
        if family is not None:
            return replace(family, id=f"{anthropic.name}/{name}", upstream_id=name)
        model = _model(anthropic, name, overrides.get(model_id), settings.markup, now)
        rates = model.price.base
        return model if rates.input and rates.output else None

    return Catalog(models.values(), resolve)


def _check_priced(model: Model, override: ModelSettings | None) -> None:
    """A model nobody priced would be served for free: refuse to start instead."""
    rates = model.price.base
    needed = {"input": rates.input}
    if model.kind != EMBEDDING:  # embeddings bill their input alone
        needed["output"] = rates.output
    if model.hidden or (override and override.free) or all(needed.values()):
        return
    missing = " and ".join(n for n, r in needed.items() if not r)
    prices = " and ".join(f"{n}_price" for n in needed)
    raise ConfigError(
        f'config [models."{model.id}"]: no {missing} price is known for this model; set '
        f"{prices} (USD per 1M tokens), or free = true to serve it free"
    )


def _model(
    provider: ProviderSettings,
    name: str,
    override: ModelSettings | None,
    markup: Decimal,
    now: datetime,
) -> Model:
    upstream_id = (override.upstream_id if override else None) or name
    known = capabilities().get(f"{provider.name}/{name}", {})
    info = _genai_model(provider.name, upstream_id)
    price = _price(info.get_prices(now) if info else None, override, markup)
    kind = model_kind(name, upstream_id, override)
    if kind == EMBEDDING:
        price = embedding_price(price)
    context = (
        (override.context_length if override else None)
        or (info.context_window if info else None)
        or CONTEXT_FALLBACK.get(upstream_id)
        or EMBEDDING_CONTEXT.get(upstream_id)
    )
    return Model(
        id=f"{provider.name}/{name}",
        provider=provider.name,
        upstream_id=upstream_id,
        price=price,
        context_length=context,
        hidden=bool(override and override.hidden),
        tiers=frozenset(_given(override, "tiers", known.get("tiers", ()))),
        tools=bool(_given(override, "tools", known.get("tools", False))),
        vision=bool(_given(override, "vision", known.get("vision", False))),
        wire=provider.kind,
        kind=kind,
    )


@functools.cache
def capabilities() -> dict[str, dict[str, Any]]:
    """The shipped knowledge of each built-in model's tiers, tools and vision."""
    text = resources.files("proxy.data").joinpath("capabilities.toml").read_text("utf-8")
    return tomllib.loads(text)


def _given(override: ModelSettings | None, name: str, default: Any) -> Any:
    value = getattr(override, name) if override else None
    return default if value is None else value


def _genai_model(provider: str, upstream_id: str) -> ModelInfo | None:
    snapshot = data_snapshot.get_snapshot()
    try:
        _, info = snapshot.find_provider_model(upstream_id, None, provider, None)
    except LookupError:
        try:  # a custom provider serving a well-known model keeps its public price
            _, info = snapshot.find_provider_model(upstream_id, None, None, None)
        except LookupError:
            return None
    return info


def _price(base: ModelPrice | None, override: ModelSettings | None, markup: Decimal) -> Price:
    factor = Decimal(1) + (override.markup if override and override.markup is not None else markup)
    fields = {
        "input": "input_mtok",
        "output": "output_mtok",
        "cache_read": "cache_read_mtok",
        "cache_write": "cache_write_mtok",
    }
    given: Mapping[str, Decimal | None] = {
        "input": override.input_price if override else None,
        "output": override.output_price if override else None,
        "cache_read": override.cache_read_price if override else None,
        "cache_write": None,
    }
    tier_starts: set[int] = set()
    raw: dict[str, Decimal | TieredPrices | None] = {}
    for ours, theirs in fields.items():
        value = (
            given[ours]
            if given[ours] is not None
            else getattr(base, theirs, None)
            if base
            else None
        )
        raw[ours] = value
        if isinstance(value, TieredPrices):
            tier_starts.update(t.start for t in value.tiers)

    def rates(prompt_tokens: int) -> Rates:
        return Rates(**{k: _rate(v, prompt_tokens, factor) for k, v in raw.items()})

    tiers = tuple((start, rates(start + 1)) for start in sorted(tier_starts))
    return Price(base=rates(0), tiers=tiers)


def _rate(value: Decimal | TieredPrices | None, prompt_tokens: int, factor: Decimal) -> int:
    if value is None:
        return 0
    if isinstance(value, TieredPrices):
        price = value.base
        for tier in value.tiers:
            if prompt_tokens > tier.start:
                price = tier.price
        value = price
    return rate_from_usd_per_mtok(value * factor)
