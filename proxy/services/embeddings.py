"""EmbeddingService: one embeddings request from its body to its settled usage.

The same steps as a chat request, for every surface: parse, plan the route (the
request's `models`, the operator's `[routes]`), hold the most the input can cost,
call the upstreams with failover, and settle by the usage the upstream reported
(or the input counted, when it reported none) with one usage row and its debit.
Embeddings are billed by their input alone, so there is no completion limit to
lower: a balance that cannot pay for the input is a 402 before any upstream call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import trio

from ..access.ratelimit import RateLimiter
from ..core.config import Settings
from ..core.embeddings import EmbeddingRequest, parse_embedding_request
from ..core.errors import BadRequest
from ..core.model import AUTO_MODEL, EMBEDDING, Model
from ..core.money import format_usd
from ..money.metering import Meter, Outcome
from ..money.reserve import Reservations
from ..providers.embeddings import EmbeddingAdapter, refuse_tokens
from ..routing.catalog import Catalog
from ..routing.plan import plan_route, strip_route_fields
from ..store import KeyRecord, UsageRecord
from ..upstream.failover import Failover
from .chat_stream import Unanswered


@dataclass(frozen=True, slots=True)
class EmbeddingReply:
    data: dict[str, Any]  # OpenAI's `list` of embeddings, `usage.cost` what it was billed
    headers: dict[str, str]  # the served model and provider, the fallbacks


@dataclass(slots=True)
class EmbeddingCall:
    """One embeddings request on its way: what was asked, where it may go, what happened."""

    request: EmbeddingRequest
    models: list[Model]  # the route, in order
    outcome: Outcome
    started: bool = False  # past admission: failures from here carry the route's headers

    def failure_headers(self) -> dict[str, str]:
        """Headers for an error of this call, over the error's own."""
        if not self.started:
            return {}
        return {"x-tokenroute-fallbacks": str(len(self.outcome.attempts))}


class EmbeddingService:
    def __init__(
        self,
        *,
        settings: Settings,
        catalog: Catalog,
        limiter: RateLimiter,
        reservations: Reservations,
        meter: Meter,
        failover: Failover,
        adapters: Mapping[str, EmbeddingAdapter | None],
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self._limiter = limiter
        self._reservations = reservations
        self._meter = meter
        self._failover = failover
        self._adapters = dict(adapters)  # provider -> its embeddings wire; None: it has none

    async def admit(self, key: KeyRecord) -> dict[str, str]:
        """Count one request against the key's rate limit (shared with chat); headers, or 429."""
        return await self._limiter.take(key)

    def prepare(self, key: KeyRecord, body: Any, request_id: str, started: float) -> EmbeddingCall:
        """Validate the body and plan its route: 400 for what no model of it could embed."""
        request = parse_embedding_request(body)
        if request.model == AUTO_MODEL:
            raise BadRequest(
                f"{AUTO_MODEL} routes chat requests only; name an embedding model",
                param="model",
            )
        primary, *fallbacks = plan_route(
            request.body, self._catalog, self._settings.routes, kind=EMBEDDING
        )
        adapter = self._adapters.get(primary.provider)
        if adapter is None:
            raise BadRequest(f"{primary.provider} serves no embeddings", param="model")
        refuse_tokens(request, primary, adapter)
        # fallbacks that cannot take this input (token ids) are left out, not refused
        models = [primary, *(m for m in fallbacks if self._takes(m, request))]
        request = replace(request, body=strip_route_fields(request.body))
        outcome = Outcome(
            request_id=request_id,
            key=key,
            requested_model=request.model,
            model=primary,
            stream=False,
            started=started,
            inputs=request,
            route="embeddings",
        )
        return EmbeddingCall(request, models, outcome)

    async def embed(self, call: EmbeddingCall) -> EmbeddingReply:
        """Run the request to its settled end."""
        outcome = call.outcome
        call.started = True
        async with Unanswered(self._meter, outcome):
            outcome.hold, budget = await self._reservations.hold_input(
                outcome.key.id, outcome.request_id, call.request, call.models
            )
            models = [m for m in call.models if m.id in budget.limits]

            def prepare(model: Model) -> tuple[EmbeddingAdapter, EmbeddingRequest]:
                outcome.upstream_reached = True  # sent right after this
                adapter = self._adapters[model.provider]
                assert adapter is not None  # `EmbeddingService.prepare` routed only these
                return adapter, call.request

            model, result = await self._failover.embed(models, prepare, outcome.attempts)
        outcome.model, outcome.usage = model, result.usage
        outcome.first_byte_at = trio.current_time()
        record = await self._meter.record(outcome)
        headers = {
            "x-tokenroute-model": model.id,
            "x-tokenroute-provider": model.provider,
            "x-tokenroute-fallbacks": str(len(outcome.attempts)),
        }
        return EmbeddingReply(_priced(result.data, record), headers)

    def _takes(self, model: Model, request: EmbeddingRequest) -> bool:
        """Whether the model's provider has an embeddings endpoint that takes this input."""
        adapter = self._adapters.get(model.provider)
        return adapter is not None and (adapter.takes_tokens or not request.tokens)


def _priced(data: dict[str, Any], record: UsageRecord) -> dict[str, Any]:
    """OpenAI's `usage` (`prompt_tokens`, `total_tokens`) as billed, with its `cost` (USD)."""
    usage = data.get("usage")
    if not isinstance(usage, dict) or record.estimated:
        usage = {"prompt_tokens": record.tokens_in, "total_tokens": record.tokens_in}
    data["usage"] = {**usage, "cost": format_usd(record.cost)}
    return data
