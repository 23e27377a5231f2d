"""A servable model as every layer sees it: its ids, its price and what it can do.

Prices are integer pico-USD per token with any markup already applied, so costing a
request is integer arithmetic; the catalog (`proxy.routing.catalog`) builds these.
"""

from __future__ import annotations

from dataclasses import dataclass

from .chat import Usage
from .money import pico_to_units, usd_per_mtok_from_rate

AUTO_MODEL = "tokenroute/auto"  # the model id that asks the gateway to choose
# What a model serves: chat completions, or embeddings (billed by their input alone).
CHAT, EMBEDDING = "chat", "embedding"
MODEL_KINDS = (CHAT, EMBEDDING)


@dataclass(frozen=True, slots=True)
class Rates:
    """pico-USD per token."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0


@dataclass(frozen=True, slots=True)
class Price:
    base: Rates
    # (start, rates): when the prompt has more than `start` tokens, all tokens use `rates`.
    tiers: tuple[tuple[int, Rates], ...] = ()

    def rates_for(self, prompt_tokens: int) -> Rates:
        for start, rates in reversed(self.tiers):
            if prompt_tokens > start:
                return rates
        return self.base

    def cost(self, usage: Usage) -> int:
        """Cost in money units, rounded up once per request.

        Cache writes kept for an hour cost twice the input rate (Anthropic's price for
        them); others the cache-write rate.
        """
        rates = self.rates_for(usage.prompt_tokens)
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        written = min(usage.cache_write_tokens, usage.prompt_tokens - cached)
        hour = min(usage.cache_hour_tokens, written)
        pico = (
            (usage.prompt_tokens - cached - written) * rates.input
            + cached * (rates.cache_read or rates.input)
            + (written - hour) * (rates.cache_write or rates.input)
            + hour * 2 * rates.input
            + usage.completion_tokens * rates.output
        )
        return pico_to_units(pico)


@dataclass(frozen=True, slots=True)
class Model:
    id: str  # provider/model
    provider: str
    upstream_id: str
    price: Price
    context_length: int | None
    hidden: bool = False
    tiers: frozenset[str] = frozenset()  # what tokenroute/auto may use it for
    tools: bool = False
    vision: bool = False
    wire: str = "openai-compatible"  # its provider's `kind`: "anthropic" speaks Messages
    kind: str = CHAT  # CHAT or EMBEDDING: which endpoint serves it

    def blended_rate(self) -> int:
        """pico-USD for three prompt tokens and one completion token: what 'cheapest' means."""
        return 3 * self.price.base.input + self.price.base.output

    def pricing(self) -> dict[str, str]:
        """USD per 1M tokens, as strings."""
        return {
            "input": usd_per_mtok_from_rate(self.price.base.input),
            "output": usd_per_mtok_from_rate(self.price.base.output),
            "cache_read": usd_per_mtok_from_rate(self.price.base.cache_read),
            "unit": "USD per 1M tokens",
        }
