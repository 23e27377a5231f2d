"""Pure pieces: money, prices, SSE decoding, the OpenAI adapter."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from proxy.core.chat import ChatRequest, Usage, parse_chat_request
from proxy.core.config import load_settings
from proxy.core.errors import BadRequest, ConfigError
from proxy.core.money import MoneyError, format_usd, rate_from_usd_per_mtok, usd_to_units
from proxy.core.sse import Decoder
from proxy.providers.openai import OpenAIAdapter
from proxy.routing.catalog import Catalog, build_catalog
from tests.wire import wire


def test_money_round_trips_and_rejects_floats() -> None:
    assert usd_to_units("5") == 5_000_000_000
    assert usd_to_units("0.000000001") == 1
    assert format_usd(5_000_000_000) == "5.00"
    assert format_usd(150_000) == "0.00015"
    assert format_usd(0) == "0.00"
    assert format_usd(-1) == "-0.000000001"
    with pytest.raises(MoneyError):
        usd_to_units(0.1)  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        usd_to_units("0.0000000001")
    with pytest.raises(MoneyError):
        usd_to_units("five")


def test_rates_are_exact_integers() -> None:
    assert rate_from_usd_per_mtok(Decimal("0.15")) == 150_000  # pico-USD per token
    assert rate_from_usd_per_mtok(Decimal("0.0375")) == 37_500


def catalog(**env: str) -> Catalog:
    return build_catalog(load_settings({"OPENAI_API_KEY": "k", **env}))


def test_catalog_prices_come_from_genai_prices() -> None:
    mini = catalog().get("openai/gpt-4o-mini")
    assert mini is not None and mini.upstream_id == "gpt-4o-mini"
    assert mini.context_length == 128000
    # 1M in + 1M out = $0.15 + $0.60
    assert mini.price.cost(Usage(1_000_000, 1_000_000)) == usd_to_units("0.75")
    # cached input is charged at the cache-read price ($0.075)
    assert mini.price.cost(Usage(1_000_000, 0, cached_tokens=1_000_000)) == usd_to_units("0.075")
    assert mini.price.cost(Usage(1, 0)) == 150  # nano-USD, rounded up from 150 exactly


def test_catalog_overrides_markup_and_hiding(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "c.toml"
    path.write_text(
        '[server]\nmarkup = "0.1"\n'
        '[models."openai/gpt-4o"]\ninput_price = "1"\noutput_price = "2"\ncontext_length = 1000\n'
        '[models."openai/o3"]\nhidden = true\n'
        '[models."openai/ft-custom"]\nupstream_id = "ft:gpt-4o-mini:acme"\ninput_price = "0.3"\n'
        'output_price = "1.2"\n'
    )
    cat = build_catalog(load_settings({"OPENAI_API_KEY": "k"}, path))
    gpt4o = cat.get("openai/gpt-4o")
    assert gpt4o is not None and gpt4o.context_length == 1000
    assert gpt4o.price.cost(Usage(1_000_000, 1_000_000)) == usd_to_units("3.3")  # +10 %
    assert cat.get("openai/o3") is None
    assert "openai/o3" not in {m.id for m in cat.listed()}
    custom = cat.get("openai/ft-custom")
    assert custom is not None and custom.upstream_id == "ft:gpt-4o-mini:acme"


def test_a_model_without_prices_is_refused_unless_free(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "c.toml"
    local = '[providers.local]\nbase_url = "http://127.0.0.1:9/v1"\nmodels = ["llama"]\n'
    path.write_text(local)
    with pytest.raises(ConfigError, match=r'models."local/llama".*no input and output price'):
        build_catalog(load_settings({}, path))
    path.write_text(local + '[models."local/llama"]\ninput_price = "0.1"\n')
    with pytest.raises(ConfigError, match="no output price"):
        build_catalog(load_settings({}, path))
    path.write_text(local + '[models."local/llama"]\nfree = true\n')
    llama = build_catalog(load_settings({}, path)).get("local/llama")
    assert llama is not None and llama.price.cost(Usage(1000, 1000)) == 0


def test_tiered_prices_switch_on_long_prompts() -> None:
    from genai_prices.types import ModelPrice, Tier, TieredPrices

    from proxy.routing.catalog import _price  # the genai-prices bridge

    price = _price(
        ModelPrice(
            input_mtok=TieredPrices(base=Decimal(3), tiers=[Tier(start=200_000, price=Decimal(6))]),
            output_mtok=Decimal(15),
        ),
        None,
        Decimal(0),
    )
    assert price.cost(Usage(200_000, 0)) == usd_to_units("0.6")
    assert price.cost(Usage(200_001, 0)) == usd_to_units("1.200006")


def test_sse_decoder_handles_split_and_crlf_input() -> None:
    decoder = Decoder()
    events = []
    for piece in [
        b'data: {"a"',
        b": 1}\r",
        b"\n\r\n: comment\n\ndata: x\n",
        b"data: y\n\n",
        b"data: [DONE]",
    ]:
        events += decoder.feed(piece)
    events += decoder.flush()
    assert [e.data for e in events] == ['{"a": 1}', "x\ny", "[DONE]"]


def test_parse_chat_request_errors_name_the_field() -> None:
    with pytest.raises(BadRequest, match="'messages\\[1\\]'"):
        parse_chat_request({"model": "m", "messages": [{"role": "user"}, "oops"]})
    with pytest.raises(BadRequest, match="'stream'"):
        parse_chat_request({"model": "m", "messages": [{"role": "user"}], "stream": "yes"})
    chat = parse_chat_request(
        {
            "model": "m",
            "messages": [{"role": "user"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    assert chat.include_usage


def _chat(body: dict[str, object]) -> ChatRequest:
    return parse_chat_request(
        {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **body}
    )


def test_openai_adapter_passes_fields_through() -> None:
    model = catalog().get("openai/gpt-4o-mini")
    assert model is not None
    adapter = OpenAIAdapter("openai")
    body = {
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "logprobs": True,
        "response_format": {"type": "json_object"},
        "stream": True,
        "stream_options": {"include_usage": False},
    }
    request = adapter.chat_request(_chat(body), model, "sk-up")
    sent = orjson.loads(request.body)
    assert sent["model"] == "gpt-4o-mini"
    assert sent["tools"] == body["tools"] and sent["logprobs"] is True
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["stream_options"] == {"include_usage": True}
    assert request.headers["authorization"] == "Bearer sk-up"


def sse(data: dict[str, object]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def test_openai_stream_hides_usage_unless_asked() -> None:
    model = catalog().get("openai/gpt-4o-mini")
    assert model is not None
    chunk = sse({"id": "c", "choices": [{"index": 0, "delta": {"content": "Hi"}}], "usage": None})
    usage = sse({"id": "c", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}})
    usage += b"data: [DONE]\n\n"
    stream = OpenAIAdapter("openai").chat_stream(_chat({"stream": True}), model)
    out = wire(stream.feed(chunk + usage))
    assert len(out) == 1 and b'"usage"' not in out[0] and b'"model":"openai/gpt-4o-mini"' in out[0]
    assert stream.state.usage == Usage(3, 1) and stream.state.done
    asked = OpenAIAdapter("openai").chat_stream(
        _chat({"stream": True, "stream_options": {"include_usage": True}}), model
    )
    assert len(asked.feed(chunk + usage)) == 2
