"""A request the upstream may have read is never sent to it again.

The upstream here reads each request whole, then drops the connection without a word:
it may be generating (and billing the operator for) an answer. The gateway must not
send the same POST again.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import openai
import pytest
import trio

from proxy.core.config import load_settings
from tests.conftest import running_gateway

CONFIG = """
[providers.flaky]
base_url = "http://127.0.0.1:{port}/v1"
models = ["m"]

[models."flaky/m"]
input_price = "1"
output_price = "2"
"""


async def read_then_drop(received: list[bytes], stream: trio.SocketStream) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive_some()
    header, _, body = data.partition(b"\r\n\r\n")
    length = int(header.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += await stream.receive_some()
    received.append(body)
    await stream.aclose()  # no answer at all


async def test_a_request_read_by_the_upstream_is_not_sent_again(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    received: list[bytes] = []
    listeners = await nursery.start(
        partial(trio.serve_tcp, partial(read_then_drop, received), 0, host="127.0.0.1")
    )
    port = listeners[0].socket.getsockname()[1]
    config = tmp_path / "tokenroute.toml"
    config.write_text(CONFIG.format(port=port))
    settings = load_settings({}, config, {"db_path": tmp_path / "gw.db", "port": 0})
    async with running_gateway(nursery, settings) as gateway:
        _, raw = gateway.create_key()
        for n in range(1, 4):
            with pytest.raises(openai.APIStatusError) as caught:
                await gateway.client(raw).chat.completions.create(
                    model="flaky/m", messages=[{"role": "user", "content": f"hi {n}"}]
                )
            assert caught.value.status_code == 502
            assert len(received) == n  # once each, never twice
    nursery.cancel_scope.cancel()
