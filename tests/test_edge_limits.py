"""The edge reads a body only for a request that may go on, within a budget, and a flood of
made-up keys neither reaches the database nor slows the keys that exist.

Raw sockets where the point is what the server does before the body arrives.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import replace
from pathlib import Path

import httpx2 as httpx
import pytest
import trio

from proxy.core.config import Settings
from tests.conftest import RunningGateway, running_gateway
from tests.fakes.openai_upstream import FakeOpenAI

BODY = b'{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'


def head(path: str, key: str, length: int, host: str = "gw") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {key}\r\n"
        f"content-type: application/json\r\ncontent-length: {length}\r\n\r\n"
    ).encode()


async def answer(stream: trio.SocketStream) -> tuple[bytes, bool]:
    """(the response, whether the server then closed the connection)."""
    data = b""
    with trio.fail_after(10):
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some()
            if not chunk:
                return data, True
            data += chunk
        header, _, rest = data.partition(b"\r\n\r\n")
        length = int(header.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(rest) < length:
            rest += await stream.receive_some()
        closed = False
        with trio.move_on_after(1):
            closed = await stream.receive_some() == b""
    return header + b"\r\n\r\n" + rest, closed


async def connect(gateway: RunningGateway) -> trio.SocketStream:
    host, port = gateway.url.removeprefix("http://").split(":")
    return await trio.open_tcp_stream(host, int(port))


async def test_an_unknown_key_is_refused_before_its_body(
    gateway: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    async with await connect(gateway) as stream:
        await stream.send_all(head("/v1/chat/completions", "sk-tr-" + "x" * 40, 20_000_000))
        reply, closed = await answer(stream)  # not one byte of the 20 MB was sent
    assert reply.startswith(b"HTTP/1.1 401") and b"connection: close" in reply.lower()
    assert closed and fake_openai.requests == []


async def test_a_refused_body_never_hangs_the_next_request(gateway: RunningGateway) -> None:
    _, raw = gateway.create_key()
    async with httpx.AsyncClient(base_url=gateway.url, timeout=3) as client:
        for size in (300_000, 2_000_000, 1_000, 2_000_000, 700_000):
            refused = await client.post("/api/nope", content=b"x" * size)
            assert refused.status_code == 404
            # a small body is drained and the connection kept; a large one is not read
            assert (refused.headers.get("connection") == "close") == (size > 64 * 1024)
            assert (await client.get("/healthz")).status_code == 200
            models = await client.get("/v1/models", headers={"authorization": f"Bearer {raw}"})
            assert models.status_code == 200


@pytest.fixture
def small_budget(gateway_settings: Settings) -> Settings:
    mib = 1024 * 1024
    return replace(gateway_settings, max_body_bytes=2 * mib, max_body_buffer_bytes=2 * mib)


async def test_large_bodies_share_a_budget(
    nursery: trio.Nursery, small_budget: Settings, tmp_path: Path
) -> None:
    async with running_gateway(nursery, small_budget) as gateway:
        _, raw = gateway.create_key()
        slow = await connect(gateway)
        await slow.send_all(head("/v1/chat/completions", raw, 1_500_000) + b"{")  # then nothing
        await trio.sleep(0.5)
        async with await connect(gateway) as second:
            await second.send_all(head("/v1/chat/completions", raw, 1_500_000))
            reply, _ = await answer(second)
        assert reply.startswith(b"HTTP/1.1 503") and b"retry-after: 1" in reply.lower()
        await slow.aclose()  # the budget is free again
        await trio.sleep(0.2)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
            fits = await client.post(
                "/v1/chat/completions",
                content=BODY[:-1] + b', "user": "' + b"u" * 1_400_000 + b'"}',
                headers={"authorization": f"Bearer {raw}", "content-type": "application/json"},
            )
        assert fits.status_code == 200


async def test_a_flood_of_made_up_keys_costs_no_read_each(gateway: RunningGateway) -> None:
    _, raw = gateway.create_key()
    alphabet = string.ascii_letters + string.digits
    reads_before = gateway.services.status.store_stats().reads
    served: list[int] = []

    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:

        async def flood(n: int) -> None:
            for _ in range(n):
                key = "sk-tr-" + "".join(secrets.choice(alphabet) for _ in range(40))
                reply = await client.post(
                    "/v1/chat/completions", content=BODY, headers={"authorization": f"Bearer {key}"}
                )
                assert reply.status_code == 401

        async def the_real_one() -> None:
            for _ in range(30):
                reply = await client.get("/v1/models", headers={"authorization": f"Bearer {raw}"})
                served.append(reply.status_code)
                await trio.sleep(0.02)

        async with trio.open_nursery() as nursery:
            for _ in range(64):
                nursery.start_soon(flood, 2000 // 64 + 1)
            nursery.start_soon(the_real_one)

    assert served == [200] * 30
    reads = gateway.services.status.store_stats().reads - reads_before
    assert reads < 100, f"{reads} database reads for 2,000 made-up keys"
