"""Limits, stream counts and cooldowns in Redis, for gateways on several machines.

A key's GCRA time is one Redis string changed by one Lua script (`redis_scripts`, sent
with EVALSHA and loaded again on NOSCRIPT by redis-py's `Script`). The client is
redis-py's sync one, each call in a worker thread (`trio.to_thread`, at most `THREADS` at
once): measured against coredis on trio (ops/bench/limits_bench.py) it made more calls a
second for less CPU each. A key's streams are a hash with a
field per process; each process renews its place in a sorted set of the living with a
heartbeat, and the script that opens a stream drops the counts of processes that stopped
renewing it, so a dead gateway's streams are freed after `reclaim_after`. An upstream's
cooldown is a string holding when it ends, kept an hour past that so the next request
probes it; this process reads those of the upstreams it asks about every half second.

Closing a stream never waits: the count goes down here at once and the decrement is sent
by the background task. A count Redis may have wrong (a call cut short, Redis down) is
written again from this process's own counts by the next heartbeat. With Redis down, a
request that needs it gets a 503 (`ServiceUnavailable`); cooldowns keep their last reading.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import secrets
import socket
import time
from collections import Counter
from typing import Any

import redis
import trio
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from ..core.errors import ServiceUnavailable
from . import redis_scripts as lua
from .limit_store import Admission, Throttled

log = logging.getLogger("tokenroute.limits")
PREFIX = "tokenroute:"
OWNERS = PREFIX + "owners"
TIMEOUT = 1.0  # seconds for one Redis call, connecting included
THREADS = 16  # Redis calls at once (each in a worker thread, on its own connection)
READ_EVERY = 0.5  # seconds between readings of the cooldowns
COOL_RETAIN_MS = 3_600_000  # a cooldown is kept this long past its end, for its probe


class RedisDown(Exception):
    """Redis did not answer in time, or refused."""


class RedisLimits:
    """A `LimitStore` (and its shared cooldowns) in the Redis at `url`."""

    def __init__(self, url: str, *, reclaim_after: float, heartbeat: float) -> None:
        self._url = url
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._ttl_ms = round(reclaim_after * 1000)
        self._beat_every = heartbeat
        self._scripts: dict[str, Any] = {}
        self._threads = trio.CapacityLimiter(THREADS)
        self._local: Counter[str] = Counter()  # open streams here, per key's Redis name
        self._opening: Counter[str] = Counter()  # opens on their way to Redis
        self._closing: Counter[str] = Counter()  # decrements not sent yet
        self._dirty: set[str] = set()  # keys whose count in Redis may be wrong
        self._cooling: dict[str, float] = {}  # upstream -> until (time.monotonic()); 0.0
        self._verdicts: dict[str, float] = {}  # upstream -> until or 0.0, not sent yet
        self._wake = trio.Event()
        self._warn = Throttled(log, every=10.0)

    @property
    def cooldowns(self) -> RedisLimits:
        return self

    # -- the request path ------------------------------------------------------------------
    async def admit(self, key_id: str, interval: float, burst: int) -> Admission:
        interval_us = max(1, round(interval * 1e6))
        admitted, ahead = await self._request(
            lua.GCRA, [_name("rate", key_id)], [interval_us, burst, 1]
        )
        return Admission(bool(admitted), ahead / 1e6)

    async def ahead(self, key_id: str) -> float:
        _, ahead = await self._request(lua.GCRA, [_name("rate", key_id)], [1, 1, 0])
        return float(ahead) / 1e6

    async def open_stream(self, key_id: str, cap: int) -> tuple[bool, int]:
        key = _name("streams", key_id)
        self._opening[key] += 1
        try:  # shielded (and bounded by TIMEOUT): an open Redis counted is counted here
            with trio.CancelScope(shield=True):
                opened, open_now = await self._request(
                    lua.OPEN_STREAM, [key, OWNERS], [self._owner, cap, self._ttl_ms * 4]
                )
        except ServiceUnavailable:
            self._dirty.add(key)  # it may have been counted before the answer was lost
            raise
        finally:
            self._opening[key] -= 1
            if self._opening[key] <= 0:
                del self._opening[key]
        if opened:
            self._local[key] += 1
        return bool(opened), int(open_now)

    def close_stream(self, key_id: str) -> None:
        key = _name("streams", key_id)
        if self._local[key] <= 0:
            del self._local[key]
            return
        self._local[key] -= 1
        if self._local[key] == 0:
            del self._local[key]
        self._closing[key] += 1
        self._wake.set()

    # -- cooldown verdicts -----------------------------------------------------------------
    def cooling_until(self, upstream: str) -> float:
        if upstream not in self._cooling:
            self._cooling[upstream] = 0.0  # read from Redis from now on
            self._wake.set()
        return self._cooling[upstream]

    def cool(self, upstream: str, until: float) -> None:
        self._cooling[upstream] = self._verdicts[upstream] = until
        self._wake.set()

    def clear(self, upstream: str) -> None:
        self._cooling[upstream] = self._verdicts[upstream] = 0.0
        self._wake.set()

    # -- the background task ---------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, then send queued writes, heartbeats and cooldown readings until
        cancelled."""
        client = redis.Redis.from_url(
            self._url,
            socket_timeout=TIMEOUT,
            socket_connect_timeout=TIMEOUT,
            retry=Retry(NoBackoff(), 1),  # once at once: a connection Redis closed
            max_connections=THREADS + 2,
        )
        scripts = (lua.GCRA, lua.OPEN_STREAM, lua.CLOSE_STREAMS, lua.HEARTBEAT, lua.LEAVE,
                   lua.COOL, lua.CLEAR, lua.READ_COOLDOWNS)  # fmt: skip
        self._scripts = {source: client.register_script(source) for source in scripts}
        try:
            await self._beat()
            task_status.started()
            await self._sync()
        finally:
            self._scripts = {}
            client.close()  # closes idle connections; a thread still calling keeps its own

    async def aclose(self) -> None:
        """Before `run` is cancelled: send what is queued, and leave (this process's
        streams are no one's now; else Redis drops them after `reclaim_after`)."""
        with trio.move_on_after(TIMEOUT * 2):
            await self._send()
            with contextlib.suppress(RedisDown):
                await self._call(lua.LEAVE, [OWNERS, *self._local], [self._owner])

    async def _sync(self) -> None:
        next_read = next_beat = trio.current_time()
        while True:
            with trio.move_on_at(min(next_read, next_beat)):
                await self._wake.wait()
            self._wake = trio.Event()
            await self._send()
            now = trio.current_time()
            if now >= next_beat:
                next_beat = now + self._beat_every
                await self._beat()
            if now >= next_read:
                next_read = now + READ_EVERY
                await self._read_cooldowns()

    async def _send(self) -> None:
        closing, self._closing = self._closing, Counter()
        for key, count in closing.items():
            try:
                await self._call(lua.CLOSE_STREAMS, [key], [self._owner, count])
            except RedisDown:
                self._dirty.add(key)  # the heartbeat writes this process's count
        verdicts, self._verdicts = self._verdicts, {}
        for upstream, until in verdicts.items():
            key = _name("cool", upstream)
            try:
                if until:
                    left_ms = round((until - time.monotonic()) * 1000)
                    await self._call(lua.COOL, [key], [left_ms, COOL_RETAIN_MS])
                else:
                    await self._call(lua.CLEAR, [key], [])
            except RedisDown:
                self._verdicts.setdefault(upstream, until)  # again next time, unless replaced

    async def _beat(self) -> None:
        """Prove this process alive; write the counts Redis may have wrong."""
        # Keys with a decrement or an open on the way are left for the next beat.
        busy = self._closing.keys() | self._opening.keys()
        dirty = {key for key in self._dirty if key not in busy}
        keys = sorted((self._local.keys() | dirty) - busy)
        args: list[object] = [self._owner, self._ttl_ms]
        for key in keys:
            args += [self._local.get(key, 0), 1 if key in dirty else 0]
        try:
            await self._call(lua.HEARTBEAT, [OWNERS, *keys], args)
        except RedisDown:
            return
        self._dirty -= dirty

    async def _read_cooldowns(self) -> None:
        upstreams = list(self._cooling)
        if not upstreams:
            return
        try:
            lefts = await self._call(lua.READ_COOLDOWNS, [_name("cool", u) for u in upstreams], [])
        except RedisDown:
            return  # the last reading stands
        now = time.monotonic()
        for upstream, left in zip(upstreams, lefts, strict=True):
            if upstream not in self._verdicts:  # else a newer verdict of ours is on its way
                self._cooling[upstream] = 0.0 if left is None else max(now + left / 1000, 1e-9)

    # -- calls -----------------------------------------------------------------------------
    async def _request(self, source: str, keys: list[str], args: list[object]) -> Any:
        """A call on the request path: Redis down is the request's 503."""
        try:
            return await self._call(source, keys, args)
        except RedisDown:
            raise ServiceUnavailable(
                "the gateway cannot reach its rate-limit store right now; retry shortly",
                headers={"retry-after": "1"},
            ) from None

    async def _call(self, source: str, keys: list[str], args: list[object]) -> Any:
        script = self._scripts.get(source)
        if script is None:
            self._warn("Redis limits: not connected yet")
            raise RedisDown
        call = functools.partial(script, keys=keys, args=args)
        try:
            return await trio.to_thread.run_sync(call, limiter=self._threads)
        except (RedisError, OSError) as exc:
            self._warn("Redis limits: %s: %s", type(exc).__name__, exc)
            raise RedisDown from exc


def _name(kind: str, name: str) -> str:
    """A Redis key for a key id or an upstream: hashed (ids never appear in Redis)."""
    return f"{PREFIX}{kind}:{hashlib.blake2b(name.encode(), digest_size=16).hexdigest()}"
