"""Every /v1 error is OpenAI's envelope with the right status; nothing leaks, nothing hangs."""

from __future__ import annotations

from pathlib import Path

import httpx2 as httpx
import openai
import orjson
import pytest
import trio

from proxy.core.config import Settings, load_settings
from proxy.core.sse import MAX_LINE
from tests.conftest import RunningGateway
from tests.fakes.openai_upstream import FakeOpenAI

BODY_LIMIT = 64 * 1024


@pytest.fixture
def gateway_settings(tmp_path: Path, gateway_env: dict[str, str]) -> Settings:
    env = {
        **gateway_env,
        # a provider whose server is not there
        "DEEPSEEK_API_KEY": "sk-deepseek-secret",
        "DEEPSEEK_BASE_URL": "http://127.0.0.1:9/v1",
        "TOKENROUTE_MAX_BODY_BYTES": str(BODY_LIMIT),
    }
    return load_settings(env, None, {"db_path": tmp_path / "t.db", "port": 0})


async def post(gateway: RunningGateway, raw: str | None, body: bytes) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if raw:
        headers["authorization"] = f"Bearer {raw}"
    async with httpx.AsyncClient() as client:
        return await client.post(
            gateway.url + "/v1/chat/completions", content=body, headers=headers
        )


def assert_envelope(response: httpx.Response, status: int, error_type: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-request-id"]
    error = response.json()["error"]
    assert error["type"] == error_type and error["code"] == status
    assert isinstance(error["message"], str) and error["message"]
    return str(error["message"])


async def test_bad_input_gets_400_saying_what_is_wrong(gateway: RunningGateway) -> None:
    _, raw = gateway.create_key()
    message = assert_envelope(await post(gateway, raw, b'{"model": '), 400, "invalid_request_error")
    assert "not valid JSON" in message
    message = assert_envelope(
        await post(gateway, raw, b'{"messages": [{"role": "user", "content": "hi"}]}'),
        400,
        "invalid_request_error",
    )
    assert "'model'" in message
    message = assert_envelope(
        await post(gateway, raw, b'{"model": "openai/gpt-4o-mini"}'), 400, "invalid_request_error"
    )
    assert "'messages'" in message
    message = assert_envelope(await post(gateway, raw, b"[1, 2]"), 400, "invalid_request_error")
    assert "JSON object" in message
    assert gateway.usage_rows() == []  # nothing reached an upstream


async def test_body_over_the_limit_is_413(gateway: RunningGateway) -> None:
    _, raw = gateway.create_key()
    big = orjson.dumps(
        {
            "model": "openai/gpt-4o-mini",
            "messages": [{"role": "user", "content": "x" * (BODY_LIMIT + 10)}],
        }
    )
    assert_envelope(await post(gateway, raw, big), 413, "invalid_request_error")


async def test_authentication_errors(gateway: RunningGateway) -> None:
    body = b'{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
    message = assert_envelope(await post(gateway, None, body), 401, "authentication_error")
    assert "Bearer" in message
    assert_envelope(await post(gateway, "sk-tr-" + "a" * 40, body), 401, "authentication_error")
    assert_envelope(await post(gateway, "not-a-key", body), 401, "authentication_error")
    with pytest.raises(openai.AuthenticationError):
        await gateway.client("sk-tr-" + "b" * 40).models.list()


@pytest.mark.parametrize(
    ("upstream_status", "status", "error_type"),
    [
        (500, 502, "upstream_error"),
        (503, 503, "service_unavailable"),
        (529, 503, "service_unavailable"),
        (504, 504, "timeout_error"),
        (400, 400, "invalid_request_error"),
    ],
)
async def test_upstream_failures_map_to_gateway_errors(
    gateway: RunningGateway,
    fake_openai: FakeOpenAI,
    upstream_status: int,
    status: int,
    error_type: str,
) -> None:
    fake_openai.status = upstream_status
    key_id, raw = gateway.create_key()
    for stream in (b"false", b"true"):
        body = (
            b'{"model": "openai/gpt-4o-mini", "stream": '
            + stream
            + (b', "messages": [{"role": "user", "content": "hi"}]}')
        )
        message = assert_envelope(await post(gateway, raw, body), status, error_type)
        assert f"fake failure {upstream_status}" in message  # the upstream's own words
    rows = await gateway.wait_usage_rows(2)
    assert {(r["status"], r["cost"], r["key_id"]) for r in rows} == {(status, 0, key_id)}


async def test_upstream_rate_limit_keeps_retry_after(
    gateway: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    fake_openai.status, fake_openai.retry_after = 429, "7"
    _, raw = gateway.create_key()
    body = b'{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
    response = await post(gateway, raw, body)
    assert_envelope(response, 429, "rate_limit_error")
    assert response.headers["retry-after"] == "7"


async def test_upstream_credential_failure_does_not_leak(
    gateway: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    fake_openai.status = 401
    fake_openai.error_body = {"error": {"message": "Incorrect API key provided: sk-upst***123"}}
    _, raw = gateway.create_key()
    body = b'{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
    response = await post(gateway, raw, body)
    message = assert_envelope(response, 502, "upstream_error")
    assert "sk-" not in message and "operator" in message


async def test_unreachable_upstream_is_502(gateway: RunningGateway) -> None:
    _, raw = gateway.create_key()
    body = b'{"model": "deepseek/deepseek-chat", "messages": [{"role": "user", "content": "hi"}]}'
    message = assert_envelope(await post(gateway, raw, body), 502, "upstream_error")
    assert "deepseek" in message


async def test_mid_stream_failure_ends_with_an_error_event(
    gateway: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    fake_openai.fail_mid_stream_after = 2
    _, raw = gateway.create_key()
    stream = await gateway.client(raw).chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
    )
    texts = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                texts.append(chunk.choices[0].delta.content)
    assert texts == ["Hello", " from"]
    assert "mid-stream failure" in caught.value.message
    [row] = await gateway.wait_usage_rows(1)
    assert row["status"] == 502 and row["tokens_out"] > 0  # the partial output is billed


async def test_unknown_route_and_method_use_the_envelope(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(gateway.url + "/v1/nope")
        assert_envelope(response, 404, "invalid_request_error")
        response = await client.get(gateway.url + "/v1/chat/completions")
        assert response.status_code == 405
        assert response.json()["error"]["code"] == 405


async def test_a_10_mb_stream_line_is_relayed_in_linear_time(
    gateway: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    fake_openai.huge_content = 10 * 1024 * 1024
    _, raw = gateway.create_key(credit="100")
    stream = await gateway.client(raw, timeout=60).chat.completions.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    with trio.fail_after(10):  # about 1 s; over 20 s when each read re-scans the line
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert len(text) == fake_openai.huge_content


async def test_a_stream_line_over_the_cap_ends_the_stream_with_an_error(
    gateway: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    fake_openai.huge_content = MAX_LINE + 1
    _, raw = gateway.create_key(credit="100")
    stream = await gateway.client(raw, timeout=60).chat.completions.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    with pytest.raises(openai.APIError, match="stream line too long"):
        async for _ in stream:
            pass
    [row] = await gateway.wait_usage_rows(1)
    assert row["status"] == 502
