"""tokenroute/auto's choices: the same conversation across tiers, under hard constraints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proxy.core.config import load_settings
from proxy.core.config_models import AutoSettings
from proxy.core.errors import BadRequest, ConfigError
from proxy.routing.autoroute import AutoRouter, tier_models
from proxy.routing.catalog import build_catalog
from proxy.routing.sessions import Sessions
from tests.auto_helpers import PROOF, QUESTION, ask, settings_for


@pytest.fixture
def router(tmp_path: Path) -> AutoRouter:
    settings = settings_for(tmp_path)
    return AutoRouter(build_catalog(settings), settings.auto)


def test_default_mapping_is_the_cheapest_able_models_per_tier(router: AutoRouter) -> None:
    tiers = {tier: [m.id.split("/")[1] for m in models] for tier, models in router.tiers.items()}
    assert tiers == {
        "SIMPLE": ["nano", "mini", "seer"],
        "MEDIUM": ["mini", "seer"],
        "COMPLEX": ["large", "wide"],
        "REASONING": ["thinker", "thinker-tools"],
    }


def test_the_same_conversation_under_each_constraint(router: AutoRouter) -> None:
    def pick(body: dict[str, Any]) -> tuple[str, str]:
        decision = router.decide(body)
        return decision.tier, decision.models[0].id.split("/")[1]

    assert pick(ask(QUESTION)) == ("SIMPLE", "nano")
    assert pick(ask(QUESTION, tools=True)) == ("SIMPLE", "mini")  # nano has no tools
    assert pick(ask(QUESTION, image=True)) == ("SIMPLE", "seer")  # the only SIMPLE vision model
    # ~24k tokens pasted before the same question: over every SIMPLE and MEDIUM window
    pasted = "Paris is lovely in the spring and the museums are open late. " * 1_600
    long = router.decide(ask(pasted + QUESTION))
    assert long.score.tier in ("SIMPLE", "MEDIUM") and long.tier == "COMPLEX"
    assert long.models[0].id == "local/large"
    assert all((m.context_length or 0) >= long.needs.tokens for m in long.models)
    assert any("moved from" in note and "tokens" in note for note in long.notes)
    huge = router.decide(ask(pasted * 10 + QUESTION))  # ~240k tokens
    assert [m.id for m in huge.models] == ["local/wide"]
    # a reasoning prompt goes to the reasoning tier, and with tools to its tool-capable model
    assert pick(ask(PROOF)) == ("REASONING", "thinker")
    assert pick(ask(PROOF, tools=True)) == ("REASONING", "thinker-tools")
    assert pick(ask(PROOF, image=True)) == ("REASONING", "thinker-tools")
    # the request's own bounds: capped, or lifted
    assert pick(ask(PROOF, route={"max_tier": "medium"})) == ("MEDIUM", "mini")
    assert pick(ask(QUESTION, route={"min_tier": "COMPLEX"})) == ("COMPLEX", "large")
    # a completion that does not fit beside the prompt moves up too
    assert pick(ask(QUESTION, max_tokens=20_000)) == ("SIMPLE", "mini")


def test_when_nothing_can_take_the_request_it_says_why(router: AutoRouter) -> None:
    pasted = "word " * 1_200_000  # ~1.2M tokens: over every window
    with pytest.raises(BadRequest) as caught:
        router.decide(ask(pasted + QUESTION, image=True))
    assert "images" in caught.value.message and "tokens of context" in caught.value.message
    with pytest.raises(BadRequest, match=r"route\.max_tier must be one of"):
        router.decide(ask(QUESTION, route={"max_tier": "HUGE"}))
    with pytest.raises(BadRequest, match="min_tier is above"):
        router.decide(ask(QUESTION, route={"min_tier": "REASONING", "max_tier": "SIMPLE"}))


def test_a_session_never_drops_below_its_last_tier(router: AutoRouter) -> None:
    now = [0.0]
    sessions = Sessions(60, clock=lambda: now[0])
    first = router.decide(ask(PROOF), sessions.tier("k1", "s"))
    sessions.remember("k1", "s", first.tier)
    follow_up = router.decide(ask("thanks!"), sessions.tier("k1", "s"))
    assert (first.tier, follow_up.tier) == ("REASONING", "REASONING")
    assert follow_up.score.tier == "SIMPLE" and "session" in follow_up.notes[0]
    assert sessions.tier("k2", "s") is None  # another key's session of the same name
    sessions.remember("k1", "s", follow_up.tier)
    now[0] += 59
    assert sessions.tier("k1", "s") == "REASONING"  # each request renews the hold
    now[0] += 61
    assert sessions.tier("k1", "s") is None
    assert router.decide(ask("thanks!"), sessions.tier("k1", "s")).tier == "SIMPLE"


def test_the_operators_mapping_wins_and_is_checked(tmp_path: Path) -> None:
    extra = (
        '[auto.models]\nsimple = "local/seer"\nREASONING = ["local/thinker-tools", "local/large"]\n'
    )
    settings = settings_for(tmp_path, extra)
    tiers = tier_models(build_catalog(settings), settings.auto)
    assert [m.id for m in tiers["SIMPLE"]] == ["local/seer"]
    assert [m.id for m in tiers["REASONING"]] == ["local/thinker-tools", "local/large"]
    assert [m.id for m in tiers["MEDIUM"]] == ["local/mini", "local/seer"]  # not named: default
    wrong = AutoSettings(models={"SIMPLE": ("local/nope",)})
    with pytest.raises(ConfigError, match="'local/nope' is not an enabled model"):
        tier_models(build_catalog(settings), wrong)


def test_bad_auto_settings_are_one_line(tmp_path: Path) -> None:
    for extra, says in [
        ('[auto.models]\nHARD = "local/nano"\n', "not a tier"),
        ("[auto.models]\nSIMPLE = [1]\n", "'provider/model' id"),
        ("[auto]\nsession_seconds = -1\n", "session_seconds"),
        ('[auto]\nscoring = "missing.toml"\n', "cannot read"),
        ('[models."local/extra"]\ntiers = ["EASY"]\n', "'EASY' is not a tier"),
    ]:
        with pytest.raises(ConfigError, match=says) as caught:
            settings_for(tmp_path, extra)
        assert "\n" not in str(caught.value)


def test_builtin_models_carry_capabilities(tmp_path: Path) -> None:
    env = {"OPENAI_API_KEY": "k", "DEEPSEEK_API_KEY": "k"}
    settings = load_settings(env, None, {"db_path": tmp_path / "gw.db"})
    catalog = build_catalog(settings)
    reasoner, mini = catalog.get("deepseek/deepseek-reasoner"), catalog.get("openai/gpt-4o-mini")
    assert reasoner and mini
    assert reasoner.tiers == {"REASONING"} and not reasoner.tools and not reasoner.vision
    assert "SIMPLE" in mini.tiers and mini.tools and mini.vision
    tiers = tier_models(catalog, settings.auto)
    for tier, models in tiers.items():  # cheapest first, each able to serve the tier
        assert models and all(tier in m.tiers for m in models)
        rates = [m.blended_rate() for m in models]
        assert rates == sorted(rates)
        cheaper = [m for m in catalog.listed() if tier in m.tiers and m not in models]
        assert all(m.blended_rate() >= rates[-1] for m in cheaper)
