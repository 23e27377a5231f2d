#!/usr/bin/env python3
"""Concurrent SSE load for /v1/chat/completions (stdlib asyncio; uvloop if importable).

Two modes, both bounded (per-stream timeout, whole-batch deadline):

  burst (default)  -n N streams at once, one connection each (`Connection: close`);
                   --ramp S spreads the N starts evenly over S seconds.
  closed loop      --closed C --duration D: C workers, each on one keep-alive
                   connection, start a new stream as soon as the last one ended,
                   until D seconds have passed (streams/s = completed / wall).

Per stream it records ttfb (first response byte: the status line), ttft (the
first SSE `data:` event, i.e. the first chunk) and total (`data: [DONE]` and
the end of the body), all from the moment the request is started (connect
included in burst mode). A stream counts as ok only with HTTP 200, no error
event and a [DONE]. Prints one JSON object on stdout; with --progress S also
JSON progress lines on stderr every S seconds.

  stream_client.py http://127.0.0.1:8080 sk-tr-... openai/gpt-4o-mini -n 1000
  stream_client.py http://127.0.0.1:8080 sk-tr-... openai/gpt-4o-mini --closed 16 --duration 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit


def pct(sorted_vals: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(-(-p * len(sorted_vals) // 100)) - 1))
    return sorted_vals[k]


class Result:
    __slots__ = ("err", "events", "ok", "status", "total", "ttfb", "ttft")

    def __init__(self) -> None:
        self.ok = False
        self.err: str | None = None
        self.ttfb = self.ttft = self.total = None
        self.events = 0
        self.status: int | None = None


class Counters:
    def __init__(self) -> None:
        self.connected = 0  # connections currently open
        self.active = 0  # streams between their first event and their end
        self.peak_active = 0
        self.peak_connected = 0
        self.done = 0
        self.errors = 0


C = Counters()


class StreamError(Exception):
    pass


async def read_stream(reader: asyncio.StreamReader, r: Result, t0: float) -> bool:
    """Read one response; returns True if the connection can be reused."""
    status_line = await reader.readline()
    if not status_line:
        raise StreamError("connection closed before the response")
    r.ttfb = time.perf_counter() - t0
    parts = status_line.split()
    r.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    chunked, clen, close = False, None, parts[0] == b"HTTP/1.0"
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        k, _, v = line.partition(b":")
        k = k.strip().lower()
        if k == b"transfer-encoding" and b"chunked" in v.lower():
            chunked = True
        elif k == b"content-length":
            clen = int(v.strip())
        elif k == b"connection":
            close = v.strip().lower() == b"close"
    buf = b""
    done = False
    error_event: bytes | None = None
    refused = bytearray()  # the body of a non-200 answer (its error message names the cause)

    def feed(data: bytes) -> None:
        nonlocal buf, done, error_event
        if r.status != 200 and len(refused) < 4096:
            refused.extend(data)
        buf += data
        while True:
            i = buf.find(b"\n\n")
            j = buf.find(b"\r\n\r\n")
            if i < 0 and j < 0:
                return
            if i < 0 or (0 <= j < i):
                ev, buf = buf[:j], buf[j + 4 :]
            else:
                ev, buf = buf[:i], buf[i + 2 :]
            if not ev.startswith(b"data:"):
                continue
            payload = ev[5:].strip()
            if r.ttft is None:
                r.ttft = time.perf_counter() - t0
                C.active += 1
                C.peak_active = max(C.peak_active, C.active)
            if payload == b"[DONE]":
                done = True
            elif payload.startswith(b'{"error"'):
                error_event = payload
            else:
                r.events += 1

    if chunked:
        while True:
            size_line = await reader.readline()
            if not size_line:
                raise StreamError("connection closed mid-body")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            data = await reader.readexactly(size + 2)
            feed(data[:-2])
    elif clen is not None:
        feed(await reader.readexactly(clen))
    else:
        close = True
        while True:
            data = await reader.read(65536)
            if not data:
                break
            feed(data)
    if r.status != 200:
        try:
            said = ": " + str(json.loads(bytes(refused))["error"]["message"])[:100]
        except (ValueError, KeyError, TypeError):
            said = ""
        raise StreamError(f"HTTP {r.status}{said}")
    if error_event is not None:
        try:
            msg = json.loads(error_event)["error"].get("message", "")
        except (ValueError, KeyError, AttributeError):
            msg = error_event[:80].decode(errors="replace")
        raise StreamError(f"error event: {msg}"[:120])
    if not done:
        raise StreamError("stream ended without [DONE]")
    r.total = time.perf_counter() - t0
    r.ok = True
    return not close


def _finish(r: Result, exc: BaseException | None) -> None:
    if r.ttft is not None:
        C.active -= 1
    if exc is not None:
        r.err = (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)[:120]
        C.errors += 1
    C.done += 1


async def burst_one(host: str, port: int, req: bytes, limit: float, delay: float) -> Result:
    if delay > 0:
        await asyncio.sleep(delay)
    r = Result()
    t0 = time.perf_counter()
    writer = None
    exc: BaseException | None = None
    try:
        async with asyncio.timeout(limit):
            reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
            C.connected += 1
            C.peak_connected = max(C.peak_connected, C.connected)
            writer.write(req)
            await writer.drain()
            await read_stream(reader, r, t0)
    except Exception as e:
        exc = e
    finally:
        _finish(r, exc)
        if writer is not None:
            C.connected -= 1
            writer.close()
    return r


async def closed_worker(host: str, port: int, req: bytes, limit: float, until: float, out: list[Result]) -> None:
    reader = writer = None
    try:
        while time.perf_counter() < until:
            r = Result()
            t0 = time.perf_counter()
            exc: BaseException | None = None
            reuse = False
            try:
                async with asyncio.timeout(limit):
                    if writer is None:
                        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
                        C.connected += 1
                        C.peak_connected = max(C.peak_connected, C.connected)
                    writer.write(req)
                    await writer.drain()
                    reuse = await read_stream(reader, r, t0)  # type: ignore[arg-type]
            except Exception as e:
                exc = e
            _finish(r, exc)
            out.append(r)
            if not reuse and writer is not None:
                writer.close()
                C.connected -= 1
                reader = writer = None
            if exc is not None:
                await asyncio.sleep(0.05)  # no hot loop against a failing server
    finally:
        if writer is not None:
            writer.close()
            C.connected -= 1


async def progress(every: float, t_start: float) -> None:
    while True:
        await asyncio.sleep(every)
        print(
            json.dumps(
                {
                    "t": round(time.time(), 2),
                    "elapsed_s": round(time.perf_counter() - t_start, 2),
                    "connected": C.connected,
                    "active": C.active,
                    "done": C.done,
                    "errors": C.errors,
                    "cpu_s": round(time.process_time(), 3),
                }
            ),
            file=sys.stderr,
            flush=True,
        )


def build_request(a: argparse.Namespace, host: str, port: int, path: str, keep_alive: bool) -> bytes:
    body = json.dumps(
        {
            "model": a.model,
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {
                    "role": "user",
                    "content": "Explain in two sentences how to load test an API gateway.",
                },
            ],
            "temperature": 0.2,
            "max_tokens": 64,
        },
        separators=(",", ":"),
    ).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {a.key}\r\n"
        f"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
        f"Content-Length: {len(body)}\r\nConnection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    ).encode() + body


async def main_async(a: argparse.Namespace) -> dict[str, object]:
    u = urlsplit(a.url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    path = (u.path.rstrip("/") or "") + "/v1/chat/completions"
    t_start = time.perf_counter()
    prog = asyncio.ensure_future(progress(a.progress, t_start)) if a.progress > 0 else None
    pending: set[asyncio.Future[object]] = set()
    if a.closed:
        req = build_request(a, host, port, path, keep_alive=True)
        results: list[Result] = []
        until = t_start + a.duration
        tasks = [
            asyncio.ensure_future(closed_worker(host, port, req, a.timeout, until, results)) for _ in range(a.closed)
        ]
        _, pending = await asyncio.wait(tasks, timeout=min(a.deadline, a.duration + a.timeout + 5))
        n = len(results) + len(pending)
    else:
        req = build_request(a, host, port, path, keep_alive=False)
        step = a.ramp / a.n if a.ramp > 0 and a.n > 0 else 0.0
        tasks = [asyncio.ensure_future(burst_one(host, port, req, a.timeout, i * step)) for i in range(a.n)]
        done, pending = await asyncio.wait(tasks, timeout=a.deadline)
        results = [t.result() for t in done]
        n = a.n
    wall = time.perf_counter() - t_start
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5)
    if prog is not None:
        prog.cancel()
    ok = [r for r in results if r.ok]
    errs: dict[str, int] = {}
    for r in results:
        if not r.ok:
            key = r.err or "unknown"
            errs[key] = errs.get(key, 0) + 1
    if pending:
        errs["batch deadline"] = errs.get("batch deadline", 0) + len(pending)
    out: dict[str, object] = {
        "mode": "closed" if a.closed else "burst",
        "n": n,
        "concurrency": a.closed or a.n,
        "ok": len(ok),
        "errors": sum(errs.values()),
        "error_kinds": errs,
        "wall_s": round(wall, 3),
        "cpu_s": round(time.process_time(), 3),  # this client's CPU: one process, so at most 1 core
        "streams_per_s": round(len(ok) / wall, 2) if wall > 0 else None,
        "peak_active": C.peak_active,
        "peak_connected": C.peak_connected,
        "events_per_stream_min": min((r.events for r in ok), default=None),
        "events_per_stream_max": max((r.events for r in ok), default=None),
    }
    for name in ("ttfb", "ttft", "total"):
        vals = sorted(getattr(r, name) * 1000 for r in ok)
        for p in (50, 90, 99):
            v = pct(vals, p)
            out[f"{name}_p{p}_ms"] = round(v, 2) if v is not None else None
        out[f"{name}_max_ms"] = round(vals[-1], 2) if vals else None
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url", help="base URL without /v1, e.g. http://127.0.0.1:8080")
    ap.add_argument("key")
    ap.add_argument("model")
    ap.add_argument("-n", type=int, default=100, help="burst: number of concurrent streams")
    ap.add_argument("--ramp", type=float, default=0.0, help="burst: spread the starts over S seconds")
    ap.add_argument("--closed", type=int, default=0, metavar="C", help="closed loop with C workers")
    ap.add_argument("--duration", type=float, default=8.0, help="closed loop: seconds")
    ap.add_argument("--timeout", type=float, default=60.0, help="per-stream timeout (s)")
    ap.add_argument("--deadline", type=float, default=120.0, help="whole-batch deadline (s)")
    ap.add_argument("--progress", type=float, default=0.0, help="progress line on stderr every S s")
    a = ap.parse_args()
    try:
        import resource

        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass
    try:
        import uvloop  # type: ignore[import-not-found]

        out = uvloop.run(main_async(a))
        out["client_loop"] = "uvloop"
    except ImportError:
        out = asyncio.run(main_async(a))
        out["client_loop"] = "asyncio"
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
