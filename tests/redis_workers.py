"""What the gateway processes of tests/test_redis_limits.py run (spawned)."""

from __future__ import annotations

from multiprocessing.connection import Connection

import trio

from proxy.access.redis_limits import RedisLimits


def open_streams_and_wait(
    url: str, key: str, count: int, cap: int, reclaim_after: float, ready: Connection
) -> None:
    """A gateway that opens `count` streams on the key and keeps them (until SIGKILLed)."""

    async def main() -> None:
        store = RedisLimits(url, reclaim_after=reclaim_after, heartbeat=reclaim_after / 5)
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            for _ in range(count):
                opened, _ = await store.open_stream(key, cap)
                assert opened
            ready.send("open")
            await trio.sleep(600)

    trio.run(main)
