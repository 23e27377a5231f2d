"""The OpenAI-compatible `/v1` surface: parse, call down, render.

A chat request flows: key -> body -> catalog -> relay -> usage row. Errors are
`GatewayError`s, rendered in OpenAI's envelope by the app's error handler (Quart
routes) or by `proxy.edge` (the chat route, served without Quart's per-request
machinery because it is the hot path).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson
import trio
from quart import Blueprint, Response, request

from .auto_api import auto_headers, auto_model_entry, decide
from .autoroute import AUTO_MODEL
from .billing import LIMIT_FIELDS, RouteBudget, choices, plan_route, requested_limit
from .catalog import Catalog, Model
from .chat import ChatRequest, parse_chat_request, parse_json
from .errors import GatewayError, InsufficientQuota, NotFound
from .metering import Outcome
from .relay import UpstreamStream
from .routing import ROUTE_FIELDS
from .routing import plan_route as route_models
from .store import KeyRecord
from .tokens import prompt_ceiling
from .wallet import Hold

if TYPE_CHECKING:
    from .app import Gateway

STREAM_HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
}
CLIENT_CLOSED = 499  # nginx's status for a request the client abandoned


def v1_blueprint(gw: Gateway) -> Blueprint:
    bp = Blueprint("v1", __name__, url_prefix="/v1")
    models_body = models_payload(gw.catalog, auto_model_entry(gw) if gw.auto.enabled else None)

    @bp.get("/models")
    async def list_models() -> Response:
        key = await gw.auth.authenticate(request.headers.get("authorization"))
        return Response(models_body, content_type="application/json", headers=gw.limiter.peek(key))

    @bp.get("/models/<path:model_id>")
    async def get_model(model_id: str) -> Response:
        key = await gw.auth.authenticate(request.headers.get("authorization"))
        model = gw.catalog.get(model_id)
        if model_id == AUTO_MODEL and gw.auto.enabled:
            entry = auto_model_entry(gw)
        elif model is None:
            error = unknown_model(model_id)
            error.headers.update(gw.limiter.peek(key))
            raise error
        else:
            entry = model_entry(model)
        return Response(
            orjson.dumps(entry),
            content_type="application/json",
            headers=gw.limiter.peek(key),
        )

    return bp


@dataclass(slots=True)
class Reply:
    """A response the edge sends as it is: a body, or a stream of SSE bytes."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None


async def chat_completions(
    gw: Gateway,
    authorization: str | None,
    raw_body: bytes,
    request_id: str,
    session: str | None = None,
) -> Reply:
    """POST /v1/chat/completions, independent of the web framework (see `proxy.edge`).

    `session` is the `x-session-id` header: tokenroute/auto keeps a session's tier.
    """
    started = trio.current_time()
    key = await gw.auth.authenticate(authorization)
    limit_headers = gw.limiter.take(key)
    try:
        return await _chat(gw, key, raw_body, request_id, started, limit_headers, session)
    except GatewayError as exc:
        exc.headers = {**limit_headers, **exc.headers}
        raise


async def _chat(
    gw: Gateway,
    key: KeyRecord,
    raw_body: bytes,
    request_id: str,
    started: float,
    limit_headers: dict[str, str],
    session: str | None,
) -> Reply:
    chat = parse_chat_request(parse_json(raw_body))
    decision = None
    if chat.model == AUTO_MODEL:
        decision = decide(gw, key, chat.body, session)
        limit_headers = {**limit_headers, **auto_headers(decision)}
    chosen = decision.models if decision else None
    models = route_models(chat.body, gw.catalog, gw.settings.routes, chosen)
    chat = replace(chat, body={k: v for k, v in chat.body.items() if k not in ROUTE_FIELDS})
    requested, n = requested_limit(chat.body), choices(chat.body)
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
    )
    if chat.stream:
        gw.limiter.open_stream(key)
    try:
        outcome.hold, budget = await _reserve(gw, key, chat.body, models, request_id, requested, n)
        models = [m for m in models if m.id in budget.limits]

        def prepare(model: Model) -> ChatRequest:
            limit = budget.limits[model.id]
            if limit is None:
                return chat
            field = next((f for f in LIMIT_FIELDS if f in chat.body), None)
            return replace(chat, body={**chat.body, field or gw.relay.limit_field(model): limit})

        if chat.stream:
            stream = await gw.failover.open_stream(models, prepare)
            outcome.model, outcome.attempts = stream.model, stream.attempts
            headers = _served_headers(limit_headers, stream.model, stream.attempts, budget)
            relayed = _relay(gw, stream.result, outcome)
            return Reply(200, {**STREAM_HEADERS, **headers}, stream=relayed)
        served = await gw.failover.complete(models, prepare)
    except GatewayError as exc:
        _end_stream(gw, outcome)
        exc.headers["x-tokenroute-fallbacks"] = str(len(exc.attempts))
        if decision is not None:
            exc.headers.update(auto_headers(decision))
        outcome.attempts = exc.attempts
        if outcome.hold is not None:  # refused before a hold (402) is not a request we ran
            await _failed(gw, outcome, exc.status, exc.message)
        raise
    except trio.Cancelled:
        _end_stream(gw, outcome)
        await _failed(gw, outcome, CLIENT_CLOSED, "the client went away")
        raise
    outcome.model, outcome.attempts = served.model, served.attempts
    completion = served.result
    outcome.usage, outcome.output_text = completion.usage, completion.output_text
    outcome.first_byte_at = trio.current_time()
    await gw.meter.record(outcome)
    headers = _served_headers(limit_headers, served.model, served.attempts, budget)
    return Reply(200, {"content-type": "application/json", **headers}, completion.body)


def _served_headers(
    limit_headers: dict[str, str],
    model: Model,
    attempts: list[dict[str, object]],
    budget: RouteBudget,
) -> dict[str, str]:
    headers = {
        **limit_headers,
        "x-tokenroute-model": model.id,
        "x-tokenroute-provider": model.provider,
        "x-tokenroute-fallbacks": str(len(attempts)),
    }
    limit = budget.limits.get(model.id)
    if limit is not None:
        headers["x-tokenroute-max-tokens"] = str(limit)
    return headers


async def _reserve(
    gw: Gateway,
    key: KeyRecord,
    body: dict[str, Any],
    models: list[Model],
    request_id: str,
    requested: int | None,
    n: int,
) -> tuple[Hold, RouteBudget]:
    """Hold the most the request can cost on any model of its route.

    The prompt is first bounded by its size in bytes, which needs no tokenizer;
    its tokens are counted only when that bound would lower a completion limit
    or refuse the request.
    """
    sized = partial(
        plan_route,
        models,
        requested=requested,
        n=n,
        default_cap=gw.settings.max_output_tokens,
        min_completion=gw.settings.min_completion_tokens,
    )
    budget = partial(sized, prompt_tokens=prompt_ceiling(body))
    try:
        roomy = budget(await gw.wallets.available(key.id)).roomy
    except InsufficientQuota:
        roomy = False
    if not roomy:
        budget = partial(sized, prompt_tokens=await gw.tokens.count_request(body))
    return await gw.wallets.reserve(key.id, request_id, budget)


def _end_stream(gw: Gateway, outcome: Outcome) -> None:
    if outcome.stream:
        gw.limiter.close_stream(outcome.key)


async def _relay(gw: Gateway, upstream: UpstreamStream, outcome: Outcome) -> AsyncIterator[bytes]:
    """Yield each event as it arrives; record usage however the stream ends."""
    try:
        async for chunk in upstream.events():
            yield chunk
    except BaseException as exc:
        gone = isinstance(exc, trio.Cancelled | GeneratorExit)
        outcome.status = CLIENT_CLOSED if gone else 500
        outcome.error = "the client went away" if outcome.status == CLIENT_CLOSED else repr(exc)
        raise
    finally:
        _end_stream(gw, outcome)
        state = upstream.state
        if outcome.model is not None:
            gw.failover.ended(outcome.model, state.error, abandoned=outcome.status != 200)
        if state.error is not None and outcome.status == 200:
            outcome.status, outcome.error = state.error.status, state.error.message
        outcome.usage, outcome.output_text = state.usage, state.output_text
        outcome.first_byte_at = upstream.first_byte_at
        await gw.meter.record(outcome)


async def _failed(gw: Gateway, outcome: Outcome, status: int, message: str) -> None:
    outcome.status, outcome.error = status, message
    await gw.meter.record(outcome)


def unknown_model(model_id: str) -> GatewayError:
    return NotFound(
        f"the model {model_id!r} does not exist or is not enabled here; "
        "list the available models with GET /v1/models",
        param="model",
    )


def model_entry(model: Model) -> dict[str, object]:
    return {
        "id": model.id,
        "object": "model",
        "created": 0,
        "owned_by": model.provider,
        "pricing": model.pricing(),
        "context_length": model.context_length,
    }


def models_payload(catalog: Catalog, auto: dict[str, object] | None = None) -> bytes:
    entries = sorted((model_entry(m) for m in catalog.listed()), key=lambda e: str(e["id"]))
    return orjson.dumps({"object": "list", "data": [auto, *entries] if auto else entries})
