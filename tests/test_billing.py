"""The hold and completion limit for a request: pure money arithmetic."""

from __future__ import annotations

import pytest

from proxy.core.chat import choices, requested_limit
from proxy.core.errors import BadRequest, InsufficientQuota
from proxy.core.model import Model, Price, Rates
from proxy.money.budget import plan

# $1 / $4 per 1M tokens: 1,000 / 4,000 pico-USD a token = 1 / 4 units a token
MODEL = Model("p/m", "p", "m", Price(Rates(input=1_000, output=4_000)), 100_000)
TIERED = Model(
    "p/t", "p", "t", Price(Rates(1_000, 4_000), tiers=((200, Rates(2_000, 8_000)),)), 100_000
)


def budget(model: Model = MODEL, available: int = 10**9, **kw: int | None):  # type: ignore[no-untyped-def]
    args = {"prompt_tokens": 100, "requested": None, "n": 1, "default_cap": 1_000}
    args.update(kw)
    return plan(model, available, min_completion=16, **args)  # type: ignore[arg-type]


def test_ample_balance_holds_prompt_and_cap_and_sends_no_limit() -> None:
    b = budget()
    prompt = 100 + 10 + 16  # estimate + 10 % + 16 tokens of margin
    assert b.hold == prompt * 1 + 1_000 * 4 and b.completion_limit is None


def test_the_clients_own_limit_sizes_the_hold() -> None:
    b = budget(requested=50)
    assert b.hold == 126 + 50 * 4 and b.completion_limit is None


def test_a_short_balance_lowers_the_limit_to_what_it_pays_for() -> None:
    b = budget(available=126 + 4 * 300 + 3, requested=5_000)
    assert b.completion_limit == 300 and b.hold == 126 + 1_200


def test_no_limit_asked_and_short_balance_sends_one() -> None:
    assert budget(available=126 + 4 * 999).completion_limit == 999


def test_n_choices_multiply_the_completion() -> None:
    b = budget(n=3, requested=100)
    assert b.hold == 126 + 3 * 100 * 4
    assert budget(n=4, available=126 + 4 * 400, requested=500).completion_limit == 100


def test_too_little_for_prompt_plus_minimal_answer_is_402() -> None:
    with pytest.raises(InsufficientQuota) as caught:
        budget(available=126 + 4 * 15)
    assert "0.000000186" in caught.value.message  # the balance, in USD
    assert "16 completion tokens" in caught.value.message
    budget(available=126 + 4 * 16)  # exactly enough: allowed


def test_a_request_asking_for_fewer_than_the_minimum_needs_only_those() -> None:
    assert budget(available=126 + 4 * 2, requested=2).completion_limit is None


def test_a_long_prompt_uses_its_price_tier() -> None:
    b = budget(TIERED, prompt_tokens=200, requested=10)  # 236 tokens with margin: tier 2
    assert b.hold == 236 * 2 + 10 * 8


def test_limits_in_the_body_are_checked() -> None:
    assert requested_limit({"max_tokens": 5}) == 5
    assert requested_limit({"max_completion_tokens": 7, "max_tokens": 5}) == 7
    assert requested_limit({}) is None
    for bad in (0, -1, "10", True, 1.5):
        with pytest.raises(BadRequest):
            requested_limit({"max_tokens": bad})
    assert choices({}) == 1 and choices({"n": 4}) == 4
    with pytest.raises(BadRequest):
        choices({"n": 0})
