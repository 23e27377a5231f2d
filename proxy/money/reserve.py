"""Holding the most a request can cost before it goes upstream.

The prompt is first bounded by its size in bytes, which needs no tokenizer; its
tokens are counted only when that bound would lower a completion limit or refuse
the request (the balance is tight). The hold covers the dearest model of the route
the balance can pay for; models it cannot pay for drop out of the route.
"""

from __future__ import annotations

from functools import partial

from ..core.chat import ChatRequest
from ..core.embeddings import EmbeddingRequest
from ..core.errors import InsufficientQuota
from ..core.model import Model
from .budget import RouteBudget, input_tokens, plan_input, plan_route
from .prompt import prediction_size
from .tokens import TokenCounter, prompt_ceiling
from .wallet import Hold, Wallets


class Reservations:
    def __init__(
        self, wallets: Wallets, tokens: TokenCounter, *, default_cap: int, min_completion: int
    ) -> None:
        self._wallets = wallets
        self._tokens = tokens
        self._default_cap = default_cap  # completion tokens held for a request that sets none
        self._min_completion = min_completion  # fewer affordable than this: 402

    async def hold(
        self, key_id: str, request_id: str, chat: ChatRequest, models: list[Model]
    ) -> tuple[Hold, RouteBudget]:
        """Hold for the request on `models`; 402 when the balance cannot pay for any of them."""
        sized = partial(
            plan_route,
            models,
            requested=chat.completion_limit,
            n=chat.n,
            default_cap=self._default_cap,
            min_completion=self._min_completion,
            prediction_tokens=prediction_size(chat.body),
        )
        unsent = chat.unsent_text  # input the upstream bills that the body does not show
        budget = partial(sized, prompt_tokens=prompt_ceiling(chat.body) + len(unsent.encode()))
        try:
            roomy = budget(await self._wallets.available(key_id)).roomy
        except InsufficientQuota:
            roomy = False
        if not roomy:
            counted = await self._tokens.count_request(chat.body)
            if unsent:
                counted += await self._tokens.count(unsent)
            budget = partial(sized, prompt_tokens=counted)
        return await self._wallets.reserve(key_id, request_id, budget)

    async def hold_input(
        self, key_id: str, request_id: str, request: EmbeddingRequest, models: list[Model]
    ) -> tuple[Hold, RouteBudget]:
        """Hold for an embeddings request: its input, bounded by its size, or counted when the
        balance cannot pay for that bound on every model of the route."""
        count = request.count
        budget = partial(plan_input, models, tokens=input_tokens(request.size(), count))
        try:
            roomy = len(budget(await self._wallets.available(key_id)).limits) == len(models)
        except InsufficientQuota:
            roomy = False
        if not roomy:
            counted = await self._tokens.count_inputs(request)
            tokens = input_tokens(request.size(), count, counted)
            budget = partial(plan_input, models, tokens=tokens)
        return await self._wallets.reserve(key_id, request_id, budget)
