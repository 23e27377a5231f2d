"""The one judge of upstream health: what a failed attempt means, and what it does.

Every failure of an upstream, whether before the response started (failover moves
on) or after (a stream that broke), goes through `UpstreamHealth.failed`, so both
are judged alike: a failure that is the upstream's (429, 5xx, a refused gateway
key, no connection, no answer in time) counts against its health and moves on to
the next model; a failure caused by the request itself is returned, except that a
context-length error may move on to a model with a larger window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..core.errors import Fault, GatewayError
from .cooldown import Cooldowns

# A request over a model's window moves on to a larger one; this touches nothing shared.
_CONTEXT_WORDS = (
    "context length",
    "context_length",
    "context window",
    "too long",
    "maximum context",
)


@dataclass(frozen=True, slots=True)
class Verdict:
    move_on: bool  # try the next model
    cool: bool  # count it against the upstream's health
    account: bool = False  # the upstream's account or key: cool down for long
    context: bool = False  # the prompt did not fit this model
    retry_after: float | None = None


def judge(error: GatewayError) -> Verdict:
    """What a failed attempt means for the route and for the upstream's health.

    Only the upstream's own failures (no answer, 5xx, its rate limits, a refused key
    or account, a model it does not serve) count against its health, which every key
    shares. A failure caused by the request (our own validation, an upstream's 400
    about the request) changes nothing shared: it moves on only to a model that may
    take the same request (another adapter, a larger window).
    """
    fault = error.fault
    if fault is Fault.ACCOUNT:
        return Verdict(move_on=True, cool=True, account=True)
    if fault is Fault.UPSTREAM:
        retry_after = error.headers.get("Retry-After") if error.upstream_status == 429 else None
        return Verdict(move_on=True, cool=True, retry_after=_seconds(retry_after))
    if fault is Fault.GATEWAY:
        return Verdict(move_on=True, cool=False)
    if error.upstream_status is None:  # our adapter refused it: another provider's may not
        return Verdict(move_on=True, cool=False)
    message = error.message.lower()
    if any(w in message for w in _CONTEXT_WORDS):
        return Verdict(move_on=True, cool=False, context=True)
    return Verdict(move_on=False, cool=False)


OnFailure = Callable[[str, GatewayError], None]  # (upstream, what it failed with)


class UpstreamHealth:
    """Cooldowns fed by the judge; upstreams are named by their model id."""

    def __init__(self, cooldowns: Cooldowns, on_failure: OnFailure | None = None) -> None:
        self.cooldowns = cooldowns
        self._on_failure = on_failure  # the metrics: every failure, whoever's fault it is

    def available(self, upstream: str) -> bool:
        return self.cooldowns.available(upstream)

    def failed(self, upstream: str, error: GatewayError) -> Verdict:
        """An attempt failed: judge it, and count it against the upstream if it is its fault."""
        if self._on_failure is not None:
            self._on_failure(upstream, error)
        verdict = judge(error)
        if verdict.cool:
            self.cooldowns.failed(
                upstream,
                error.detail or error.message,
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

    def states(self, *, details: bool = False) -> dict[str, dict[str, object]]:
        return self.cooldowns.states(details=details)


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
