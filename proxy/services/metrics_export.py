"""`/metrics`: the counters of `Metrics`, and the live state of the parts, in Prometheus format.

The only user of prometheus-client. Nothing here runs on the request path: a custom
collector reads the recorder's dicts, and the gauges straight from their owners (the
store's queue, the upstreams' cooldowns, the open streams), when a scrape asks; the
process and Python collectors add memory, CPU and garbage collection. Each app has its
own `CollectorRegistry`.

Workers (`serve --workers N`) each hold their own counters, and prometheus-client's
multiprocess mode only sees its own value classes; so the worker a scrape lands on reads
its siblings' expositions (`metrics_peers`) and answers the sum: every sample of the same
name and labels added up, counters, histograms' buckets, sums and counts, and the gauges
that are amounts (queue depth, open streams, memory). The gauges that are states take the
largest value instead (an upstream cooling in any worker, a failing store), and a
process's start time the earliest; `tokenroute_workers_scraped` says how many workers
answered. Counters and histograms are the sums `metrics_carry` keeps, so they never fall
when a worker restarts or is late.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import trio
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.parser import text_string_to_metric_families

from ..access.internal import internal_secret_matches
from ..core.errors import AuthenticationFailed, NotFound
from ..store import Store
from ..upstream.health import UpstreamHealth
from .metrics import Histogram, Metrics
from .metrics_carry import CarriedCounts, Counts

UPSTREAM_STATES = ("healthy", "cooling", "probing")
CARRIED_TYPES = frozenset({"counter", "histogram", "summary"})  # kept past a worker
# Across workers a sample is summed, except these: states, not amounts.
MERGED_BY: dict[str, Callable[[float, float], float]] = {
    "tokenroute_upstream_state": max,
    "tokenroute_upstream_cooldown_remaining_seconds": max,
    "tokenroute_store_failing": max,
    "process_start_time_seconds": min,
    "process_max_fds": max,
    "python_info": max,
}


@dataclass(frozen=True)
class Siblings:
    """A worker's view of the others: their (pid, exposition) by worker index, and the
    counts that outlive each of them."""

    index: int
    gather: Callable[[], Awaitable[dict[int, tuple[int, bytes]]]]
    carried: CarriedCounts


class MetricsExport:
    """What `GET /metrics` answers, and who may read it on the main port."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        secret: str | None,
        store: Store,
        health: UpstreamHealth,
        open_streams: Callable[[], int],
        siblings: Siblings | None = None,
    ) -> None:
        """`siblings`: the other workers (None: this process is alone)."""
        self._secret = secret
        self._siblings = siblings
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(metrics, store, health, open_streams))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.listening: list[str] = []  # the `[metrics] listen` addresses, once bound

    def check(self, given: str | None) -> None:
        """On the main port: 404 when no internal secret is set, 401 unless `given` is it."""
        if self._secret is None:
            raise NotFound(
                "/metrics needs the internal secret: set TOKENROUTE_INTERNAL_SECRET and send "
                "it in X-Internal-Secret, or serve metrics on [metrics] listen"
            )
        if not internal_secret_matches(self._secret, given):
            raise AuthenticationFailed("send the internal secret in X-Internal-Secret")

    async def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """(body, content type): the whole gateway's, in the text format the scraper asks
        for in `Accept`."""
        encode, content_type = choose_encoder(accept or "")
        if self._siblings is None:
            return encode(self.registry), content_type
        others = await self._siblings.gather()
        workers = {i: (pid, list(text_string_to_metric_families(text.decode())))
                   for i, (pid, text) in others.items()}  # fmt: skip
        workers[self._siblings.index] = (os.getpid(), list(self.registry.collect()))
        seen = {index: (pid, counts_of(families)) for index, (pid, families) in workers.items()}
        total = await trio.to_thread.run_sync(self._siblings.carried.update, seen)
        families = merged([families for _, families in workers.values()], as_metrics(total))
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Merged(families))
        return encode(registry), content_type

    def own(self) -> bytes:
        """This process's exposition alone, in the text format (what a sibling reads)."""
        return generate_latest(self.registry)


def merged(workers: list[list[Metric]], carried: list[Metric] | None = None) -> list[Metric]:
    """The families of the `workers` that answered, summed (`MERGED_BY`); the counters and
    histograms are `carried` instead, when given."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], Any]] = {}
    answered = len(workers)
    if carried is not None:
        live = [[f for f in fs if f.type not in CARRIED_TYPES] for fs in workers]
        workers = [*live, carried]
    for family in itertools.chain.from_iterable(workers):
        if family.name not in families:
            families[family.name] = Metric(family.name, family.documentation, family.type)
            values[family.name] = {}
        seen, combine = values[family.name], MERGED_BY.get(family.name)
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            if key not in seen:
                seen[key] = [sample.labels, sample.value]
            else:
                old = seen[key][1]
                seen[key][1] = combine(old, sample.value) if combine else old + sample.value
    for name, family in families.items():
        for (sample_name, _), (labels, value) in values[name].items():
            family.add_sample(sample_name, labels, value)
    reporting = GaugeMetricFamily(
        "tokenroute_workers_scraped",
        "Worker processes that answered this scrape (fewer than configured while one "
        "restarts; the counters still hold what was last seen of it).",
        value=answered,
    )
    return [*families.values(), reporting]


def counts_of(families: Iterable[Metric]) -> Counts:
    """The counters and histograms of one process's families."""
    counts: Counts = {}
    for family in families:
        if family.type not in CARRIED_TYPES:
            continue
        samples = counts.setdefault(family.name, (family.type, family.documentation, {}))[2]
        for sample in family.samples:
            if not sample.name.endswith("_created"):  # a timestamp, not a count
                samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return counts


def as_metrics(counts: Counts) -> list[Metric]:
    families = []
    for name, (kind, doc, samples) in counts.items():
        family = Metric(name, doc, kind)
        for (sample_name, labels), value in samples.items():
            family.add_sample(sample_name, dict(labels), value)
        families.append(family)
    return families


class _Merged:
    """A collector of families already made."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


class _Collector:
    """Reads the recorder and the parts' state at scrape time."""

    def __init__(
        self,
        metrics: Metrics,
        store: Store,
        health: UpstreamHealth,
        open_streams: Callable[[], int],
    ) -> None:
        self._m = metrics
        self._store = store
        self._health = health
        self._open_streams = open_streams

    def collect(self) -> Iterator[Metric]:
        m = self._m
        yield _counter(
            "tokenroute_requests",
            "Requests of the model routes by how they ended (a stream: its settled status; "
            "499: the client went away).",
            ("route", "status", "model", "provider", "tier"),
            m.requests,
        )
        yield _counter(
            "tokenroute_refusals",
            "Requests answered with an error before they ran (no hold, no upstream call).",
            ("route", "reason"),
            m.refusals,
        )
        yield _histogram(
            "tokenroute_request_duration_seconds",
            "Time from a request's arrival to its end (the last byte of a stream), of "
            "requests that ran.",
            ("route", "model"),
            m.duration,
        )
        yield _histogram(
            "tokenroute_time_to_first_token_seconds",
            "Time from a streaming request's arrival to its upstream's first byte.",
            ("route", "model"),
            m.ttft,
        )
        yield _counter(
            "tokenroute_tokens",
            "Tokens billed, by served model and direction (in: prompt, out: completion).",
            ("model", "direction"),
            m.tokens,
        )
        yield _counter(
            "tokenroute_cost_nano_usd",
            "What requests were charged, in nano-USD (1e-9 USD), by served model.",
            ("model",),
            {(model,): cost for model, cost in m.cost.items()},
        )
        yield _counter(
            "tokenroute_upstream_errors",
            "Failed upstream attempts and broken streams, by upstream (model id) and cause.",
            ("upstream", "cause"),
            m.upstream_errors,
        )
        yield _counter(
            "tokenroute_fallbacks",
            "Failed attempts after which the request moved on to the next model of its route.",
            ("upstream", "cause"),
            m.fallbacks,
        )
        yield from self._upstreams()
        yield _gauge("tokenroute_active_streams", "Streams open now.", self._open_streams())
        yield from self._store_state()
        yield _histogram(
            "tokenroute_event_loop_lag_seconds",
            "How late the event loop woke a task that slept (checked every 0.5 s).",
            (),
            m.loop_lag,
        )

    def _upstreams(self) -> Iterator[Metric]:
        states = self._health.states()
        state = GaugeMetricFamily(
            "tokenroute_upstream_state",
            "1 for each upstream's (model id's) cooldown state now; upstreams seen failing only.",
            labels=("upstream", "state"),
        )
        remaining = GaugeMetricFamily(
            "tokenroute_upstream_cooldown_remaining_seconds",
            "Seconds until a cooling upstream is probed again.",
            labels=("upstream",),
        )
        for upstream, now in states.items():
            for name in UPSTREAM_STATES:
                state.add_metric((upstream, name), 1.0 if now["state"] == name else 0.0)
            remaining.add_metric((upstream,), float(now["retry_in_seconds"]))  # type: ignore[arg-type]
        yield state
        yield remaining

    def _store_state(self) -> Iterator[Metric]:
        store = self._store
        yield _gauge(
            "tokenroute_store_queue_depth", "Writes waiting for the store's writer.", store.queued
        )
        yield _gauge(
            "tokenroute_store_failing",
            "1 while the database refuses writes (they are kept and retried).",
            1 if store.failing is not None else 0,
        )
        yield _counter(
            "tokenroute_store_jobs",
            "Write jobs the store's writer finished, by result.",
            ("result",),
            {("committed",): store.stats.committed_jobs, ("failed",): store.stats.failed_jobs},
        )
        yield _histogram(
            "tokenroute_store_batch_size",
            "Write jobs committed together in one transaction.",
            (),
            self._m.batch_size,
        )
        yield _histogram(
            "tokenroute_store_commit_seconds",
            "Time to commit one batch of writes (in the writer's thread, retries included).",
            (),
            self._m.commit_seconds,
        )


def _counter(
    name: str, doc: str, labels: Iterable[str], series: Mapping[Any, int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=list(labels))
    for key, value in series.items():
        family.add_metric([str(v) for v in key], value)
    return family


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _histogram(name: str, doc: str, labels: Iterable[str], hist: Histogram) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=list(labels))
    bounds = [_le(b) for b in hist.bounds] + ["+Inf"]
    for key, counts in hist.series.items():
        cumulative, buckets = 0.0, []
        for bound, count in zip(bounds, counts[:-1], strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        family.add_metric(list(key), buckets, counts[-1])
    return family


def _le(bound: float) -> str:
    return repr(float(bound))  # "0.005", "1.0": the spelling Prometheus' own clients use
