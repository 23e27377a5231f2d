"""A hold bounds everything the upstream can bill: a small balance cannot buy a huge prompt
hidden in schemas, function definitions, audio, files, predictions or media by URL."""

from __future__ import annotations

import base64
import os
from typing import Any

import openai
import pytest

from tests.conftest import RunningGateway
from tests.fakes.openai_upstream import FakeOpenAI

HI = [{"role": "user", "content": "hi"}]
BLOB = "d " * 25_000  # ~50 KB of text, ~25,000 tokens
SCHEMA = {"type": "object", "description": BLOB, "properties": {}}
AUDIO = base64.b64encode(os.urandom(40_000)).decode()
PDF = "data:application/pdf;base64," + AUDIO

HIDDEN: list[dict[str, Any]] = [
    {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}}},
    {"functions": [{"name": "f", "description": BLOB, "parameters": {"type": "object"}}]},
    {"prediction": {"type": "content", "content": BLOB}},
    {"messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": AUDIO, "format": "wav"}}]}]},
    {"messages": [{"role": "user", "content": [
        {"type": "file", "file": {"filename": "a.pdf", "file_data": PDF}}]}]},
    {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/talk.mp4"}}]}]},
]  # fmt: skip


@pytest.mark.parametrize("extra", HIDDEN, ids=lambda e: next(iter(e)))
async def test_billed_input_beyond_the_messages_is_held_for(
    gateway: RunningGateway, fake_openai: FakeOpenAI, extra: dict[str, Any]
) -> None:
    # $0.001 pays for ~6,600 prompt tokens of gpt-4o-mini: "hi" easily, none of the above
    _, raw = gateway.create_key(credit="0.001")
    client = gateway.client(raw)
    body = {"messages": HI, "max_tokens": 16, **extra}
    with pytest.raises(openai.APIStatusError) as refused:
        await client.chat.completions.create(model="openai/gpt-4o-mini", **body)
    assert refused.value.status_code == 402
    assert fake_openai.requests == []  # refused before any upstream could bill it
    reply = await client.chat.completions.create(
        model="openai/gpt-4o-mini", messages=HI, max_tokens=16
    )
    assert reply.choices[0].message.content


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"service_tier": "priority"}, "service_tier"),
        ({"service_tier": "flex"}, "service_tier"),
        (
            {"messages": [{"role": "user", "content": [
                {"type": "file", "file": {"file_id": "file-operators"}}]}]},
            "messages[0].content[0].file",
        ),
    ],
)  # fmt: skip
async def test_what_cannot_be_priced_is_refused(
    gateway: RunningGateway, fake_openai: FakeOpenAI, extra: dict[str, Any], param: str
) -> None:
    _, raw = gateway.create_key(credit="10")
    with pytest.raises(openai.BadRequestError) as refused:
        await gateway.client(raw).chat.completions.create(
            model="openai/gpt-4o-mini", **{"messages": HI, **extra}
        )
    assert refused.value.body["param"] == param  # type: ignore[index]
    assert fake_openai.requests == []
