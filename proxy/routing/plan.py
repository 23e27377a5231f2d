"""Route planning: which models a request may be served by, in order.

Pure logic. A request names its model and may carry its own fallbacks in a
`models` array (as OpenRouter does); otherwise the operator's `[routes]` table
gives them. Which failures move on to the next model is the upstream judge's call
(`proxy.upstream.judge`); a context-length error moves only to larger windows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.errors import BadRequest, NotFound
from ..core.model import CHAT, EMBEDDING, Model
from .catalog import Catalog

ROUTE_FIELDS = ("models", "route")  # ours: never sent upstream
MAX_MODELS = 8


def plan_route(
    body: dict[str, Any],
    catalog: Catalog,
    routes: Mapping[str, tuple[str, ...]],
    chosen: list[Model] | None = None,
    kind: str = CHAT,
) -> list[Model]:
    """The models to try, in order; unknown ids are a 404 naming them, models of another
    `kind` (an embedding model for a chat request, or the reverse) a 400.

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
        param = "model" if model_id == primary else "models"
        if model is None:
            raise unknown_model(model_id, param)
        if model.kind != kind:
            raise wrong_kind(model, param)
        models.append(model)
    return models


def unknown_model(model_id: str, param: str = "model") -> NotFound:
    return NotFound(
        f"the model {model_id!r} does not exist or is not enabled here; "
        "list the available models with GET /v1/models",
        param=param,
    )


def wrong_kind(model: Model, param: str = "model") -> BadRequest:
    """A chat request for an embedding model, or an embeddings request for a chat model."""
    if model.kind == EMBEDDING:
        said = f"{model.id} is an embedding model; send it to POST /v1/embeddings"
    else:
        said = (
            f"{model.id} is a chat model, not an embedding model; GET /v1/models lists the "
            'embedding models (kind "embedding")'
        )
    return BadRequest(said, param=param)


def next_candidates(models: list[Model], tried: Model, *, larger_window: bool) -> list[Model]:
    """What is left to try after `tried` failed; only larger windows after a context error."""
    rest = models[models.index(tried) + 1 :]
    if larger_window:
        size = tried.context_length or 0
        rest = [m for m in rest if (m.context_length or 0) > size]
    return rest


def strip_route_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The body without our own routing fields, as it goes upstream."""
    if "models" not in body and "route" not in body:  # ROUTE_FIELDS, on the hot path
        return body
    return {k: v for k, v in body.items() if k not in ROUTE_FIELDS}
