"""`tokenroute/auto`: from a complexity score to the models that serve the request.

Pure logic. Each tier maps to an ordered list of models: the operator's
`[auto.models]`, or else every enabled model marked able to serve the tier,
cheapest first. The score picks the tier; the request's `route` bounds and the
session's last tier move it; hard constraints win over both: a request with tools
goes only to models with tools, one with images only to vision models, and the
prompt plus the answer must fit the model's window. When no model of the tier
can take the request, the next tier up is tried, then the ones below.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from ..core.chat import requested_limit
from ..core.config_models import AUTO_TIERS, AutoSettings
from ..core.errors import BadRequest, ConfigError
from ..core.model import AUTO_MODEL, CHAT, Model
from .catalog import Catalog
from .scoring import Score, Scorer

__all__ = ["AUTO_MODEL", "AutoRouter", "Decision", "Needs", "builtin_scoring", "tier_models"]
DEFAULT_ROUTE_LENGTH = 4  # models tried per tier when the operator names none


@dataclass(frozen=True, slots=True)
class Needs:
    """What a model must offer to take the request."""

    tools: bool
    vision: bool
    tokens: int  # the prompt (a generous estimate) plus room for the answer

    def unmet(self, model: Model) -> list[str]:
        missing = []
        if self.tools and not model.tools:
            missing.append("tools")
        if self.vision and not model.vision:
            missing.append("vision")
        if model.context_length is not None and model.context_length < self.tokens:
            missing.append("context")
        return missing

    def as_json(self) -> dict[str, object]:
        return {"tools": self.tools, "vision": self.vision, "context_tokens": self.tokens}


@dataclass(frozen=True, slots=True)
class Decision:
    score: Score
    tier: str  # the tier served, after bounds, the session and constraints
    models: list[Model]  # the route: the pick first, then its fallbacks
    needs: Needs
    notes: tuple[str, ...]  # why the tier differs from the score's, in order

    def explain(self) -> dict[str, object]:
        """The body of POST /v1/route/explain."""
        return {
            "tier": self.tier,
            "score": self.score.score,
            "scored_tier": self.score.tier,
            "reasoning_score": self.score.reasoning,
            "signals": [s.as_json() for s in self.score.signals],
            "model": self.models[0].id,
            "candidates": [m.id for m in self.models],
            "needs": self.needs.as_json(),
            "notes": list(self.notes),
        }


class AutoRouter:
    def __init__(self, catalog: Catalog, settings: AutoSettings) -> None:
        data = settings.scoring if settings.scoring is not None else builtin_scoring()
        self.scorer = Scorer.from_data(data, settings.scoring_source)
        self._settings = settings
        self.tiers = tier_models(catalog, settings)

    @property
    def enabled(self) -> bool:
        return any(self.tiers.values())

    def decide(self, body: dict[str, Any], session_tier: str | None = None) -> Decision:
        """Score the request and choose its route; a request no model can take is a 400."""
        requested = requested_limit(body)
        score = self.scorer.score(body)
        low, high = _bounds(body.get("route"))
        notes = []
        tier = AUTO_TIERS.index(score.tier)
        if session_tier is not None and AUTO_TIERS.index(session_tier) > tier:
            tier = AUTO_TIERS.index(session_tier)
            notes.append(f"raised to {session_tier}: the session's last request was served there")
        if not low <= tier <= high:
            tier = min(max(tier, low), high)
            notes.append(f"bounded to {AUTO_TIERS[tier]} by the request's route")
        reserve = requested or self._settings.completion_reserve  # per choice: each has its window
        # UTF-8 bytes / 3 overestimates tokens for most text: a window chosen by it fits.
        needs = Needs(score.tools, score.images > 0, score.prompt_tokens * 4 // 3 + reserve)
        order = [tier, *range(tier + 1, high + 1), *range(tier - 1, low - 1, -1)]
        for index in order:
            models = [m for m in self.tiers[AUTO_TIERS[index]] if not needs.unmet(m)]
            if models:
                if index != tier:
                    notes.append(self._moved(AUTO_TIERS[tier], AUTO_TIERS[index], needs))
                return Decision(score, AUTO_TIERS[index], models, needs, tuple(notes))
        raise BadRequest(_nothing_fits(needs, AUTO_TIERS[low], AUTO_TIERS[high]), param="model")

    def _moved(self, wanted: str, served: str, needs: Needs) -> str:
        models = self.tiers[wanted]
        if not models:
            return f"moved from {wanted} to {served}: no model is mapped to {wanted}"
        lacking = sorted({need for m in models for need in needs.unmet(m)})
        said = {"tools": "tools", "vision": "images", "context": f"~{needs.tokens} tokens"}
        return f"moved from {wanted} to {served}: no {wanted} model takes " + " and ".join(
            said[n] for n in lacking
        )


def tier_models(catalog: Catalog, settings: AutoSettings) -> dict[str, list[Model]]:
    """Each tier's models in the order they are tried."""
    listed = sorted(catalog.listed(), key=lambda m: (m.blended_rate(), m.id))
    out = {}
    for tier in AUTO_TIERS:
        named = settings.models.get(tier)
        if named is None:
            able = [m for m in listed if tier in m.tiers and m.kind == CHAT]
            out[tier] = able[:DEFAULT_ROUTE_LENGTH]
            continue
        models = []
        for model_id in named:
            model = catalog.get(model_id)
            if model is None or model.kind != CHAT:
                what = "an enabled model" if model is None else "a chat model"
                raise ConfigError(f"config [auto.models] {tier}: {model_id!r} is not {what}")
            models.append(model)
        out[tier] = models
    return out


def builtin_scoring() -> dict[str, Any]:
    text = resources.files("proxy.data").joinpath("scoring.toml").read_text("utf-8")
    return tomllib.loads(text)


def _bounds(route: Any) -> tuple[int, int]:
    if route is None:
        return 0, len(AUTO_TIERS) - 1
    if not isinstance(route, dict):
        raise BadRequest("'route' must be an object with min_tier and/or max_tier", param="route")
    found = []
    for field, default in (("min_tier", 0), ("max_tier", len(AUTO_TIERS) - 1)):
        value = route.get(field)
        if value is None:
            found.append(default)
        elif isinstance(value, str) and value.upper() in AUTO_TIERS:
            found.append(AUTO_TIERS.index(value.upper()))
        else:
            raise BadRequest(
                f"route.{field} must be one of {', '.join(AUTO_TIERS)}", param=f"route.{field}"
            )
    low, high = found
    if low > high:
        raise BadRequest("route.min_tier is above route.max_tier", param="route")
    return low, high


def _nothing_fits(needs: Needs, low: str, high: str) -> str:
    wants = [w for w, on in (("tools", needs.tools), ("images", needs.vision)) if on]
    wants.append(f"about {needs.tokens} tokens of context")
    return (
        f"no model for {AUTO_MODEL} between {low} and {high} takes this request: "
        f"it needs {', '.join(wants)}; name a model, or shorten the conversation"
    )
