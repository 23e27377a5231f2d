"""The byte ceiling used for holds never undercounts the prompt."""

from __future__ import annotations

import base64
import os

from proxy.money.tokens import IMAGE_TOKENS, TokenCounter, prompt_ceiling

SAMPLES = [
    "Explain in two sentences how to load test an API gateway.",
    "def f(x):\n    return {k: v for k, v in x.items() if v is not None}  # 🚀",
    "日本語のテキストは一文字ずつトークンになることが多いです。",
    "Ελληνικά, русский текст, العربية, עברית, हिन्दी",
    base64.b64encode(os.urandom(3000)).decode(),
    "   \n\n\t" * 200,
]


async def test_the_ceiling_is_above_the_token_count() -> None:
    counter = TokenCounter()
    for text in SAMPLES:
        body = {"messages": [{"role": "user", "content": text}]}
        counted = await counter.count_request(body)
        assert counted <= prompt_ceiling(body), text[:40]


async def test_tools_and_images_are_held_for() -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 10_000}}
    body = {
        "messages": [{"role": "user", "content": [{"type": "text", "text": "what is it"}, image]}],
        "tools": tools,
    }
    plain = {"messages": [{"role": "user", "content": "what is it"}]}
    # the image counts as an allowance, not as its 10,000 characters of base64
    assert IMAGE_TOKENS < prompt_ceiling(body) - prompt_ceiling(plain) < IMAGE_TOKENS + 200
    assert await TokenCounter().count_request(body) <= prompt_ceiling(body)
