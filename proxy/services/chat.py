"""ChatService: one chat request from its body to its settled usage, for every surface.

Parse, plan the route (tokenroute/auto included), hold the most it can cost, call
the upstreams with failover, and settle: all here, once. A surface authenticates,
admits the key (`admit`), calls `prepare`, then `complete` for a typed reply or
`open_stream` for typed stream events, and renders them in its wire format.

A stream is owned by what `open_stream` returns, an async context manager: its exit
releases the stream slot, closes the upstream socket, reports the upstream's health
and settles the hold, whether the stream was read to the end, failed mid-way, was
abandoned by its client, or never read at all (see `chat_stream`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import trio

from ..access.ratelimit import RateLimiter
from ..core.chat import ChatRequest, parse_chat_request
from ..core.config import Settings
from ..core.errors import BadRequest, Fault, GatewayError, NotFound
from ..core.model import AUTO_MODEL, Model
from ..core.money import format_usd
from ..money.budget import RouteBudget
from ..money.metering import Meter, Outcome
from ..money.reserve import Reservations
from ..money.tokens import TokenCounter
from ..providers.anthropic_in import parse_messages_request
from ..routing.autoroute import AutoRouter, Decision
from ..routing.catalog import Catalog
from ..routing.plan import plan_route, strip_route_fields, unknown_model
from ..routing.sessions import Sessions
from ..store import KeyRecord, UsageRecord
from ..upstream.failover import Failover, OpenStream
from .chat_stream import OpenChatStream, Unanswered


@dataclass(frozen=True, slots=True)
class ChatReply:
    completion: dict[str, Any]  # an OpenAI chat.completion object
    headers: dict[str, str]  # the served model, fallbacks, limits, the auto tier
    native: bytes | None = None  # an Anthropic upstream's own answer to a Messages request


@dataclass(slots=True)
class ChatCall:
    """One chat request on its way: what was asked, where it may go, what happened."""

    request: ChatRequest
    models: list[Model]  # the route, in order
    decision: Decision | None  # tokenroute/auto's, when it chose the route
    outcome: Outcome
    started: bool = False  # past admission: failures from here carry the route's headers

    @property
    def stream(self) -> bool:
        return self.request.stream

    def failure_headers(self) -> dict[str, str]:
        """Headers for an error of this call, over the error's own."""
        if not self.started:
            return {}
        fallbacks = {"x-tokenroute-fallbacks": str(len(self.outcome.attempts))}
        return {**fallbacks, **auto_headers(self.decision)}


class ChatService:
    def __init__(
        self,
        *,
        settings: Settings,
        catalog: Catalog,
        auto: AutoRouter,
        sessions: Sessions,
        limiter: RateLimiter,
        reservations: Reservations,
        meter: Meter,
        failover: Failover,
        tokens: TokenCounter,
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self._auto = auto
        self._sessions = sessions
        self._limiter = limiter
        self._reservations = reservations
        self._meter = meter
        self._failover = failover
        self._tokens = tokens

    # -- admission and the catalog ---------------------------------------------------------
    async def admit(self, key: KeyRecord) -> dict[str, str]:
        """Count one request against the key's rate limit; its headers, or 429."""
        return await self._limiter.take(key)

    async def limit_headers(self, key: KeyRecord) -> dict[str, str]:
        """The key's rate-limit headers without counting a request."""
        return await self._limiter.peek(key)

    def models(self) -> list[Model]:
        return sorted(self._catalog.listed(), key=lambda m: m.id)

    def model(self, model_id: str) -> Model:
        model = self._catalog.get(model_id)
        if model is None:
            raise unknown_model(model_id)
        return model

    def auto_tiers(self) -> dict[str, list[Model]] | None:
        """What each tokenroute/auto tier is served by; None when auto-routing is off."""
        return self._auto.tiers if self._auto.enabled else None

    def explain(
        self, key: KeyRecord | None, body: Any, session: str | None
    ) -> tuple[dict[str, object], dict[str, str]]:
        """What tokenroute/auto would do with a chat body, and its headers; no call, no charge.
        Sessions belong to keys: without one (a login asking), no session counts."""
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        chat = parse_chat_request({**body, "model": AUTO_MODEL})
        decision = self._decide(key, chat.body, session or _user(chat.body))
        return decision.explain(), auto_headers(decision)

    # -- a chat request --------------------------------------------------------------------
    def prepare(
        self, key: KeyRecord, body: Any, request_id: str, session: str | None, started: float
    ) -> ChatCall:
        """Validate the body and plan its route; `session` is the x-session-id header."""
        return self._plan(key, parse_chat_request(body), request_id, session, started, "chat")

    def prepare_messages(
        self,
        key: KeyRecord,
        body: Any,
        headers: Iterable[tuple[str, str]],
        request_id: str,
        session: str | None,
        started: float,
    ) -> ChatCall:
        """`prepare` for an Anthropic Messages body (`headers`: the request's, lower-case)."""
        chat = parse_messages_request(body, headers)
        return self._plan(key, chat, request_id, session, started, "messages")

    def _plan(
        self,
        key: KeyRecord,
        chat: ChatRequest,
        request_id: str,
        session: str | None,
        started: float,
        route: str,
    ) -> ChatCall:
        decision = None
        if chat.model == AUTO_MODEL:
            session = session or _user(chat.body)
            decision = self._decide(key, chat.body, session)
            self._sessions.remember(key.id, session, decision.tier)
        chosen = decision.models if decision else None
        models = plan_route(chat.body, self._catalog, self._settings.routes, chosen)
        if chat.native_only is not None:
            models = anthropic_only(models, chat.native_only)
        chat = replace(chat, body=strip_route_fields(chat.body))
        outcome = Outcome(
            request_id=request_id,
            key=key,
            requested_model=chat.model,
            model=models[0],
            stream=chat.stream,
            started=started,
            messages=chat.messages,
            tier=decision.tier if decision else None,
            score=decision.score.score if decision else None,
            route=route,
        )
        return ChatCall(chat, models, decision, outcome)

    async def complete(self, call: ChatCall) -> ChatReply:
        """Run a non-streaming request to its settled end."""
        outcome = call.outcome
        call.started = True
        async with Unanswered(self._meter, outcome):
            budget = await self._hold(call)
            models, prepare = self._routed(call, budget)
            model, completion = await self._failover.complete(models, prepare, outcome.attempts)
        outcome.model = model
        outcome.usage, outcome.output_text = completion.usage, completion.output_text
        outcome.first_byte_at = trio.current_time()
        record = await self._meter.record(outcome)
        headers = self._served_headers(call, model, budget)
        headers["x-tokenroute-cost"] = format_usd(record.cost)
        return ChatReply(_priced(completion.data, record), headers, completion.native)

    def open_stream(self, call: ChatCall) -> OpenChatStream:
        """The owner of a streaming request's stream: `async with` it for the events."""

        async def start() -> tuple[OpenStream, dict[str, str]]:
            call.started = True
            budget = await self._hold(call)
            models, prepare = self._routed(call, budget)
            opened = await self._failover.open_stream(models, prepare, call.outcome.attempts)
            return opened, self._served_headers(call, opened.model, budget)

        return OpenChatStream(call.outcome, self._limiter, self._meter, start)

    async def count_tokens(
        self, key: KeyRecord, body: Any, headers: Iterable[tuple[str, str]]
    ) -> tuple[Any, dict[str, str]]:
        """The input tokens of a Messages body, free: Anthropic's own count when the model
        is Anthropic's and its upstream answers, else the gateway's estimate; and the key's
        rate-limit headers (a count is a request to the operator's upstream)."""
        chat = parse_messages_request(body, headers, count_only=True)
        limits = await self.admit(key)
        chosen = self._decide(key, chat.body, None).models if chat.model == AUTO_MODEL else None
        model = plan_route(chat.body, self._catalog, self._settings.routes, chosen)[0]
        if model.wire == "anthropic" and self._failover.health.available(model.id):
            try:
                return await self._failover.count_tokens(model, chat), limits
            except GatewayError as error:
                if error.fault is Fault.REQUEST:
                    raise
        counted = await self._tokens.count_request(chat.body)
        counted += await self._tokens.count(chat.unsent_text)
        return {"input_tokens": counted}, limits

    # -- the steps -------------------------------------------------------------------------
    def _decide(self, key: KeyRecord | None, body: dict[str, Any], session: str | None) -> Decision:
        if not self._auto.enabled:
            raise NotFound(
                f"{AUTO_MODEL} has no models to route to: give models tiers in the config "
                '([models."id"] tiers = [...]) or map them in [auto.models]',
                param="model",
            )
        previous = self._sessions.tier(key.id, session) if key is not None else None
        return self._auto.decide(body, previous)

    async def _hold(self, call: ChatCall) -> RouteBudget:
        outcome = call.outcome
        outcome.hold, budget = await self._reservations.hold(
            outcome.key.id, outcome.request_id, call.request, call.models
        )
        return budget

    @staticmethod
    def _routed(
        call: ChatCall, budget: RouteBudget
    ) -> tuple[list[Model], Callable[[Model], ChatRequest]]:
        """The models the budget pays for, and the request each of them gets."""
        models = [m for m in call.models if m.id in budget.limits]

        def prepare(model: Model) -> ChatRequest:
            call.outcome.upstream_reached = True  # sent right after this
            return call.request.with_limit(budget.limits[model.id])

        return models, prepare

    def _served_headers(self, call: ChatCall, model: Model, budget: RouteBudget) -> dict[str, str]:
        headers = {
            **auto_headers(call.decision),
            "x-tokenroute-model": model.id,
            "x-tokenroute-provider": model.provider,
            "x-tokenroute-fallbacks": str(len(call.outcome.attempts)),
        }
        limit = budget.limits.get(model.id)
        if limit is not None:
            headers["x-tokenroute-max-tokens"] = str(limit)
        return headers


def anthropic_only(models: list[Model], why: str) -> list[Model]:
    """The route's models that speak Anthropic's Messages API natively."""
    kept = [m for m in models if m.wire == "anthropic"]
    if not kept:
        raise BadRequest(
            f"{why} is served by Anthropic models only; choose a claude model",
            param="model",
        )
    return kept


def auto_headers(decision: Decision | None) -> dict[str, str]:
    """Why tokenroute/auto chose what it did."""
    if decision is None:
        return {}
    return {"x-tokenroute-tier": decision.tier, "x-tokenroute-score": f"{decision.score.score:.2f}"}


def _priced(completion: dict[str, Any], record: UsageRecord) -> dict[str, Any]:
    """The completion with its `usage` showing what the request was billed (`cost`, USD);
    the usage it was billed by when the upstream reported none."""
    usage = completion.get("usage")
    if not isinstance(usage, dict):
        usage = {
            "prompt_tokens": record.tokens_in,
            "completion_tokens": record.tokens_out,
            "total_tokens": record.tokens_in + record.tokens_out,
        }
    completion["usage"] = {**usage, "cost": format_usd(record.cost)}
    return completion


def _user(body: dict[str, Any]) -> str | None:
    user = body.get("user")
    return user if isinstance(user, str) and user else None
