"""`POST /v1/embeddings`: the official openai SDK against fake OpenAI, Mistral and Gemini
upstreams, with the usage rows, the charges and the ledger they leave."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest
import trio

from proxy.core.config import load_settings
from proxy.money.tokens import load_o200k
from tests.conftest import INTERNAL_SECRET, RunningGateway, running_gateway
from tests.fakes import embedding_vectors as vectors
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.mistral_upstream import FakeMistral
from tests.fakes.openai_upstream import FakeOpenAI
from tests.test_money import books_of

SMALL, MISTRAL, GEMINI = (
    "openai/text-embedding-3-small",
    "mistral/mistral-embed",
    "google/gemini-embedding-001",
)
# nano-USD per input token: $0.02, $0.10 and $0.15 per 1M tokens
RATE = {SMALL: 20, MISTRAL: 100, GEMINI: 150}
TEXTS = ["the quick brown fox", "jumps over the lazy dog", "tokenroute"]
CONFIG = """
[routes]
"openai/text-embedding-3-small" = ["mistral/mistral-embed"]
"""


@dataclass
class World:
    gateway: RunningGateway
    openai: FakeOpenAI
    mistral: FakeMistral
    gemini: FakeGemini
    key_id: str
    raw: str

    def client(self, raw: str | None = None) -> openai.AsyncOpenAI:
        return self.gateway.client(raw or self.raw)

    async def post(self, body: dict[str, Any], raw: str | None = None) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.gateway.url, timeout=30) as http:
            return await http.post(
                "/v1/embeddings", json=body, headers={"authorization": f"Bearer {raw or self.raw}"}
            )


@pytest.fixture
async def world(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[World]:
    fake_openai = await nursery.start(FakeOpenAI(strict=True).run)
    mistral = await nursery.start(FakeMistral().run)
    gemini = await nursery.start(FakeGemini(api_key="gm-test").run)
    config = tmp_path / "tokenroute.toml"
    config.write_text(CONFIG)
    env = {
        "OPENAI_API_KEY": "sk-oa-test",
        "OPENAI_BASE_URL": fake_openai.url + "/v1",
        "MISTRAL_API_KEY": "sk-mi-test",
        "MISTRAL_BASE_URL": mistral.url + "/v1",
        "GEMINI_API_KEY": "gm-test",
        "GEMINI_BASE_URL": gemini.url,
        "TOKENROUTE_INTERNAL_SECRET": INTERNAL_SECRET,
    }
    settings = load_settings(env, config, {"db_path": tmp_path / "gw.db", "port": 0})
    async with running_gateway(nursery, settings) as gateway:
        key_id, raw = gateway.create_key(credit="10")
        yield World(gateway, fake_openai, mistral, gemini, key_id, raw)
    for fake in (fake_openai, mistral, gemini):
        fake.stop()


def words(texts: list[str]) -> int:
    return sum(len(t.split()) for t in texts)


def o200k(texts: list[str]) -> int:
    encoding = load_o200k()
    return sum(len(encoding.encode_ordinary(t)) for t in texts)


async def test_openai_sdk_against_openai_float_and_base64(world: World) -> None:
    client = world.client()
    reply = await client.embeddings.create(model=SMALL, input=TEXTS, dimensions=4)  # SDK: base64
    assert reply.model == SMALL and reply.object == "list"
    assert [d.embedding for d in reply.data] == [vectors.vector(t, 4) for t in TEXTS]
    assert [d.index for d in reply.data] == [0, 1, 2]
    sent = world.openai.requests[-1]
    assert sent["model"] == "text-embedding-3-small" and sent["dimensions"] == 4
    assert sent["encoding_format"] == "base64" and sent["input"] == TEXTS
    assert world.openai.headers[-1]["authorization"] == "Bearer sk-oa-test"
    assert reply.usage.prompt_tokens == reply.usage.total_tokens == words(TEXTS)
    assert words(TEXTS) == 10 and reply.usage.model_extra == {"cost": "0.0000002"}  # 200 nano

    floats = await client.embeddings.create(
        model=SMALL, input="hello there", encoding_format="float"
    )
    assert floats.data[0].embedding == vectors.vector("hello there")
    assert world.openai.requests[-1]["encoding_format"] == "float"

    rows = await world.gateway.wait_usage_rows(2)
    assert [(r["requested_model"], r["served_model"], r["provider"]) for r in rows] == [
        (SMALL, SMALL, "openai")
    ] * 2
    assert [(r["tokens_in"], r["tokens_out"], r["estimated"], r["status"]) for r in rows] == [
        (words(TEXTS), 0, 0, 200),
        (2, 0, 0, 200),
    ]
    costs = [words(TEXTS) * RATE[SMALL], 2 * RATE[SMALL]]
    assert [r["cost"] for r in rows] == costs
    books = books_of(world.gateway, world.key_id)
    assert books["balance"] == 10 * 10**9 - sum(costs)
    assert books["ledger"][1:] == [
        {"kind": "usage", "amount": -costs[0], "usage_id": rows[0]["id"]},
        {"kind": "usage", "amount": -costs[1], "usage_id": rows[1]["id"]},
    ]
    assert books["holds"] == 0 and books["problems"] == []


@pytest.mark.parametrize("model", [SMALL, MISTRAL, GEMINI])
async def test_base64_decodes_to_the_floats(world: World, model: str) -> None:
    body = {"model": model, "input": TEXTS, "dimensions": 6}
    floats = (await world.post({**body, "encoding_format": "float"})).json()
    packed = (await world.post({**body, "encoding_format": "base64"})).json()
    assert [d["embedding"] for d in floats["data"]] == [vectors.vector(t, 6) for t in TEXTS]
    assert [vectors.from_base64(d["embedding"]) for d in packed["data"]] == [
        d["embedding"] for d in floats["data"]
    ]
    assert all(isinstance(d["embedding"], str) for d in packed["data"])


async def test_mistral_gets_its_own_fields(world: World) -> None:
    reply = await world.client().embeddings.create(model=MISTRAL, input=TEXTS, dimensions=5)
    assert [d.embedding for d in reply.data] == [vectors.vector(t, 5) for t in TEXTS]
    assert world.mistral.requests == [
        {"model": "mistral-embed", "input": TEXTS, "output_dimension": 5}
    ]
    assert world.mistral.headers[-1]["authorization"] == "Bearer sk-mi-test"
    [row] = await world.gateway.wait_usage_rows(1)
    assert (row["served_model"], row["tokens_in"], row["estimated"]) == (MISTRAL, words(TEXTS), 0)
    assert row["cost"] == words(TEXTS) * RATE[MISTRAL]
    assert reply.usage.prompt_tokens == words(TEXTS)


async def test_gemini_batch_embed_translated_and_counted(world: World) -> None:
    texts = [f"passage number {i} about trio" for i in range(150)]
    reply = await world.client().embeddings.create(model=GEMINI, input=texts, dimensions=3)
    assert reply.model == GEMINI
    assert [d.embedding for d in reply.data] == [vectors.vector(t, 3) for t in texts]
    assert [d.index for d in reply.data] == list(range(150))
    # Google takes 100 a call: two calls, in order
    assert world.gemini.paths == ["/v1beta/models/gemini-embedding-001:batchEmbedContents"] * 2
    assert world.gemini.headers[0]["x-goog-api-key"] == "gm-test"
    first, second = world.gemini.requests
    assert len(first["requests"]) == 100 and len(second["requests"]) == 50
    assert first["requests"][0] == {
        "model": "models/gemini-embedding-001",
        "content": {"parts": [{"text": texts[0]}]},
        "outputDimensionality": 3,
    }
    # Google reports no usage: the gateway counts the input and says so
    [row] = await world.gateway.wait_usage_rows(1)
    assert (row["tokens_in"], row["tokens_out"], row["estimated"]) == (o200k(texts), 0, 1)
    assert row["cost"] == o200k(texts) * RATE[GEMINI]
    assert reply.usage.prompt_tokens == reply.usage.total_tokens == o200k(texts)
    books = books_of(world.gateway, world.key_id)
    assert books["balance"] == 10 * 10**9 - row["cost"] and books["problems"] == []


async def test_token_arrays_go_only_where_they_are_taken(world: World) -> None:
    reply = await world.client().embeddings.create(
        model=SMALL, input=[[1, 2, 3], [40, 50]], encoding_format="float"
    )
    assert [d.embedding for d in reply.data] == [
        vectors.vector([1, 2, 3]),
        vectors.vector([40, 50]),
    ]
    assert world.openai.requests[-1]["input"] == [[1, 2, 3], [40, 50]]
    assert reply.usage.prompt_tokens == 5
    for model in (MISTRAL, GEMINI):
        refused = await world.post({"model": model, "input": [[1, 2, 3]]})
        assert refused.status_code == 400
        assert refused.json()["error"] == {
            "message": f"{model} takes text only: send 'input' as a string or an array of "
            "strings, not token ids",
            "type": "invalid_request_error",
            "code": 400,
            "param": "input",
        }
    assert world.mistral.requests == [] and world.gemini.requests == []
    assert len(await world.gateway.wait_usage_rows(1)) == 1


async def test_an_upstream_5xx_falls_back_to_the_next_provider(world: World) -> None:
    world.openai.status = 500
    raw = await world.client().embeddings.with_raw_response.create(model=SMALL, input=TEXTS)
    reply = raw.parse()
    assert reply.model == MISTRAL
    assert raw.headers["x-tokenroute-model"] == MISTRAL
    assert raw.headers["x-tokenroute-provider"] == "mistral"
    assert raw.headers["x-tokenroute-fallbacks"] == "1"
    assert raw.headers["x-ratelimit-limit-requests"]
    assert [d.embedding for d in reply.data] == [vectors.vector(t) for t in TEXTS]
    assert len(world.openai.requests) == 1 and len(world.mistral.requests) == 1
    # the request's own `models` array
    own = await world.client().embeddings.create(
        model=SMALL, input=TEXTS, extra_body={"models": [GEMINI]}
    )
    assert own.model == GEMINI
    assert "models" not in world.gemini.requests[-1]
    rows = await world.gateway.wait_usage_rows(2)
    assert [(r["requested_model"], r["served_model"], r["fallbacks"]) for r in rows] == [
        (SMALL, MISTRAL, 1),
        (SMALL, GEMINI, 1),
    ]
    assert rows[0]["cost"] == words(TEXTS) * RATE[MISTRAL]
    assert rows[1]["cost"] == o200k(TEXTS) * RATE[GEMINI]
    books = books_of(world.gateway, world.key_id)
    assert books["balance"] == 10 * 10**9 - rows[0]["cost"] - rows[1]["cost"]
    # every upstream fails: the last failure, with the attempts counted, and nothing charged
    world.mistral.status = 503
    with pytest.raises(openai.APIStatusError) as failed:
        await world.client().embeddings.create(model=SMALL, input=TEXTS)
    assert failed.value.status_code == 503
    assert failed.value.response.headers["x-tokenroute-fallbacks"] == "2"
    row = (await world.gateway.wait_usage_rows(3))[-1]
    assert (row["status"], row["cost"], row["fallbacks"]) == (503, 0, 2)
    assert books_of(world.gateway, world.key_id)["balance"] == books["balance"]


async def test_token_ids_skip_a_fallback_that_cannot_take_them(world: World) -> None:
    world.openai.status = 502
    failed = await world.post({"model": SMALL, "input": [[1, 2]], "models": [GEMINI]})
    assert failed.status_code == 502 and failed.headers["x-tokenroute-fallbacks"] == "1"
    assert "openai failed with HTTP 502" in failed.json()["error"]["message"]
    assert world.gemini.requests == []  # never tried: it takes text only


async def test_the_balance_caps_the_input(world: World) -> None:
    # 6,000 bytes: up to 6,002 tokens ($0.00012004); counted, 1,000 (held: 1,119, $0.00002238)
    text = "hello " * 1000
    tight_id, tight = world.gateway.create_key(credit="0.00005")
    reply = await world.client(tight).embeddings.create(model=SMALL, input=text)
    assert reply.usage.prompt_tokens == 1000
    await world.gateway.wait_usage_rows(1)
    assert books_of(world.gateway, tight_id)["balance"] == 50_000 - 1000 * RATE[SMALL]
    _, short = world.gateway.create_key(credit="0.00002")  # less than the counted input
    with pytest.raises(openai.APIStatusError) as refused:
        await world.client(short).embeddings.create(model=SMALL, input=text)
    assert refused.value.status_code == 402
    _, empty = world.gateway.create_key(credit="0")
    with pytest.raises(openai.APIStatusError) as refused:
        await world.client(empty).embeddings.create(model=SMALL, input=TEXTS)
    assert refused.value.status_code == 402
    error = refused.value.body
    assert isinstance(error, dict) and error["type"] == "insufficient_quota"
    assert error["message"].startswith(
        f"this key's balance of $0.00 cannot pay for this request on {SMALL}"
    )
    assert len(world.openai.requests) == 1  # the refused request never went upstream
    assert len(await world.gateway.wait_usage_rows(1)) == 1


async def test_a_client_that_leaves_cancels_the_upstream_and_pays_the_input(
    world: World,
) -> None:
    world.openai.think_seconds = 60
    with pytest.raises(openai.APITimeoutError):  # the client gives up and closes its connection
        await world.gateway.client(world.raw, timeout=0.5).embeddings.create(
            model=SMALL, input=TEXTS
        )
    left_at = trio.current_time()
    with trio.fail_after(5):
        while not world.openai.cancelled:  # noqa: ASYNC110 (polling the fake's record)
            await trio.sleep(0.005)
    # at once, not after its 60 s; loose: a shared machine stalls
    assert world.openai.cancelled[0] - left_at < 2.0, "the upstream ran on after the client left"
    [row] = await world.gateway.wait_usage_rows(1)
    # the upstream took the input: it is billed, counted, as the provider would bill it
    assert (row["status"], row["estimated"], row["tokens_in"]) == (499, 1, o200k(TEXTS))
    assert row["cost"] == o200k(TEXTS) * RATE[SMALL]
    books = books_of(world.gateway, world.key_id)
    assert books["holds"] == 0 and books["problems"] == []


async def test_a_bad_key_is_refused(world: World) -> None:
    with pytest.raises(openai.AuthenticationError):
        await world.client("sk-tr-not-a-key").embeddings.create(model=SMALL, input="hi")
    assert world.openai.requests == []


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        ({"model": SMALL}, "missing required parameter: 'input'", "input"),
        ({"input": "hi"}, "missing required parameter: 'model'", "model"),
        ({"model": SMALL, "input": ""}, "'input' must not be an empty string", "input"),
        ({"model": SMALL, "input": []}, "'input' must not be an empty array", "input"),
        ({"model": SMALL, "input": ["a", ""]}, "'input[1]' must not be an empty string", "input"),
        (
            {"model": SMALL, "input": ["a"] * 2049},
            "'input' has 2049 items; at most 2048 can be embedded in one request",
            "input",
        ),
        (
            {"model": SMALL, "input": ["a", 7]},
            "'input[1]' must be a string, as 'input[0]' is",
            "input",
        ),
        (
            {"model": SMALL, "input": [1, 2.5]},
            "'input[1]' must be a token id: an integer from 0 to 2147483647",
            "input",
        ),
        (
            {"model": SMALL, "input": [[1], [-4]]},
            "'input[1][0]' must be a token id: an integer from 0 to 2147483647",
            "input",
        ),
        (
            {"model": SMALL, "input": [[1], []]},
            "'input[1]' must not be an empty token array",
            "input",
        ),
        (
            {"model": SMALL, "input": {"text": "hi"}},
            "'input' must be a string, an array of strings, an array of token ids or an array "
            "of token arrays",
            "input",
        ),
        (
            {"model": SMALL, "input": "hi", "encoding_format": "int8"},
            "'encoding_format' must be 'float' or 'base64'",
            "encoding_format",
        ),
        (
            {"model": SMALL, "input": "hi", "dimensions": 0},
            "'dimensions' must be a positive integer",
            "dimensions",
        ),
        (
            {"model": SMALL, "input": "hi", "dimensions": "8"},
            "'dimensions' must be a positive integer",
            "dimensions",
        ),
        (
            {"model": "openai/gpt-4o-mini", "input": "hi"},
            "openai/gpt-4o-mini is a chat model, not an embedding model; GET /v1/models lists "
            'the embedding models (kind "embedding")',
            "model",
        ),
        (
            {"model": SMALL, "input": "hi", "models": ["openai/gpt-4o"]},
            "openai/gpt-4o is a chat model, not an embedding model; GET /v1/models lists the "
            'embedding models (kind "embedding")',
            "models",
        ),
        (
            {"model": "tokenroute/auto", "input": "hi"},
            "tokenroute/auto routes chat requests only; name an embedding model",
            "model",
        ),
    ],
)
async def test_bad_input_is_a_400_saying_what(
    world: World, body: dict[str, Any], message: str, param: str
) -> None:
    response = await world.post(body)
    assert response.status_code == 400, response.text
    assert response.json() == {
        "error": {"message": message, "type": "invalid_request_error", "code": 400, "param": param}
    }
    assert world.openai.requests == [] and world.gateway.usage_rows() == []


async def test_embedding_models_are_listed_and_kept_out_of_chat(world: World) -> None:
    client = world.client()
    listed = {m.id: m.model_extra for m in (await client.models.list()).data}
    assert listed[SMALL]["kind"] == "embedding"
    assert listed[SMALL]["pricing"]["input"] == "0.02"
    assert listed[SMALL]["pricing"]["output"] == "0"
    assert listed[MISTRAL]["pricing"]["input"] == "0.1"
    assert listed[GEMINI]["pricing"]["input"] == "0.15"
    assert listed["openai/text-embedding-3-large"]["pricing"]["input"] == "0.13"
    assert listed["mistral/codestral-embed"]["kind"] == "embedding"
    assert listed["openai/gpt-4o-mini"]["kind"] == "chat"
    one = await client.models.retrieve(GEMINI)
    assert one.model_extra and one.model_extra["context_length"] == 2048
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(
            model=SMALL, messages=[{"role": "user", "content": "hi"}]
        )
    assert refused.value.body == {
        "message": f"{SMALL} is an embedding model; send it to POST /v1/embeddings",
        "type": "invalid_request_error",
        "code": 400,
        "param": "model",
    }
    assert world.openai.requests == []
