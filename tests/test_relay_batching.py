"""Events that arrive in one upstream read leave in one client write.

The relay peeks at the HTTP connection's buffer to know whether the next event
is already there; this test holds that peek to the installed httpx2 version.
"""

from __future__ import annotations

from functools import partial

import httpx2 as httpx
import trio

from proxy.upstream.stream import _buffered_probe


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def _upstream(stream: trio.SocketStream, release: trio.Event) -> None:
    request = b""
    while b"\r\n\r\n" not in request:
        request += await stream.receive_some(65536)
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    burst = b"".join(_chunk(b'data: {"n": %d}\n\n' % i) for i in range(3))
    await stream.send_all(head + burst)  # three events in one write
    await release.wait()
    await stream.send_all(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
    await stream.aclose()


async def test_probe_sees_events_already_buffered() -> None:
    release = trio.Event()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(trio.serve_tcp, partial(_upstream, release=release), 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        async with httpx.AsyncHTTPTransport() as transport:
            request = httpx.Request("POST", f"http://127.0.0.1:{port}/v1/chat/completions")
            response = await transport.handle_async_request(request)
            more_buffered = _buffered_probe(response)
            raw = response.aiter_raw()
            seen = [await raw.__anext__()]
            while more_buffered():
                seen.append(await raw.__anext__())
            assert b"".join(seen).count(b"data: {") == 3
            assert not more_buffered()  # the rest has not been sent: wait, do not batch
            release.set()
            rest = b"".join([chunk async for chunk in raw])
            assert rest == b"data: [DONE]\n\n"
            await response.aclose()
        nursery.cancel_scope.cancel()
