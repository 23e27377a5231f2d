"""Embeddings without I/O: OpenAI's request read once, each upstream's wire format out and
back, the catalog's embedding models and the hold for their input.

Answers are held to openai's `CreateEmbeddingResponse`; Google's request to what the
google-genai SDK itself sends the fake Gemini upstream for the same input.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
from google import genai
from openai.types import CreateEmbeddingResponse

from proxy.core.chat import Usage
from proxy.core.config import load_settings
from proxy.core.embeddings import EmbeddingRequest, parse_embedding_request
from proxy.core.errors import (
    BadRequest,
    ConfigError,
    Fault,
    InsufficientQuota,
    RateLimited,
    UpstreamError,
)
from proxy.core.model import EMBEDDING, Model, Price, Rates
from proxy.money.budget import input_tokens, plan_input
from proxy.providers.embeddings import MistralEmbeddings, OpenAIEmbeddings
from proxy.providers.google_embeddings import GoogleEmbeddings
from proxy.routing.catalog import build_catalog
from proxy.routing.plan import plan_route
from tests.fakes import embedding_vectors as vectors
from tests.fakes.gemini_upstream import FakeGemini

SMALL = Model(
    "openai/text-embedding-3-small", "openai", "text-embedding-3-small",
    Price(Rates(input=20_000)), 8192, kind=EMBEDDING,
)  # fmt: skip
MISTRAL = Model(
    "mistral/mistral-embed", "mistral", "mistral-embed", Price(Rates(input=100_000)), 8192,
    kind=EMBEDDING,
)  # fmt: skip
GEMINI = Model(
    "google/gemini-embedding-001", "google", "gemini-embedding-001",
    Price(Rates(input=150_000)), 2048, kind=EMBEDDING,
)  # fmt: skip


def ask(input: Any, **extra: Any) -> EmbeddingRequest:
    return parse_embedding_request({"model": "any/model", "input": input, **extra})


def sent(adapter: Any, request: EmbeddingRequest, model: Model) -> list[dict[str, Any]]:
    return [orjson.loads(u.body) for u in adapter.embeddings_requests(request, model, "key")]


def answer(*items: Any, usage: dict[str, int] | None = None) -> bytes:
    data = [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(items)]
    body = {"object": "list", "data": data, "model": "upstream-id"}
    return orjson.dumps(body | ({"usage": usage} if usage else {}))


# -- the request, read once ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "texts", "tokens"),
    [
        ("hello", ("hello",), ()),
        (["a b", "c"], ("a b", "c"), ()),
        ([5, 6, 7], (), ((5, 6, 7),)),
        ([[1], [2, 3]], (), ((1,), (2, 3))),
        (["x"] * 2048, ("x",) * 2048, ()),
    ],
)
def test_every_input_shape_openai_takes(given: Any, texts: Any, tokens: Any) -> None:
    request = ask(given)
    assert (request.texts, request.tokens) == (texts, tokens)
    assert request.count == len(texts or tokens)
    assert (request.dimensions, request.encoding_format) == (None, "float")


def test_size_bounds_the_tokens_of_any_byte_level_tokenizer() -> None:
    assert ask(["héllo", "ab"]).size() == 6 + 2  # UTF-8 bytes
    assert ask([[1, 2], [3]]).size() == 3  # token ids, exactly
    assert ask("x", dimensions=256, encoding_format="base64").dimensions == 256


@pytest.mark.parametrize(
    "body",
    [None, [], {"model": 3, "input": "a"}, {"model": "m", "input": True},
     {"model": "m", "input": [True]}, {"model": "m", "input": [None]},
     {"model": "m", "input": ["a", ["b"]]}, {"model": "m", "input": [[1], "a"]},
     {"model": "m", "input": [3, -1]}, {"model": "m", "input": [2**31]},
     {"model": "m", "input": "a", "dimensions": True},
     {"model": "m", "input": "a", "encoding_format": None, "dimensions": -2}],
)  # fmt: skip
def test_what_no_upstream_could_embed_is_refused(body: Any) -> None:
    with pytest.raises(BadRequest):
        parse_embedding_request(body)


# -- OpenAI-compatible and Mistral -----------------------------------------------------------


def test_openai_compatible_passes_the_body_through() -> None:
    request = ask(["a"], dimensions=4, encoding_format="base64", user="u-1")
    [upstream] = OpenAIEmbeddings("openai").embeddings_requests(request, SMALL, "sk-up")
    assert upstream.path == "/embeddings"
    assert upstream.headers["authorization"] == "Bearer sk-up"
    assert orjson.loads(upstream.body) == {
        "model": "text-embedding-3-small", "input": ["a"], "dimensions": 4,
        "encoding_format": "base64", "user": "u-1",
    }  # fmt: skip


def test_mistral_gets_output_dimension_and_text_only() -> None:
    adapter = MistralEmbeddings("mistral")
    request = ask(["a", "b"], dimensions=256, encoding_format="base64", user="u-1")
    assert sent(adapter, request, MISTRAL) == [
        {"model": "mistral-embed", "input": ["a", "b"], "output_dimension": 256}
    ]
    assert sent(adapter, ask("a"), MISTRAL) == [{"model": "mistral-embed", "input": ["a"]}]
    with pytest.raises(BadRequest, match="mistral/mistral-embed takes text only"):
        adapter.embeddings_requests(ask([[1, 2]]), MISTRAL, "k")


@pytest.mark.parametrize("adapter", [OpenAIEmbeddings("openai"), MistralEmbeddings("mistral")])
def test_openai_shaped_answers_in_the_encoding_asked_for(adapter: Any) -> None:
    values = [0.5, -0.25, 1.0]
    usage = {"prompt_tokens": 9, "total_tokens": 9}
    for given in (values, vectors.as_base64(values)):  # whichever the upstream sent
        floats = adapter.embeddings_response([answer(given, usage=usage)], ask("a"), SMALL)
        packed = adapter.embeddings_response(
            [answer(given, usage=usage)], ask("a", encoding_format="base64"), SMALL
        )
        assert floats.data["data"][0]["embedding"] == values
        assert packed.data["data"][0]["embedding"] == vectors.as_base64(values)
        assert floats.data["model"] == SMALL.id and floats.usage == Usage(prompt_tokens=9)
        CreateEmbeddingResponse.model_validate(floats.data)
    assert adapter.embeddings_response([answer(values)], ask("a"), SMALL).usage is None


@pytest.mark.parametrize(
    ("body", "encoding", "said"),
    [
        (answer([0.1], [0.2]), "float", "sent 2 embeddings for 1 inputs"),
        (b'{"object": "list"}', "float", "sent no embeddings for 1 inputs"),
        (answer(["x"]), "base64", "not a list of numbers"),
        (answer("not*base64"), "float", "not base64 float32"),
        (answer("AAAAAAA="), "float", "not base64 float32"),  # 5 bytes: no whole float32
        (answer([1e300]), "base64", "outside float32's range"),
        (b"<html>", "float", "not JSON"),
    ],
)
def test_a_broken_answer_is_the_upstreams_fault(body: bytes, encoding: str, said: str) -> None:
    with pytest.raises(UpstreamError, match=said) as caught:
        OpenAIEmbeddings("openai").embeddings_response(
            [body], ask("a", encoding_format=encoding), SMALL
        )
    assert caught.value.status == 502


def test_errors_map_as_chat_errors_do() -> None:
    openai_side = OpenAIEmbeddings("openai")
    quota = orjson.dumps({"error": {"message": "no", "type": "insufficient_quota"}})
    assert openai_side.error(429, quota, None).fault is Fault.ACCOUNT
    busy = openai_side.error(429, b"{}", "3")
    assert isinstance(busy, RateLimited) and busy.headers["Retry-After"] == "3"
    refused = MistralEmbeddings("mistral").error(422, b'{"message": {"detail": []}}', None)
    assert isinstance(refused, BadRequest) and refused.fault is Fault.REQUEST


# -- Google -----------------------------------------------------------------------------------


def test_google_batches_of_100_in_order() -> None:
    texts = [f"t{i}" for i in range(250)]
    requests = GoogleEmbeddings("google").embeddings_requests(ask(texts), GEMINI, "gm")
    assert [u.path for u in requests] == [
        "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    ] * 3
    assert (
        requests[0].headers["x-goog-api-key"] == "gm" and "authorization" not in requests[0].headers
    )
    bodies = [orjson.loads(u.body)["requests"] for u in requests]
    assert [len(b) for b in bodies] == [100, 100, 50]
    assert [r["content"]["parts"][0]["text"] for b in bodies for r in b] == texts
    assert "outputDimensionality" not in bodies[0][0]
    with pytest.raises(BadRequest, match="takes text only"):
        GoogleEmbeddings("google").embeddings_requests(ask([1, 2]), GEMINI, "gm")


def test_google_answers_joined_and_translated() -> None:
    adapter = GoogleEmbeddings("google")
    request = ask(["a", "b", "c"], encoding_format="base64")
    bodies = [
        orjson.dumps({"embeddings": [{"values": [0.5, 1.0]}, {"values": [0.25, 0.0]}]}),
        orjson.dumps({"embeddings": [{"values": [-1.0, 2.0]}]}),
    ]
    result = adapter.embeddings_response(bodies, request, GEMINI)
    assert result.usage is None  # Google reports none: the gateway counts the input
    assert result.data["model"] == GEMINI.id and result.data["object"] == "list"
    assert [d["index"] for d in result.data["data"]] == [0, 1, 2]
    assert [vectors.from_base64(d["embedding"]) for d in result.data["data"]] == [
        [0.5, 1.0], [0.25, 0.0], [-1.0, 2.0],
    ]  # fmt: skip
    floats = adapter.embeddings_response(bodies, ask(["a", "b", "c"]), GEMINI).data
    assert [d["embedding"] for d in floats["data"]] == [[0.5, 1.0], [0.25, 0.0], [-1.0, 2.0]]
    CreateEmbeddingResponse.model_validate(
        {**floats, "usage": {"prompt_tokens": 1, "total_tokens": 1}}
    )
    with pytest.raises(UpstreamError, match="sent 1 embeddings for 3 inputs"):
        adapter.embeddings_response(bodies[1:], request, GEMINI)
    with pytest.raises(UpstreamError, match="without embeddings"):
        adapter.embeddings_response([b"{}"], request, GEMINI)
    failed = orjson.dumps({"error": {"code": 503, "message": "x", "status": "UNAVAILABLE"}})
    with pytest.raises(UpstreamError) as caught:
        adapter.embeddings_response([failed], request, GEMINI)
    assert caught.value.status == 503


def test_google_errors_know_a_refused_key() -> None:
    invalid = {
        "error": {
            "code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                         "reason": "API_KEY_INVALID"}],
        }
    }  # fmt: skip
    error = GoogleEmbeddings("google").error(400, orjson.dumps(invalid), None)
    assert error.fault is Fault.ACCOUNT


@pytest.fixture
async def fake(nursery: trio.Nursery) -> AsyncIterator[FakeGemini]:
    gemini = await nursery.start(FakeGemini().run)
    yield gemini
    gemini.stop()


async def test_google_request_is_what_the_official_sdk_sends(fake: FakeGemini) -> None:
    def embed() -> list[list[float]]:
        options = {"base_url": fake.url, "api_version": "v1beta", "retry_options": {"attempts": 1}}
        with genai.Client(api_key="k", http_options=options) as client:  # type: ignore[arg-type]
            reply = client.models.embed_content(
                model="gemini-embedding-001",
                contents=["hello", "world"],
                config={"output_dimensionality": 3},
            )
        return [e.values or [] for e in reply.embeddings or []]

    assert await trio.to_thread.run_sync(embed) == [
        vectors.vector(t, 3) for t in ("hello", "world")
    ]
    [theirs] = fake.requests
    for item in theirs["requests"]:
        item["content"].pop("role")  # the SDK adds the default role; Gemini does not need it
    ours = sent(GoogleEmbeddings("google"), ask(["hello", "world"], dimensions=3), GEMINI)
    assert ours == [theirs]
    assert fake.paths == ["/v1beta/models/gemini-embedding-001:batchEmbedContents"]


# -- the catalog and the hold -----------------------------------------------------------------


def test_the_catalog_lists_embedding_models_priced_by_input(tmp_path: Path) -> None:
    config = tmp_path / "tokenroute.toml"
    config.write_text(
        '[providers.local]\nbase_url = "http://127.0.0.1:9/v1"\n'
        '[models."local/bge-m3"]\nkind = "embedding"\ninput_price = "0.01"\n'
        '[models."openai/text-embedding-3-large"]\nmarkup = "0.5"\n'
    )
    env = {"OPENAI_API_KEY": "k", "MISTRAL_API_KEY": "k", "GEMINI_API_KEY": "k"}
    catalog = build_catalog(load_settings(env, config, {"db_path": tmp_path / "db"}))
    kinds = {m.id: m.kind for m in catalog.listed() if m.kind == EMBEDDING}
    assert set(kinds) == {
        "openai/text-embedding-3-small", "openai/text-embedding-3-large", "mistral/mistral-embed",
        "mistral/codestral-embed", "google/gemini-embedding-001", "local/bge-m3",
    }  # fmt: skip
    mistral = catalog.get("mistral/mistral-embed")
    assert mistral is not None and mistral.price.base == Rates(input=100_000)  # no output price
    large = catalog.get("openai/text-embedding-3-large")
    assert large is not None and large.price.base.input == 195_000  # $0.13 + 50 %
    assert catalog.get("openai/gpt-4o-mini").kind == "chat"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("table", "said"),
    [
        ('kind = "embedding"\n', "no input price is known for this model; set input_price "),
        ('kind = "vector"\n', "kind: expected 'chat' or 'embedding'"),
    ],
)
def test_an_embedding_model_needs_its_input_price(tmp_path: Path, table: str, said: str) -> None:
    config = tmp_path / "tokenroute.toml"
    config.write_text(
        f'[providers.local]\nbase_url = "http://127.0.0.1:9/v1"\n[models."local/e5"]\n{table}'
    )
    with pytest.raises(ConfigError, match=said):
        build_catalog(load_settings({}, config, {"db_path": tmp_path / "db"}))


def test_routes_keep_to_one_kind(tmp_path: Path) -> None:
    env = {"OPENAI_API_KEY": "k"}
    catalog = build_catalog(load_settings(env, None, {"db_path": tmp_path / "db"}))
    body = {"model": SMALL.id}
    assert [m.id for m in plan_route(body, catalog, {}, kind=EMBEDDING)] == [SMALL.id]
    with pytest.raises(BadRequest, match="is an embedding model; send it to POST /v1/embeddings"):
        plan_route(body, catalog, {})
    routes = {SMALL.id: ("openai/gpt-4o",)}
    with pytest.raises(BadRequest, match="gpt-4o is a chat model") as caught:
        plan_route(body, catalog, routes, kind=EMBEDDING)
    assert caught.value.param == "models"


def test_the_hold_is_the_input_at_the_dearest_affordable_rate() -> None:
    assert input_tokens(100, 3) == 106  # bytes + 2 markers an input
    assert input_tokens(6000, 1, counted=1000) == 1000 + 100 + 16 + 2  # counted, with margin
    assert input_tokens(10, 1, counted=1000) == 12  # never above the bound
    budget = plan_input([SMALL, MISTRAL, GEMINI], 10**9, tokens=1000)
    assert budget.hold == 150_000 and budget.limits == dict.fromkeys(
        [SMALL.id, MISTRAL.id, GEMINI.id]
    )
    cheap = plan_input([GEMINI, SMALL], 30_000, tokens=1000)  # Gemini's 150,000 is too dear
    assert cheap.hold == 20_000 and list(cheap.limits) == [SMALL.id]
    with pytest.raises(InsufficientQuota, match="its input \\(at most 1000 tokens\\) needs"):
        plan_input([SMALL], 19_999, tokens=1000)
