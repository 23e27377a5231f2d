"""The one judge of upstream health: what a failed attempt means, and what it does.

Every failure of an upstream, whether before the response started (failover moves
on) or after (a stream that broke), goes through `UpstreamHealth.failed`, so both
are judged alike: a failure that is the upstream's (429, 5xx, a refused gateway
key, no connection, no answer in time) counts against its health and moves on to
the next model; a failure caused by the request itself is returned, except that a
context-length error may move on to a model with a larger window.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import GatewayError, UpstreamUnavailable
from .cooldown import Cooldowns

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


class UpstreamHealth:
    """Cooldowns fed by the judge; upstreams are named by their model id."""

    def __init__(self, cooldowns: Cooldowns) -> None:
        self.cooldowns = cooldowns

    def available(self, upstream: str) -> bool:
        return self.cooldowns.available(upstream)

    def failed(self, upstream: str, error: GatewayError) -> Verdict:
        """An attempt failed: judge it, and count it against the upstream if it is its fault."""
        verdict = judge(error)
        if verdict.cool:
            self.cooldowns.failed(
                upstream,
                error.message,
                retry_after=verdict.retry_after,
                account_problem=verdict.account,
            )
        else:
            self.cooldowns.release(upstream)
        return verdict

    def succeeded(self, upstream: str) -> None:
        self.cooldowns.succeeded(upstream)

    def released(self, upstream: str) -> None:
        """An attempt ended without a verdict (the client left): free its probe."""
        self.cooldowns.release(upstream)

    def ended(self, upstream: str, error: GatewayError | None, *, finished: bool) -> None:
        """A stream that began has ended: its outcome is a verdict on the upstream."""
        if error is not None:
            self.failed(upstream, error)
        elif finished:
            self.succeeded(upstream)
        else:
            self.released(upstream)

    def states(self) -> dict[str, dict[str, object]]:
        return self.cooldowns.states()


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
