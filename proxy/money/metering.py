"""Turning a finished request into its usage row (tokens, estimate flag, cost).

Called when a request ends however it ends: success, upstream failure, client
disconnect or shutdown. Everything here is safe inside a cancelled scope: the
settlement is handed to the store's writer with a non-blocking send, and a token
estimate that needs a worker thread runs shielded and bounded in time. Failed
requests with no output cost nothing; an aborted stream costs what was relayed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import trio

from ..core.chat import Usage
from ..core.embeddings import EmbeddingRequest
from ..core.model import Model
from ..store import KeyRecord, UsageRecord
from .tokens import TokenCounter
from .wallet import Hold, Wallets

ESTIMATE_DEADLINE = 5.0  # seconds; past it, fall back to ~4 characters a token
CLIENT_CLOSED = 499  # nginx's status for a request the client abandoned


@dataclass(slots=True)
class Outcome:
    """What happened to one request, gathered by the chat service as it goes."""

    request_id: str
    key: KeyRecord
    requested_model: str
    model: Model | None
    stream: bool
    started: float  # trio clock
    status: int = 200
    error: str | None = None
    usage: Usage | None = None
    output_text: str = ""
    first_byte_at: float | None = None
    messages: list[Any] | None = None
    hold: Hold | None = None  # the money reserved for it, settled by `Meter.record`
    attempts: list[dict[str, object]] = field(default_factory=list)  # failed upstreams first
    tier: str | None = None  # tokenroute/auto's choice
    score: float | None = None
    upstream_reached: bool = False  # an upstream was sent the prompt
    inputs: EmbeddingRequest | None = None  # an embeddings request: its input is the prompt
    record: UsageRecord | None = None  # its usage row, once recorded
    route: str = "chat"  # the API it came through (chat, messages, embeddings): a metrics label
    recorded: bool = False  # settled by `Meter.record`: its usage row (and metrics) are written


OnRecord = Callable[[Outcome, UsageRecord], None]


class Meter:
    def __init__(
        self, wallets: Wallets, tokens: TokenCounter, on_record: OnRecord | None = None
    ) -> None:
        self._wallets = wallets
        self._tokens = tokens
        self._on_record = on_record  # the metrics, told of every settled request

    async def record(self, outcome: Outcome) -> UsageRecord:
        """Settle the request: usage row, debit, hold released (estimated usage if none came)."""
        ended = trio.current_time()
        usage = outcome.usage
        # A client that leaves after the upstream took its prompt pays for the prompt (the
        # provider bills it) and for what was relayed; an upstream's failure costs nothing.
        abandoned = outcome.status == CLIENT_CLOSED and outcome.upstream_reached
        if (
            usage is None
            and outcome.model is not None
            and (outcome.output_text or outcome.status == 200 or abandoned)
        ):
            usage = await self._estimate(
                outcome.messages or [], outcome.output_text, outcome.inputs
            )
        elif usage is not None and outcome.status != 200 and outcome.output_text:
            # A stream cut short may carry only the running usage of its last event
            # (Gemini's lacks output counts until the end): bill at least what was relayed.
            relayed = (await self._estimate([], outcome.output_text)).completion_tokens
            if relayed > usage.completion_tokens:
                usage = replace(usage, completion_tokens=relayed, estimated=True)
        usage = usage or Usage()
        model = outcome.model
        record = UsageRecord(
            request_id=outcome.request_id,
            key_id=outcome.key.id,
            user_id=outcome.key.user_id,
            requested_model=outcome.requested_model,
            served_model=model.id if model else None,
            provider=model.provider if model else None,
            tokens_in=usage.prompt_tokens,
            tokens_out=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            estimated=usage.estimated,
            cost=model.price.cost(usage) if model else 0,
            status=outcome.status,
            error=outcome.error,
            latency_ms=round((ended - outcome.started) * 1000),
            ttft_ms=(
                round((outcome.first_byte_at - outcome.started) * 1000)
                if outcome.first_byte_at is not None
                else None
            ),
            stream=outcome.stream,
            created_at=int(time.time() * 1000),
            reserved=outcome.hold.amount if outcome.hold else 0,
            fallbacks=len(outcome.attempts),
            attempts=orjson.dumps(outcome.attempts).decode() if outcome.attempts else None,
            tier=outcome.tier,
            score=outcome.score,
        )
        self._wallets.settle(outcome.hold, record)
        outcome.hold = None  # billed once, however many paths end here
        outcome.record = record
        if self._on_record is not None and not outcome.recorded:
            self._on_record(outcome, record)
        outcome.recorded = True
        return record

    async def _estimate(
        self, messages: list[Any], output_text: str, inputs: EmbeddingRequest | None = None
    ) -> Usage:
        with trio.CancelScope(shield=True), trio.move_on_after(ESTIMATE_DEADLINE) as scope:
            if inputs is not None:
                prompt = await self._tokens.count_inputs(inputs)
            else:
                prompt = await self._tokens.count_prompt(messages)
            completion = await self._tokens.count(output_text)
            return Usage(prompt, completion, 0, estimated=True)
        assert scope.cancelled_caught
        if inputs is not None:
            return Usage(inputs.size() // 4 + 1, 0, 0, estimated=True)
        chars = sum(len(str(m.get("content", ""))) for m in messages if isinstance(m, dict))
        return Usage(chars // 4 + 1, len(output_text) // 4, 0, estimated=True)
