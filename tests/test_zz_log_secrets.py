"""No secret in any log line of the test run: raw keys, provider keys, passwords, login
tokens, refresh tokens, codes, the internal secret, Stripe secrets.

This file runs last (by name), after the suite has driven every surface; on its own it
first drives the ones that handle secrets (a key, a wrong key, a password sign-in, a
device login, a chat request), so it checks something either way.
"""

from __future__ import annotations

import re

import httpx2 as httpx
import orjson

from tests.admin_helpers import PASSWORD as ADMIN_PASSWORD
from tests.conftest import INTERNAL_SECRET, RunningGateway
from tests.fakes.stripe_api import SECRET_KEY, WEBHOOK_SECRET
from tests.log_capture import CAPTURE
from tests.test_device_flow import PASSWORD as DEVICE_PASSWORD
from tests.test_key_management import login
from tests.test_mcp_oauth import PASSWORD as OAUTH_PASSWORD

KNOWN = [
    "sk-upstream-secret-123", "sk-ant-test", "sk-oa-test", "gm-test",  # provider keys in tests
    SECRET_KEY, WEBHOOK_SECRET, INTERNAL_SECRET, ADMIN_PASSWORD, DEVICE_PASSWORD, OAUTH_PASSWORD,
]  # fmt: skip
PATTERNS = {
    "a raw sk-tr key": re.compile(r"sk-tr-[A-Za-z0-9]{20,}"),
    "a JWT": re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+"),
    "a refresh token, device or authorization code": re.compile(r"\b(rt|dc|ac|pr)_[\w-]{30,}"),
    "a Stripe secret": re.compile(r"\b(sk|rk)_(test|live)_\w+|whsec_\w+"),
}


async def test_no_log_line_carries_a_secret(gateway: RunningGateway) -> None:
    key_id, raw = gateway.create_key()
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        auth = await login(gateway, http)
        chat = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        ok = await http.post("/v1/chat/completions", json=chat,
                             headers={"authorization": f"Bearer {raw}"})  # fmt: skip
        await http.post("/v1/chat/completions", json=chat,
                        headers={"authorization": raw[:-4] + "abcd"})  # fmt: skip
        await http.get("/api/v1/me", headers=auth)
    assert ok.status_code == 200
    request_lines = [orjson.loads(line) for line in CAPTURE.lines if line.startswith("{")]
    mine = [r for r in request_lines if r.get("event") == "request" and r.get("key_id") == key_id]
    assert mine and mine[-1]["status"] == 200 and mine[-1]["cost"] > 0  # request lines are on
    secrets = [*KNOWN, raw, auth["authorization"].removeprefix("Bearer ")]
    leaks = []
    for line in CAPTURE.lines:
        leaks += [f"{s[:8]}... in {line[:300]}" for s in secrets if s in line]
        leaks += [f"{what} in {line[:300]}" for what, p in PATTERNS.items() if p.search(line)]
    assert not leaks, "\n".join(leaks[:20])
    assert len(CAPTURE.lines) > 20
