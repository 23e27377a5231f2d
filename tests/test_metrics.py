"""`GET /metrics`: scraped before and after known traffic, the counters and histogram counts
move by exactly what was sent (a fallback, a 402, a 429, a disconnect included); label values
stay bounded; without the internal secret the main port refuses to answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx2 as httpx
import openai
import pytest
import trio
from prometheus_client import Histogram as ClientHistogram
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from proxy.core.config import Settings, load_settings
from proxy.core.errors import (
    BadRequest,
    ConfigError,
    Fault,
    GatewayError,
    PayloadTooLarge,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from proxy.services.metrics import LATENCY_BUCKETS, Histogram, Metrics, failure_cause
from proxy.services.metrics_export import _histogram
from tests.conftest import INTERNAL_SECRET, OPERATOR, RunningGateway, running_gateway
from tests.fakes.openai_upstream import FakeOpenAI

HI = [{"role": "user", "content": "hi"}]
CONFIG = """
[providers.primary]
kind = "openai-compatible"
base_url = "{primary}/v1"

[providers.backup]
kind = "openai-compatible"
base_url = "{backup}/v1"

[models."primary/m1"]
input_price = "1"
output_price = "2"

[models."backup/m1"]
input_price = "1"
output_price = "2"

[models."primary/emb"]
kind = "embedding"
input_price = "0.02"

[routes]
"primary/m1" = ["backup/m1"]
{extra}
"""
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
async def upstreams(nursery: trio.Nursery) -> AsyncIterator[tuple[FakeOpenAI, FakeOpenAI]]:
    primary = await nursery.start(FakeOpenAI().run)
    backup = await nursery.start(FakeOpenAI().run)
    yield primary, backup
    primary.stop()
    backup.stop()


def routed_settings(
    tmp_path: Path, upstreams: tuple[FakeOpenAI, FakeOpenAI], extra: str = "", secret: bool = True
) -> Settings:
    primary, backup = upstreams
    config = tmp_path / "tokenroute.toml"
    config.write_text(CONFIG.format(primary=primary.url, backup=backup.url, extra=extra))
    env = {"TOKENROUTE_INTERNAL_SECRET": INTERNAL_SECRET} if secret else {}
    return load_settings(env, config, {"db_path": tmp_path / "gw.db", "port": 0})


@pytest.fixture
async def routed(
    nursery: trio.Nursery, tmp_path: Path, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> AsyncIterator[RunningGateway]:
    async with running_gateway(nursery, routed_settings(tmp_path, upstreams)) as gateway:
        yield gateway


async def scrape(url: str, headers: dict[str, str] | None = None) -> Samples:
    async with httpx.AsyncClient() as client:
        reply = await client.get(url + "/metrics", headers=OPERATOR if headers is None else headers)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    return parse(reply.text)


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def moved(before: Samples, after: Samples, name: str, *keep: str) -> dict[tuple[str, ...], float]:
    """The samples of `name` that changed, by the values of the labels in `keep`."""
    out: dict[tuple[str, ...], float] = {}
    for (sample, labels), value in after.items():
        if sample != name:
            continue
        change = value - before.get((sample, labels), 0.0)
        if change:
            by = dict(labels)
            out[tuple(by[k] for k in keep)] = change
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def until_moved(
    gateway: RunningGateway,
    before: Samples,
    name: str,
    keep: tuple[str, ...],
    expected: dict[tuple[str, ...], float],
) -> Samples:
    """Scrape until `name` moved by `expected` (a refusal is counted just after its answer
    went out), then once more a moment later: it must not move past it."""
    with trio.move_on_after(5):
        while moved(before, await scrape(gateway.url), name, *keep) != expected:  # noqa: ASYNC110
            await trio.sleep(0.02)
    await trio.sleep(0.2)
    after = await scrape(gateway.url)
    assert moved(before, after, name, *keep) == expected
    return after


async def test_known_traffic_moves_the_counters_by_exactly_what_was_sent(
    routed: RunningGateway, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    primary, _ = upstreams
    _, raw = routed.create_key()
    _, poor = routed.create_key(credit="0.000001", email="poor@example.com")
    limited_id, limited = routed.create_key(email="limited@example.com")
    conn = routed.db()
    with conn:  # one request at once, then one every 1,000 s: the second is a 429
        conn.execute("UPDATE api_keys SET burst = 1, rps = 0.001 WHERE id = ?", (limited_id,))
    conn.close()
    client = routed.client(raw)
    before = await scrape(routed.url)

    for _ in range(3):
        await client.chat.completions.create(model="primary/m1", messages=HI)
    for _ in range(2):
        stream = await client.chat.completions.create(model="primary/m1", messages=HI, stream=True)
        async for _chunk in stream:
            pass

    primary.chunk_delay, primary.words = 0.05, [f" w{i}" for i in range(100)]
    stream = await client.chat.completions.create(model="primary/m1", messages=HI, stream=True)
    received = 0
    async for chunk in stream:
        received += bool(chunk.choices and chunk.choices[0].delta.content)
        if received == 2:
            break
    assert value(await scrape(routed.url), "tokenroute_active_streams") == 1
    await stream.close()  # the client goes away: 499
    await routed.wait_usage_rows(6)
    primary.chunk_delay, primary.words = 0.0, ["Hello", "."]

    with pytest.raises(openai.APIStatusError) as short:
        await routed.client(poor).chat.completions.create(model="primary/m1", messages=HI)
    assert short.value.status_code == 402
    await routed.client(limited).chat.completions.create(model="primary/m1", messages=HI)
    with pytest.raises(openai.RateLimitError):
        await routed.client(limited).chat.completions.create(model="primary/m1", messages=HI)
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="primary/made-up-model", messages=HI)
    with pytest.raises(openai.AuthenticationError):
        await routed.client("sk-tr-" + "x" * 40).chat.completions.create(
            model="primary/m1", messages=HI
        )
    await client.embeddings.create(model="primary/emb", input="hello")
    async with httpx.AsyncClient() as anthropic:
        message = await anthropic.post(
            routed.url + "/v1/messages",
            headers={"x-api-key": raw, "anthropic-version": "2023-06-01"},
            json={"model": "primary/m1", "max_tokens": 16, "messages": HI},
        )
    assert message.status_code == 200, message.text
    primary.status, primary.retry_after = 429, "30"  # fall back, and cool the primary down
    served = await client.chat.completions.create(model="primary/m1", messages=HI)
    assert served.model == "backup/m1"
    rows = await routed.wait_usage_rows(10)

    keep = ("route", "status", "model", "provider", "tier")
    after = await until_moved(routed, before, "tokenroute_requests_total", keep, {
        ("chat", "200", "primary/m1", "primary", "none"): 6,
        ("chat", "499", "primary/m1", "primary", "none"): 1,
        ("chat", "402", "primary/m1", "primary", "none"): 1,
        ("chat", "429", "unknown", "unknown", "none"): 1,
        ("chat", "404", "unknown", "unknown", "none"): 1,
        ("chat", "401", "unknown", "unknown", "none"): 1,
        ("embeddings", "200", "primary/emb", "primary", "none"): 1,
        ("messages", "200", "primary/m1", "primary", "none"): 1,
        ("chat", "200", "backup/m1", "backup", "none"): 1,
    })  # fmt: skip
    assert moved(before, after, "tokenroute_refusals_total", "route", "reason") == {
        ("chat", "insufficient_balance"): 1,
        ("chat", "rate_limit"): 1,
        ("chat", "invalid_request"): 1,
        ("chat", "authentication"): 1,
    }
    duration = "tokenroute_request_duration_seconds_count"
    assert moved(before, after, duration, "route", "model") == {
        ("chat", "primary/m1"): 7,  # 3 answers, 3 streams (one abandoned), the limited key's
        ("embeddings", "primary/emb"): 1,
        ("messages", "primary/m1"): 1,
        ("chat", "backup/m1"): 1,
    }
    buckets = "tokenroute_request_duration_seconds_bucket"
    assert moved(before, after, buckets, "route", "model", "le")["chat", "primary/m1", "+Inf"] == 7
    ttft = "tokenroute_time_to_first_token_seconds_count"
    assert moved(before, after, ttft, "route", "model") == {("chat", "primary/m1"): 3}

    # tokens and cost: exactly what the usage rows were billed
    billed: dict[tuple[str, ...], float] = {}
    cost: dict[tuple[str, ...], float] = {}
    for row in rows:
        model = row["served_model"]
        billed[model, "in"] = billed.get((model, "in"), 0) + row["tokens_in"]
        billed[model, "out"] = billed.get((model, "out"), 0) + row["tokens_out"]
        cost[(model,)] = cost.get((model,), 0) + row["cost"]
    billed = {k: v for k, v in billed.items() if v}
    assert moved(before, after, "tokenroute_tokens_total", "model", "direction") == billed
    assert moved(before, after, "tokenroute_cost_nano_usd_total", "model") == cost
    assert cost[("primary/m1",)] > 0

    errors = moved(before, after, "tokenroute_upstream_errors_total", "upstream", "cause")
    assert errors == {("primary/m1", "rate_limited"): 1}
    fallbacks = moved(before, after, "tokenroute_fallbacks_total", "upstream", "cause")
    assert fallbacks == {("primary/m1", "rate_limited"): 1}
    state = "tokenroute_upstream_state"
    assert value(after, state, upstream="primary/m1", state="cooling") == 1
    assert value(after, state, upstream="primary/m1", state="healthy") == 0
    remaining = value(
        after, "tokenroute_upstream_cooldown_remaining_seconds", upstream="primary/m1"
    )
    assert 0 < remaining <= 30  # Retry-After: 30
    assert value(after, "tokenroute_active_streams") == 0

    batches = moved(before, after, "tokenroute_store_batch_size_count")[()]
    assert batches >= 1
    assert moved(before, after, "tokenroute_store_commit_seconds_count")[()] == batches
    # settlements of one batch go as one job: jobs, not requests
    assert moved(before, after, "tokenroute_store_jobs_total", "result")[("committed",)] >= 1
    assert ("tokenroute_store_queue_depth", ()) in after
    assert value(after, "tokenroute_store_failing") == 0


async def test_label_values_stay_bounded(
    routed: RunningGateway, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    _, raw = routed.create_key()
    client = routed.client(raw)
    for made_up in ("primary/no-such-model", "nobody/anything", "x" * 200):
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model=made_up, messages=HI)
        with pytest.raises(openai.NotFoundError):
            await client.embeddings.create(model=made_up, input="hi")
    await client.chat.completions.create(model="primary/m1", messages=HI, user="user-42")
    await routed.wait_usage_rows(1)
    async with httpx.AsyncClient() as http:
        text = (await http.get(routed.url + "/metrics", headers=OPERATOR)).text
    for leaked in ("no-such-model", "nobody", "x" * 50, "user-42", "dev@example.com", "sk-tr"):
        assert leaked not in text
    served = {"primary/m1", "backup/m1", "primary/emb", "unknown"}
    pairs = {pair for (_, labels) in parse(text) for pair in labels}
    models = {v for k, v in pairs if k in ("model", "upstream")}
    assert models <= served, models
    assert not {k for k, _ in pairs} & {"key", "key_id", "user", "user_id", "request_id"}


async def test_the_main_port_refuses_a_scrape_without_the_secret(routed: RunningGateway) -> None:
    async with httpx.AsyncClient(base_url=routed.url) as client:
        for headers in ({}, {"x-internal-secret": "not-the-secret-at-all"}):
            refused = await client.get("/metrics", headers=headers)
            assert refused.status_code == 401
            assert refused.json()["error"]["type"] == "authentication_error"
            assert "tokenroute_requests" not in refused.text
        allowed = await client.get("/metrics", headers=OPERATOR)
        assert allowed.status_code == 200 and "# TYPE tokenroute_requests_total" in allowed.text
        open_metrics = await client.get(
            "/metrics", headers={**OPERATOR, "accept": "application/openmetrics-text"}
        )
        assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
        assert open_metrics.text.endswith("# EOF\n")


async def test_a_separate_listener_serves_metrics_without_the_secret(
    nursery: trio.Nursery, tmp_path: Path, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    settings = routed_settings(tmp_path, upstreams, '[metrics]\nlisten = "127.0.0.1:0"\n', False)
    async with running_gateway(nursery, settings) as gateway:
        [listener] = gateway.services.metrics_export.listening  # http://127.0.0.1:port
        samples = await scrape(listener, headers={})
        assert ("tokenroute_active_streams", ()) in samples
        async with httpx.AsyncClient() as client:
            assert (await client.get(listener + "/v1/models")).status_code == 404
            assert (await client.post(listener + "/metrics")).status_code == 405
            # the main port, with no internal secret set, has no /metrics
            assert (await client.get(gateway.url + "/metrics")).status_code == 404


async def test_gateways_in_one_process_count_apart(
    nursery: trio.Nursery, tmp_path: Path, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with (
        running_gateway(nursery, routed_settings(tmp_path / "a", upstreams)) as a,
        running_gateway(nursery, routed_settings(tmp_path / "b", upstreams)) as b,
    ):
        _, raw = a.create_key()
        await a.client(raw).chat.completions.create(model="primary/m1", messages=HI)
        await a.wait_usage_rows(1)
        counted = [k for k in await scrape(a.url) if k[0] == "tokenroute_requests_total"]
        assert len(counted) == 1
        assert [k for k in await scrape(b.url) if k[0] == "tokenroute_requests_total"] == []


async def test_the_event_loop_lag_is_sampled(routed: RunningGateway) -> None:
    name = "tokenroute_event_loop_lag_seconds_count"
    with trio.move_on_after(3):
        while value(await scrape(routed.url), name) < 2:  # noqa: ASYNC110 (polling a scrape)
            await trio.sleep(0.1)
    samples = await scrape(routed.url)
    assert value(samples, name) >= 2
    assert value(samples, "tokenroute_event_loop_lag_seconds_sum") < value(samples, name)


def test_histograms_export_as_prometheus_clients_own() -> None:
    """Our lock-free histogram, exported, equals prometheus-client's for the same values
    (a value on a bound falls in that bucket: `le`)."""
    values = [0.001, 0.005, 0.0051, 0.3, 1, 7, 1000]
    ours = Histogram(LATENCY_BUCKETS)
    registry = CollectorRegistry()
    theirs = ClientHistogram("h", "", ["route"], buckets=LATENCY_BUCKETS, registry=registry)
    for v in values:
        ours.observe(("chat",), v)
        theirs.labels("chat").observe(v)
    family = _histogram("h", "", ["route"], ours)
    exported = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    expected = {
        (s.name, s.labels.get("le")): s.value
        for m in registry.collect()
        for s in m.samples
        if not s.name.endswith("_created")
    }
    assert exported == expected


def test_failure_causes_are_a_fixed_set() -> None:
    cases: list[tuple[GatewayError, str]] = [
        (RateLimited("busy", upstream_status=429, fault=Fault.UPSTREAM), "rate_limited"),
        (UpstreamError("x", upstream_status=500), "server_error"),
        (UpstreamError("x", upstream_status=404), "other"),
        (UpstreamTimeout("x"), "timeout"),
        (UpstreamTimeout("x", upstream_status=504), "timeout"),
        (UpstreamError("connection failed"), "connection"),
        (UpstreamError("key refused", upstream_status=401, fault=Fault.ACCOUNT), "account"),
        (UpstreamError("no count", fault=Fault.GATEWAY), "gateway"),
        (BadRequest("bad", upstream_status=400), "request"),
        (PayloadTooLarge("tpm", upstream_status=429), "request"),
    ]
    assert [failure_cause(error) for error, _ in cases] == [cause for _, cause in cases]


def test_a_request_is_counted_once_whoever_sees_it_end() -> None:
    """The meter counts what ran; the surface what it refused; never both."""
    metrics = Metrics()
    metrics.answered("chat", 429, None)
    metrics.answered("chat", None, None)  # the client left before any answer
    assert dict(metrics.requests) == {
        ("chat", 429, "unknown", "unknown", "none"): 1,
        ("chat", 499, "unknown", "unknown", "none"): 1,
    }
    assert dict(metrics.refusals) == {("chat", "rate_limit"): 1}  # leaving is not a refusal


@pytest.mark.parametrize(
    "listen", ["9464", "127.0.0.1", "127.0.0.1:99999", ":9464", "http://127.0.0.1:9464", 9464]
)
def test_a_bad_listen_address_is_one_line(tmp_path: Path, listen: object) -> None:
    config = tmp_path / "tokenroute.toml"
    config.write_text(f"[metrics]\nlisten = {listen!r}\n".replace("'", '"'))
    with pytest.raises(ConfigError) as bad:
        load_settings({}, config)
    assert str(bad.value).startswith("[metrics] listen: expected")
    assert "\n" not in str(bad.value)


def test_listen_addresses_that_are_taken(tmp_path: Path) -> None:
    config = tmp_path / "tokenroute.toml"
    for listen in ("127.0.0.1:9464", "0.0.0.0:9464", "[::1]:9464", "metrics.internal:9464"):
        config.write_text(f'[metrics]\nlisten = "{listen}"\n')
        assert load_settings({}, config).metrics.listen == listen
    config.write_text("[metrics]\nport = 9464\n")
    with pytest.raises(ConfigError, match=r"config \[metrics\]: unknown setting 'port'"):
        load_settings({}, config)
    assert load_settings({}).metrics.listen is None
