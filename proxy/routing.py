"""Route planning: which models a request may be served by, and which failures move on.

Pure logic. A request names its model and may carry its own fallbacks in a
`models` array (as OpenRouter does); otherwise the operator's `[routes]` table
gives them. A failure moves on to the next model when it is the upstream's
(429, 5xx, a refused gateway key, no connection, no answer in time) and only
before anything reached the client; a failure caused by the request itself is
returned, except that a context-length error may move on to a model with a
larger context window.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .catalog import Catalog, Model
from .errors import BadRequest, GatewayError, NotFound, UpstreamUnavailable

ROUTE_FIELDS = ("models", "route")  # ours: never sent upstream
MAX_MODELS = 8
_CONTEXT_WORDS = (
    "context length",
    "context_length",
    "context window",
    "too long",
    "maximum context",
)
_ACCOUNT_WORDS = (
    "insufficient_quota",
    "credit balance",
    "billing",
    "exceeded your current quota",
    "api key not valid",  # Google answers a bad key with 400
    "api_key_invalid",
)


@dataclass(frozen=True, slots=True)
class Verdict:
    move_on: bool  # try the next model
    cool: bool  # count it against the upstream's health
    account: bool = False  # the upstream's account or key: cool down for long
    context: bool = False  # the prompt did not fit this model
    retry_after: float | None = None


def plan_route(
    body: dict[str, Any],
    catalog: Catalog,
    routes: Mapping[str, tuple[str, ...]],
    chosen: list[Model] | None = None,
) -> list[Model]:
    """The models to try, in order; unknown ids are a 404 naming them.

    `chosen` is the route tokenroute/auto picked for the request's model; the
    request's own `models` still follow it.
    """
    primary = body["model"]
    extra = body.get("models")
    if extra is not None:
        if not isinstance(extra, list) or not all(isinstance(m, str) for m in extra):
            raise BadRequest("'models' must be an array of model ids", param="models")
        if len(extra) >= MAX_MODELS:
            raise BadRequest(f"at most {MAX_MODELS} models can be tried", param="models")
    if chosen is not None:
        ids = [m.id for m in chosen] + list(extra or ())
    elif extra is not None:
        ids = [primary, *extra]
    else:
        ids = [primary, *routes.get(primary, ())]
    if extra is not None:  # the request's own fallbacks always get their turn
        ids = [*ids[: MAX_MODELS - len(extra)], *extra]
    ids = list(dict.fromkeys(ids))[:MAX_MODELS]
    models = []
    for model_id in ids:
        model = catalog.get(model_id)
        if model is None:
            raise NotFound(
                f"the model {model_id!r} does not exist or is not enabled here; "
                "list the available models with GET /v1/models",
                param="model" if model_id == primary else "models",
            )
        models.append(model)
    return models


def judge(error: GatewayError) -> Verdict:
    """What a failed attempt means for the route and for the upstream's health."""
    status = error.upstream_status
    message = error.message.lower()
    retry_after = _seconds(error.headers.get("Retry-After"))
    if status is None:  # no answer: connection, timeout, or our own pool was full
        return Verdict(move_on=True, cool=not isinstance(error, UpstreamUnavailable))
    if status in (401, 402, 403) or any(w in message for w in _ACCOUNT_WORDS):
        return Verdict(move_on=True, cool=True, account=True)
    if status == 429 or status >= 500:
        return Verdict(move_on=True, cool=True, retry_after=retry_after if status == 429 else None)
    if status == 404:  # the provider does not serve a model the catalog lists
        return Verdict(move_on=True, cool=True)
    if any(w in message for w in _CONTEXT_WORDS):
        return Verdict(move_on=True, cool=False, context=True)
    return Verdict(move_on=False, cool=False)


def next_candidates(models: list[Model], tried: Model, verdict: Verdict) -> list[Model]:
    """What is left to try after `tried` failed."""
    rest = models[models.index(tried) + 1 :]
    if verdict.context:  # only a larger window can help
        size = tried.context_length or 0
        rest = [m for m in rest if (m.context_length or 0) > size]
    return rest


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
