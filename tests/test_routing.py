"""Which failures move on, and how an upstream cools down and comes back (fake clock)."""

from __future__ import annotations

import orjson

from proxy.core.config import Settings
from proxy.core.errors import BadRequest, Fault, GatewayError, UpstreamError, UpstreamUnavailable
from proxy.providers.openai import OpenAIAdapter
from proxy.upstream.cooldown import Cooldowns
from proxy.upstream.health import judge

OPENAI = OpenAIAdapter("openai")


def failure(
    status: int, message: str = "", retry_after: str | None = None, code: str | None = None
) -> GatewayError:
    """The error for an OpenAI-style error answer, as the relay makes it."""
    body = orjson.dumps({"error": {"message": message, "type": code, "code": code}})
    return OPENAI.error(status, body, retry_after)


def test_judging_failures() -> None:
    assert judge(failure(429, "slow down", "7")).retry_after == 7
    assert judge(failure(529)).move_on and judge(failure(529)).cool
    assert judge(failure(401)).account and judge(failure(402)).account
    assert judge(failure(429, "You exceeded your current quota", code="insufficient_quota")).account
    bad = judge(failure(400, "temperature must be <= 2"))
    assert not bad.move_on and not bad.cool
    context = judge(failure(400, "prompt is too long: 250000 tokens > 200000 maximum"))
    assert context.move_on and context.context and not context.cool
    assert judge(UpstreamError("cannot connect")).cool  # no answer at all
    assert not judge(UpstreamUnavailable("our own pool is full", fault=Fault.GATEWAY)).cool


def test_a_request_cannot_cool_an_upstream_down() -> None:
    """What a client sends can get any words echoed back: words never judge the upstream."""
    echoed = failure(400, "Unrecognized request argument supplied: billing")
    assert judge(echoed) == judge(failure(400, "temperature must be <= 2"))
    assert not judge(failure(400, "you exceeded your current quota of credit balance")).cool
    too_large = "Request too large for gpt-4o in organization org-x on tokens per min (TPM)"
    assert not judge(failure(429, too_large)).cool
    ours = judge(BadRequest("'tools[0]' must be a function tool with a name"))
    assert ours.move_on and not ours.cool  # another provider's adapter may take it


def test_cooling_probing_and_recovery() -> None:
    now = [0.0]
    cool = Cooldowns(Settings(), clock=lambda: now[0])
    for _ in range(2):
        cool.failed("p/m", "500")
    assert cool.available("p/m")  # two failures: still in service
    cool.failed("p/m", "500")
    assert not cool.available("p/m") and cool.states()["p/m"]["state"] == "cooling"
    now[0] += 30.5
    assert cool.available("p/m")  # one probe goes through...
    assert not cool.available("p/m")  # ...and only one
    cool.failed("p/m", "500 again")  # the probe failed: cooling again at once
    assert not cool.available("p/m")
    now[0] += 31
    assert cool.available("p/m")
    cool.succeeded("p/m")
    assert cool.available("p/m") and cool.states()["p/m"]["state"] == "healthy"


def test_retry_after_and_account_problems_set_the_period() -> None:
    now = [0.0]
    cool = Cooldowns(Settings(), clock=lambda: now[0])
    cool.failed("a/m", "429", retry_after=5)
    cool.failed("b/m", "401", account_problem=True)
    now[0] += 6
    assert cool.available("a/m")
    assert not cool.available("b/m") and 590 < cool.retry_in("b/m") <= 594
    cool.release("a/m")  # a probe without a verdict frees the slot for the next one
    assert cool.available("a/m")
