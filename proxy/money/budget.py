"""What a request may spend: the hold to reserve and the completion limit to send.

Pure arithmetic on integer money. Before a request goes upstream the gateway
reserves the most it can cost: its prompt (estimated) plus every completion token
it may produce. When the balance cannot pay for what the client asked for (or it
asked for no limit), the completion limit is lowered to what the balance can pay
for; when it cannot pay for the prompt plus a minimal completion, the answer is
402 without calling the upstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.chat import Usage
from ..core.errors import BadRequest, InsufficientQuota
from ..core.model import Model
from ..core.money import PICO_PER_UNIT, format_usd
from .prompt import UNBOUNDED

# Token counts are o200k estimates; other tokenizers count a little differently.
PROMPT_MARGIN_PERCENT = 10
PROMPT_MARGIN_TOKENS = 16


@dataclass(frozen=True, slots=True)
class Budget:
    hold: int  # money units reserved for the request
    completion_limit: int | None  # a lower limit to send upstream, or None to keep the client's
    prompt_tokens: int  # the estimate the hold was sized for


def plan(
    model: Model,
    available: int,
    *,
    prompt_tokens: int,
    requested: int | None,
    n: int,
    default_cap: int,
    min_completion: int,
    prediction_tokens: int = 0,
) -> Budget:
    """Size the hold; raise 402 when the balance cannot pay for a minimal answer.

    The prompt can never exceed the model's context window, which also bounds what
    nothing else does (media fetched by URL); a predicted output may be billed as
    output on top of the completion.
    """
    prompt = prompt_tokens + prompt_tokens * PROMPT_MARGIN_PERCENT // 100 + PROMPT_MARGIN_TOKENS
    if model.context_length:
        prompt = min(prompt, model.context_length)
    elif prompt_tokens >= UNBOUNDED:
        raise BadRequest(
            f"{model.id} has no known context window to bound this request's media by URL; "
            "send the media inline or use another model",
            param="messages",
        )
    price = model.price
    wanted = requested or default_cap
    prompt_cost = price.cost(Usage(prompt, prediction_tokens))
    out_rate = price.rates_for(prompt).output  # pico-USD per completion token
    if out_rate == 0:
        affordable = wanted if prompt_cost <= available else 0
    else:
        spare_pico = (available - prompt_cost) * PICO_PER_UNIT
        affordable = max(0, spare_pico // (out_rate * n))
    floor = min(min_completion, wanted)
    if prompt_cost > available or affordable < floor:
        needed = price.cost(Usage(prompt, floor * n + prediction_tokens))
        raise InsufficientQuota(
            f"this key's balance of ${format_usd(max(available, 0))} cannot pay for this "
            f"request on {model.id}: its prompt (about {min(prompt_tokens, prompt)} tokens) and "
            f"{floor * n} completion tokens need ${format_usd(needed)}. "
            "Top up the key or use a cheaper model."
        )
    completion = min(wanted, affordable)
    return Budget(
        hold=price.cost(Usage(prompt, completion * n + prediction_tokens)),
        completion_limit=completion if completion < wanted else None,
        prompt_tokens=prompt_tokens,
    )


@dataclass(frozen=True, slots=True)
class RouteBudget:
    """The hold for a request that may be served by any of several models."""

    hold: int  # enough for the dearest model the balance can pay for
    limits: dict[str, int | None]  # per affordable model: a lower completion limit, or None

    @property
    def roomy(self) -> bool:
        return all(limit is None for limit in self.limits.values())


def plan_route(
    models: list[Model], available: int, *, prompt_tokens: int, **terms: Any
) -> RouteBudget:
    """Plan every model of a route; those the balance cannot pay for drop out (402 if all do)."""
    budgets: dict[str, Budget] = {}
    refused: InsufficientQuota | None = None
    for model in models:
        try:
            budgets[model.id] = plan(model, available, prompt_tokens=prompt_tokens, **terms)
        except InsufficientQuota as exc:
            refused = refused or exc
    if not budgets:
        assert refused is not None
        raise refused
    return RouteBudget(
        hold=max(b.hold for b in budgets.values()),
        limits={model_id: b.completion_limit for model_id, b in budgets.items()},
    )


# -- embeddings: billed by their input alone -------------------------------------------------
# Tokens a tokenizer may add to each input of its own (beginning and end markers).
TOKENS_PER_INPUT = 2


def input_tokens(bound: int, inputs: int, counted: int | None = None) -> int:
    """The input tokens to hold for: `bound` (bytes or token ids) plus each input's markers;
    a tokenizer's `counted` estimate, with the usual margin, when it is lower."""
    ceiling = bound + inputs * TOKENS_PER_INPUT
    if counted is None:
        return ceiling
    margin = counted * PROMPT_MARGIN_PERCENT // 100 + PROMPT_MARGIN_TOKENS
    return min(ceiling, counted + margin + inputs * TOKENS_PER_INPUT)


def plan_input(models: list[Model], available: int, *, tokens: int) -> RouteBudget:
    """Hold `tokens` of input on the dearest model of the route the balance pays for; models
    it cannot pay for drop out, and 402 when none is left. Nothing bounds the input by a
    model's window here: that window is per input, and a request has up to 2,048 of them."""
    costs = {m.id: m.price.cost(Usage(tokens)) for m in models}
    affordable = {model_id: cost for model_id, cost in costs.items() if cost <= available}
    if not affordable:
        first = models[0]
        raise InsufficientQuota(
            f"this key's balance of ${format_usd(max(available, 0))} cannot pay for this "
            f"request on {first.id}: its input (at most {tokens} tokens) needs "
            f"${format_usd(costs[first.id])}. Top up the key or use a cheaper model."
        )
    return RouteBudget(hold=max(affordable.values()), limits=dict.fromkeys(affordable, None))
