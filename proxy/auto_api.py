"""`tokenroute/auto` at the edge: choosing a route for a request, and explaining one.

`POST /v1/route/explain` takes a chat body and answers what auto-routing would
do with it (tier, score, the signals that fired, the model and its
alternatives) without calling an upstream or charging; it reads the session's
tier but does not move it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from quart import Blueprint, Response, request

from .autoroute import AUTO_MODEL, Decision
from .chat import parse_chat_request, parse_json
from .errors import BadRequest, NotFound
from .store import KeyRecord

if TYPE_CHECKING:
    from .app import Gateway

SESSION_HEADER = "x-session-id"


def decide(gw: Gateway, key: KeyRecord, body: dict[str, Any], session: str | None) -> Decision:
    """Route a tokenroute/auto request and move its session to the tier it got."""
    session = session or _user(body)
    decision = _decide(gw, key, body, session)
    gw.sessions.remember(key.id, session, decision.tier)
    return decision


def auto_headers(decision: Decision) -> dict[str, str]:
    return {"x-tokenroute-tier": decision.tier, "x-tokenroute-score": f"{decision.score.score:.2f}"}


def auto_model_entry(gw: Gateway) -> dict[str, object]:
    """tokenroute/auto as GET /v1/models lists it: what each tier is served by."""
    tiers = gw.auto.tiers
    windows = [m.context_length for models in tiers.values() for m in models if m.context_length]
    return {
        "id": AUTO_MODEL,
        "object": "model",
        "created": 0,
        "owned_by": "tokenroute",
        "pricing": None,  # the served model's price applies
        "context_length": max(windows, default=None),
        "tiers": {tier: [m.id for m in models] for tier, models in tiers.items()},
    }


def auto_blueprint(gw: Gateway) -> Blueprint:
    bp = Blueprint("auto", __name__, url_prefix="/v1")

    @bp.post("/route/explain")
    async def explain() -> Response:
        key = await gw.auth.authenticate(request.headers.get("authorization"))
        headers = gw.limiter.take(key)
        try:
            raw = _object(parse_json(await request.get_data()))
            body = parse_chat_request({**raw, "model": AUTO_MODEL}).body
            session = request.headers.get(SESSION_HEADER) or _user(body)
            decision = _decide(gw, key, body, session)
        except (BadRequest, NotFound) as error:
            error.headers.update(headers)
            raise
        return Response(
            orjson.dumps(decision.explain()),
            content_type="application/json",
            headers={**headers, **auto_headers(decision)},
        )

    return bp


def _decide(gw: Gateway, key: KeyRecord, body: dict[str, Any], session: str | None) -> Decision:
    if not gw.auto.enabled:
        raise NotFound(
            f"{AUTO_MODEL} has no models to route to: give models tiers in the config "
            '([models."id"] tiers = [...]) or map them in [auto.models]',
            param="model",
        )
    return gw.auto.decide(body, gw.sessions.tier(key.id, session))


def _user(body: dict[str, Any]) -> str | None:
    user = body.get("user")
    return user if isinstance(user, str) and user else None


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest("the request body must be a JSON object")
    return value
