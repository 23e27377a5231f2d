"""Upstream health: an upstream (provider + model) that keeps failing is skipped for a while.

`cooldown_failures` failures within `cooldown_window_seconds` cool an upstream
down for `cooldown_seconds`; one 429 with `Retry-After` is enough (for that
long); an upstream whose account is out of credit or whose key is refused cools
down for `cooldown_long_seconds`. When the period ends, the next request probes
it: one request at a time goes through until one succeeds (healthy again) or
fails (cooling again). Times are on trio's clock, so tests run on a MockClock.

With several processes the verdict is shared (`SharedVerdicts`: the workers' table or
Redis, in `time.monotonic()` seconds, converted here): an upstream cooled by one process
is skipped by the others, and a success seen by any ends its cooldown for all. Failure
counts and probes stay each process's own.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import trio

from ..core.config import Settings
from ..core.logs import event

log = logging.getLogger("tokenroute.upstreams")
MAX_RETRY_AFTER = 3600.0  # seconds: an upstream cannot park itself longer than this


class SharedVerdicts(Protocol):
    """Cooldown verdicts other processes see; times on `time.monotonic()`."""

    def cooling_until(self, upstream: str) -> float: ...  # 0.0: healthy; may be past
    def cool(self, upstream: str, until: float) -> None: ...
    def clear(self, upstream: str) -> None: ...


@dataclass(slots=True)
class _Health:
    failures: deque[float] = field(default_factory=deque)
    cooling_until: float = 0.0
    probing: bool = False
    last_error: str | None = None
    successes: int = 0
    total_failures: int = 0


class Cooldowns:
    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float] = trio.current_time,
        shared: SharedVerdicts | None = None,
    ):
        self._settings = settings
        self._clock = clock
        self._shared = shared
        self._health: dict[str, _Health] = {}

    def available(self, upstream: str) -> bool:
        """Whether to try this upstream now; a cooled one past its period takes one probe."""
        health = self._sync(upstream)
        if health is None or health.cooling_until == 0.0:
            return True
        if self._clock() < health.cooling_until or health.probing:
            return False
        health.probing = True
        log.info("upstream %s: cooling period over, probing", upstream,
                 extra=event("upstream", upstream=upstream, state="probing"))  # fmt: skip
        return True

    def retry_in(self, upstream: str) -> float:
        health = self._health.get(upstream)
        return max(0.0, health.cooling_until - self._clock()) if health else 0.0

    def succeeded(self, upstream: str) -> None:
        health = self._sync(upstream)
        if health is None:
            return
        health.successes += 1
        if health.cooling_until or health.failures:
            if health.cooling_until:
                log.info("upstream %s: healthy again", upstream,
                         extra=event("upstream", upstream=upstream, state="healthy"))  # fmt: skip
                if self._shared is not None:
                    self._shared.clear(upstream)
            health.cooling_until, health.probing = 0.0, False
            health.failures.clear()

    def release(self, upstream: str) -> None:
        """A probe that ended without a verdict (the client left, the request was bad)."""
        health = self._health.get(upstream)
        if health is not None:
            health.probing = False

    def failed(
        self,
        upstream: str,
        reason: str,
        *,
        retry_after: float | None = None,
        account_problem: bool = False,
    ) -> None:
        """Count a failure that is the upstream's, not the request's."""
        s = self._settings
        now = self._clock()
        health = self._health.setdefault(upstream, _Health())
        health.total_failures += 1
        health.last_error = reason
        window = health.failures
        window.append(now)
        while window and window[0] < now - s.cooldown_window_seconds:
            window.popleft()
        period = None
        if account_problem:
            period = s.cooldown_long_seconds
        elif retry_after is not None:
            period = min(max(retry_after, 1.0), MAX_RETRY_AFTER)
        elif health.probing or len(window) >= s.cooldown_failures:
            period = s.cooldown_seconds
        health.probing = False
        if period is not None:
            health.cooling_until = now + period
            window.clear()
            if self._shared is not None:
                self._shared.cool(upstream, time.monotonic() + period)
            log.warning("upstream %s: cooling down for %.0f s after %s", upstream, period, reason,
                        extra=event("upstream", upstream=upstream, state="cooling",
                                    seconds=round(period), reason=reason))  # fmt: skip

    def states(self, *, details: bool = False) -> dict[str, dict[str, object]]:
        """Each upstream seen so far, for /readyz; its last error only for the operator
        (`details`): an upstream's words can name the operator's account."""
        for upstream in list(self._health):
            self._sync(upstream)
        now = self._clock()
        out: dict[str, dict[str, object]] = {}
        for upstream, health in sorted(self._health.items()):
            cooling = health.cooling_until > now
            state: dict[str, object] = {
                "state": "cooling" if cooling else "probing" if health.probing else "healthy",
                "retry_in_seconds": round(health.cooling_until - now, 1) if cooling else 0,
                "recent_failures": len(health.failures),
            }
            if details:
                state["last_error"] = health.last_error
            out[upstream] = state
        return out

    def _sync(self, upstream: str) -> _Health | None:
        """The upstream's health here, with the shared verdict taken in: cooling until
        when (set by any process), or healthy again (a success anywhere)."""
        health = self._health.get(upstream)
        if self._shared is None:
            return health
        until = self._shared.cooling_until(upstream)
        if not until:
            if health is not None and health.cooling_until:
                log.info("upstream %s: healthy again (seen by another process)", upstream,
                         extra=event("upstream", upstream=upstream, state="healthy"))  # fmt: skip
                health.cooling_until, health.probing = 0.0, False
                health.failures.clear()
            return health
        if health is None:
            health = self._health[upstream] = _Health()
        health.cooling_until = self._clock() + (until - time.monotonic())
        return health
