#!/usr/bin/env python3
"""A fast fake OpenAI upstream for benchmarks (stdlib asyncio; uvloop if importable).

Raw HTTP/1.1 with keep-alive, no framework, loopback by default:

  POST /v1/chat/completions       "stream": true in the body -> SSE (chunked): a role
                                  chunk, --chunks content chunks paced --stream-delay s
                                  apart, a finish chunk, a usage chunk, `data: [DONE]`;
                                  otherwise a fixed ~800-byte chat.completion with usage
  POST /slow/v1/chat/completions  the same, paced --slow-delay s apart, --slow-chunks
                                  content chunks (a base URL ending in /slow/v1 makes a
                                  gateway relay long, slow streams)
  GET  /v1/models, /slow/v1/models, /health

  fake_upstream.py --port 18480 [--stream-delay 0.01] [--chunks 20]

Bounded: it exits after --max-seconds, and when its parent process goes away.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from typing import ClassVar

MODEL = "gpt-4o-mini-2024-07-18"
CREATED = 1_767_225_600
USAGE = {"prompt_tokens": 25, "completion_tokens": 20, "total_tokens": 45}
MAX_HEADER = 64 * 1024
MAX_BODY = 32 * 1024 * 1024

_COMPLETION_TEXT = (
    "Start with a fake upstream that answers instantly, so the gateway is the only thing "
    "under test, then drive it with a closed-loop load generator at a few fixed concurrency "
    "levels while you record throughput, latency percentiles, CPU and memory. Compare "
    "with the same load sent straight to the upstream."
)


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _completion_body() -> bytes:
    return _json(
        {
            "id": "chatcmpl-bench0000000000000000000001",
            "object": "chat.completion",
            "created": CREATED,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": _COMPLETION_TEXT, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                **USAGE,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
            },
            "service_tier": "default",
            "system_fingerprint": "fp_bench00001",
        }
    )


def _chunk(choices: list[object], usage: object = None) -> dict[str, object]:
    return {
        "id": "chatcmpl-bench0000000000000000000002",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "service_tier": "default",
        "system_fingerprint": "fp_bench00001",
        "choices": choices,
        "usage": usage,
    }


def _event(obj: object) -> bytes:
    data = b"data: " + _json(obj) + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)  # one HTTP chunk per SSE event


def _stream_parts(n_chunks: int) -> tuple[bytes, list[bytes], bytes]:
    """(head: headers + role chunk, content chunks, tail: finish + usage + [DONE] + end)."""
    headers = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
        b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    role = _event(
        _chunk(
            [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": "", "refusal": None},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ]
        )
    )
    words = _COMPLETION_TEXT.split()
    content = [
        _event(
            _chunk(
                [
                    {
                        "index": 0,
                        "delta": {"content": words[i % len(words)] + " "},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ]
            )
        )
        for i in range(n_chunks)
    ]
    usage = {
        **USAGE,
        "completion_tokens": n_chunks,
        "total_tokens": USAGE["prompt_tokens"] + n_chunks,
    }
    done = b"data: [DONE]\n\n"
    tail = (
        _event(_chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]))
        + _event(_chunk([], usage))
        + b"%x\r\n%s\r\n" % (len(done), done)
        + b"0\r\n\r\n"
    )
    return headers + role, content, tail


def _fixed(status: str, body: bytes, ctype: bytes = b"application/json") -> bytes:
    return b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (status.encode(), ctype, len(body)) + body


class Routes:
    def __init__(self, a: argparse.Namespace) -> None:
        self.completion = _fixed("200 OK", _completion_body())
        self.models = _fixed(
            "200 OK",
            _json(
                {
                    "object": "list",
                    "data": [
                        {
                            "id": "gpt-4o-mini",
                            "object": "model",
                            "created": CREATED,
                            "owned_by": "system",
                        },
                        {"id": MODEL, "object": "model", "created": CREATED, "owned_by": "system"},
                    ],
                }
            ),
        )
        self.health = _fixed("200 OK", b'{"status":"ok"}')
        self.not_found = _fixed(
            "404 Not Found",
            _json({"error": {"message": "not found", "type": "invalid_request_error"}}),
        )
        self.bad = _fixed(
            "400 Bad Request",
            _json({"error": {"message": "bad request", "type": "invalid_request_error"}}),
        )
        self.fast = (_stream_parts(a.chunks), a.stream_delay)
        self.slow = (_stream_parts(a.slow_chunks), a.slow_delay)


class Conn(asyncio.Protocol):
    """One client connection: parse requests one at a time (pipelining is queued)."""

    routes: Routes
    conns: ClassVar[set[Conn]] = set()
    stats: ClassVar[dict[str, int]] = {"requests": 0, "streams": 0, "open": 0, "peak_open": 0}

    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy: asyncio.Task[None] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        Conn.conns.add(self)
        s = Conn.stats
        s["open"] += 1
        s["peak_open"] = max(s["peak_open"], s["open"])

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        Conn.conns.discard(self)
        Conn.stats["open"] -= 1
        if self.busy is not None:
            self.busy.cancel()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.busy is None:
            self.process()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    def process(self) -> None:
        """Answer every complete request in the buffer (stops at a stream until it ends)."""
        while not self.closed and self.busy is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEADER:
                    self.close()
                return
            head = bytes(self.buf[:end]).decode("latin-1")
            lines = head.split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3:
                self.transport.write(self.bad)  # type: ignore[union-attr]
                self.close()
                return
            method, target, version = parts
            length, keep_alive = 0, version == "HTTP/1.1"
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    try:
                        length = int(value.strip())
                    except ValueError:
                        length = -1
                elif name == "connection":
                    v = value.strip().lower()
                    keep_alive = (v != "close") if version == "HTTP/1.1" else (v == "keep-alive")
                elif name == "transfer-encoding":
                    length = -1  # chunked request bodies are not supported here
            if not 0 <= length <= MAX_BODY:
                self.transport.write(self.bad)  # type: ignore[union-attr]
                self.close()
                return
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4 : end + 4 + length])
            del self.buf[: end + 4 + length]
            Conn.stats["requests"] += 1
            self.dispatch(method, target.split("?", 1)[0], body, keep_alive)

    def dispatch(self, method: str, path: str, body: bytes, keep_alive: bool) -> None:
        r = Conn.routes
        w = self.transport.write  # type: ignore[union-attr]
        slow = path.startswith("/slow/")
        if slow:
            path = path[5:]
        if method == "POST" and path == "/v1/chat/completions":
            if b'"stream":true' in body or b'"stream": true' in body:
                Conn.stats["streams"] += 1
                self.busy = asyncio.ensure_future(self.stream(r.slow if slow else r.fast, keep_alive))
                return
            w(r.completion)
        elif method == "GET" and path == "/v1/models":
            w(r.models)
        elif method == "GET" and path in ("/health", "/v1/health"):
            w(r.health)
        else:
            w(r.not_found)
        if not keep_alive:
            self.close()

    async def stream(self, spec: tuple[tuple[bytes, list[bytes], bytes], float], keep_alive: bool) -> None:
        (head, content, tail), delay = spec
        w = self.transport.write  # type: ignore[union-attr]
        try:
            w(head)
            for part in content:
                if delay > 0:
                    await asyncio.sleep(delay)
                if self.closed:
                    return
                w(part)
            if delay > 0:
                await asyncio.sleep(delay)
            if self.closed:
                return
            w(tail)
        except asyncio.CancelledError:
            return
        finally:
            self.busy = None
        if not keep_alive:
            self.close()
        elif self.buf:
            self.process()


async def serve(a: argparse.Namespace) -> None:
    Conn.routes = Routes(a)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Conn, a.host, a.port, backlog=a.backlog, reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    print(
        json.dumps(
            {
                "ready": True,
                "host": a.host,
                "port": port,
                "pid": os.getpid(),
                "loop": type(loop).__module__.split(".")[0],
            }
        ),
        flush=True,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    parent = os.getppid()
    deadline = time.monotonic() + a.max_seconds
    while not stop.is_set() and time.monotonic() < deadline:
        if a.watch_parent and os.getppid() != parent:
            break  # the orchestrator went away: do not linger
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)
    server.close()
    for c in list(Conn.conns):
        c.close()
    print(json.dumps({"stopped": True, **Conn.stats}), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18480, help="0 = any free port (printed on stdout)")
    ap.add_argument("--stream-delay", type=float, default=0.01, help="seconds between content chunks")
    ap.add_argument("--chunks", type=int, default=20, help="content chunks per stream")
    ap.add_argument("--slow-delay", type=float, default=1.0, help="pacing under /slow/ (seconds)")
    ap.add_argument("--slow-chunks", type=int, default=30, help="content chunks under /slow/")
    ap.add_argument("--backlog", type=int, default=4096)
    ap.add_argument("--max-seconds", type=float, default=6 * 3600, help="exit after this long")
    ap.add_argument(
        "--no-watch-parent",
        dest="watch_parent",
        action="store_false",
        help="keep running when the parent process exits",
    )
    a = ap.parse_args()
    try:
        import resource

        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass
    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.run(serve(a))
    except ImportError:
        asyncio.run(serve(a))
    return 0


if __name__ == "__main__":
    sys.exit(main())
