"""What the worker processes of tests/test_shared_state.py run (spawned: this module is
imported afresh in each, so it imports little)."""

from __future__ import annotations

import os
import random
import signal
import time
from multiprocessing.connection import Connection
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

from proxy.access.shared_state import SharedState


def wait_until(moment: float) -> None:
    while time.monotonic() < moment:
        time.sleep(0.001)


def hammer_rate(
    path: Path, worker: int, key: str, interval: float, burst: int, start: float, window: float
) -> int:
    """Ask for requests as fast as possible during the window; how many were admitted."""
    state = SharedState.open(path, worker)
    wait_until(start)
    admitted = 0
    while time.monotonic() < start + window:
        result = state.admit(key, interval, burst)
        assert result is not None, "the key found no entry"
        admitted += result[0]
    state.close()
    return admitted


def hammer_streams(
    path: Path,
    worker: int,
    key: str,
    cap: int,
    start: float,
    window: float,
    holding: Synchronized[int],
    most: Synchronized[int],
    results: Queue[int],
) -> None:
    """Open and close streams during the window, counting those held in a counter of the
    test's own (not the table's); puts how many opened in `results`."""
    state = SharedState.open(path, worker)
    wait_until(start)
    opened = 0
    while time.monotonic() < start + window:
        result = state.open_stream(key, cap)
        assert result is not None, "the key found no entry"
        if not result[0]:
            continue
        opened += 1
        with holding.get_lock():
            holding.value += 1
            with most.get_lock():
                most.value = max(most.value, holding.value)
        time.sleep(random.uniform(0, 0.002))
        with holding.get_lock():
            holding.value -= 1
        assert state.close_stream(key)
    state.close()
    results.put(opened)


def hold_lock_forever(path: Path, worker: int, key: str, ready: Connection) -> None:
    """Take the key's stripe lock and never give it back (the test SIGKILLs us)."""
    state = SharedState.open(path, worker)
    with state.locked(key):
        ready.send("locked")
        time.sleep(600)


def open_streams_and_die(path: Path, worker: int, key: str, count: int, cap: int) -> None:
    state = SharedState.open(path, worker)
    for _ in range(count):
        result = state.open_stream(key, cap)
        assert result is not None and result[0]
    os.kill(os.getpid(), signal.SIGKILL)


def cool_then_watch(path: Path, worker: int, upstream: str, pipe: Connection) -> None:
    """Another worker's `Cooldowns`: cool the upstream down by failures, then answer
    whether it is available each time the test asks."""
    from proxy.access.machine_limits import MachineLimits
    from proxy.core.config import Settings
    from proxy.upstream.cooldown import Cooldowns

    cooldowns = Cooldowns(
        Settings(), clock=time.monotonic, shared=MachineLimits(SharedState.open(path, worker))
    )
    for _ in range(Settings().cooldown_failures):
        cooldowns.failed(upstream, "upstream said 500")
    pipe.send("cooled")
    while True:
        message: Any = pipe.recv()
        if message == "stop":
            return
        pipe.send(cooldowns.available(upstream))
