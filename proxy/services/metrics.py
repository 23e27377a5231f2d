"""What the gateway counts, kept in plain dicts on the event loop; exported when scraped.

prometheus-client's own `Counter` and `Histogram` take a lock on every update (a
`threading.Lock` per value, and the metric's lock in `.labels(...)` to find the child).
Every update here happens on the one event loop thread (the request path, the writer's
after-commit, the loop-lag watcher), so a `defaultdict(int)` keyed by the label values
needs no lock, and a request pays a few dictionary updates. `metrics_export` turns the
dicts into Prometheus families only when `/metrics` is scraped. One `Metrics` per app
(`build_services`), no module globals: two gateways in one process never share a counter.

A request of a model route (chat, messages, count_tokens, embeddings) is counted once:
by the meter when it settles (it ran: `settled`, with its latency, tokens and cost),
else by its surface when it ends (a refusal before the hold, or a free count:
`answered`). Label values are bounded: routes are ours; models and providers come
from the catalog (a model the client made up is `unknown`); statuses are those the
gateway answers; causes are `failure_cause`'s fixed set. Never key, user or request ids.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict

import trio

from ..core.errors import Fault, GatewayError
from ..money.metering import CLIENT_CLOSED, Outcome
from ..store import UsageRecord

UNKNOWN = "unknown"  # the model or provider label of a request that named none we serve
NO_TIER = "none"  # the tier label of a request tokenroute/auto did not route
LOOP_LAG_INTERVAL = 0.5  # seconds between two looks at the event loop's lateness

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1024)
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

RequestLabels = tuple[str, int, str, str, str]  # route, status, model, provider, tier


class Histogram:
    """Counts per bucket and a sum, per label tuple; cumulated only when exported."""

    __slots__ = ("bounds", "series")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        # labels -> [count in each bucket (le bound), count above the last bound, sum]
        self.series: dict[tuple[str, ...], list[float]] = {}

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        counts = self.series.get(labels)
        if counts is None:
            counts = self.series[labels] = [0.0] * (len(self.bounds) + 2)
        counts[bisect_left(self.bounds, value)] += 1  # the first bound >= value: `le`
        counts[-1] += value


class Metrics:
    """The counters; each method is what one event adds to them."""

    def __init__(self) -> None:
        self.requests: defaultdict[RequestLabels, int] = defaultdict(int)
        self.refusals: defaultdict[tuple[str, str], int] = defaultdict(int)  # route, reason
        self.duration = Histogram(LATENCY_BUCKETS)  # route, model
        self.ttft = Histogram(TTFT_BUCKETS)  # route, model: streams only
        self.tokens: defaultdict[tuple[str, str], int] = defaultdict(int)  # model, in|out
        self.cost: defaultdict[str, int] = defaultdict(int)  # model -> nano-USD
        self.upstream_errors: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.fallbacks: defaultdict[tuple[str, str], int] = defaultdict(int)  # upstream, cause
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.commit_seconds = Histogram(COMMIT_BUCKETS)
        self.loop_lag = Histogram(LAG_BUCKETS)

    # -- requests -----------------------------------------------------------------------
    def settled(self, outcome: Outcome, record: UsageRecord) -> None:
        """A request that ran has been settled (`Meter`'s callback): its usage row's figures."""
        model = outcome.model
        model_id, provider = (model.id, model.provider) if model else (UNKNOWN, UNKNOWN)
        route = outcome.route
        self.requests[route, record.status, model_id, provider, outcome.tier or NO_TIER] += 1
        self.duration.observe((route, model_id), (record.latency_ms or 0) / 1000)
        if outcome.stream and record.ttft_ms is not None:
            self.ttft.observe((route, model_id), record.ttft_ms / 1000)
        if model is not None:
            self.tokens[model_id, "in"] += record.tokens_in
            self.tokens[model_id, "out"] += record.tokens_out
            self.cost[model_id] += record.cost

    def answered(self, route: str, status: int | None, outcome: Outcome | None) -> None:
        """A request of a model route has ended at its surface, which answered `status`
        (None: nothing, its client went away). Counted here unless the meter counted it."""
        if outcome is not None and outcome.recorded:
            return  # it ran, and `settled` counted it with its real status
        model = outcome.model if outcome is not None else None
        model_id, provider = (model.id, model.provider) if model else (UNKNOWN, UNKNOWN)
        tier = (outcome.tier if outcome is not None else None) or NO_TIER
        status = CLIENT_CLOSED if status is None else status
        self.requests[route, status, model_id, provider, tier] += 1
        if status >= 400 and status != CLIENT_CLOSED:
            self.refusals[route, refusal_reason(status)] += 1

    # -- upstreams (callbacks of `UpstreamHealth` and `Failover`) ------------------------
    def upstream_failed(self, upstream: str, error: GatewayError) -> None:
        self.upstream_errors[upstream, failure_cause(error)] += 1

    def fell_back(self, upstream: str, error: GatewayError) -> None:
        self.fallbacks[upstream, failure_cause(error)] += 1

    # -- the store and the loop ---------------------------------------------------------
    def batch_committed(self, jobs: int, seconds: float) -> None:
        """The store's writer committed a batch (`Store`'s callback, on the event loop)."""
        self.batch_size.observe((), jobs)
        self.commit_seconds.observe((), seconds)

    async def watch_loop(self, interval: float = LOOP_LAG_INTERVAL) -> None:
        """Forever: sleep `interval`, and record how late the loop woke us. A loop kept busy
        by synchronous work (a slow callback, a large JSON body) delays every request."""
        while True:
            deadline = trio.current_time() + interval
            await trio.sleep_until(deadline)
            self.loop_lag.observe((), trio.current_time() - deadline)


def refusal_reason(status: int) -> str:
    """Why a request was answered before it ran, from its status (a fixed set)."""
    if status == 402:
        return "insufficient_balance"
    if status == 429:
        return "rate_limit"
    if status in (401, 403):
        return "authentication"
    if status < 500:
        return "invalid_request"
    return "unavailable" if status == 503 else "error"


def failure_cause(error: GatewayError) -> str:
    """What an upstream failed with, as a bounded label: whose fault first, then the kind.

    account: the operator's key or account was refused; gateway: our own limits or
    shutdown; request: the upstream (or our adapter) refused the request itself;
    rate_limited, timeout, server_error (5xx): the upstream's; connection: no HTTP
    error status at all (no connection, a broken stream, an unreadable answer);
    other: any other upstream refusal (a model it does not serve).
    """
    fault = error.fault
    if fault is not Fault.UPSTREAM:
        return fault.value  # account, gateway or request
    status = error.upstream_status
    if status == 429:
        return "rate_limited"
    if error.status == 504:
        return "timeout"
    if status is None:
        return "connection"
    return "server_error" if status >= 500 else "other"
