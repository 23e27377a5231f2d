"""The workers' shared table, hammered by real OS processes: a key's rate and stream cap
hold for the key as a whole, a killed lock holder stops no one, a dead worker's streams
are freed by the supervisor, and two keys never share an entry."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import trio

from proxy.access.limit_store import MemoryLimits
from proxy.access.machine_limits import MachineLimits
from proxy.access.shared_state import STRIPE, SharedState, digest
from proxy.core.config import Settings
from proxy.upstream.cooldown import Cooldowns
from tests import shared_state_workers as workers

SPAWN = multiprocessing.get_context("spawn")  # no fork of a process that runs threads
WORKERS = 4


@pytest.fixture
def table(tmp_path: Path) -> tuple[Path, SharedState]:
    path = tmp_path / "limits.shm"
    supervisor = SharedState.create(path, WORKERS)
    yield path, supervisor  # type: ignore[misc]
    supervisor.close()


def test_a_keys_rate_holds_across_processes(table: tuple[Path, SharedState]) -> None:
    path, _ = table
    rps, burst, window = 400.0, 100, 2.0  # the burst covers a busy machine's short stalls
    start = time.monotonic() + 2.0  # every worker is up and spinning by then
    with SPAWN.Pool(WORKERS) as pool:
        counts = pool.starmap(
            workers.hammer_rate,
            [(path, w, "key-1", 1 / rps, burst, start, window) for w in range(WORKERS)],
        )
    expected = burst + rps * window
    assert all(count > 0 for count in counts), counts  # every process took part
    assert abs(sum(counts) - expected) <= 0.1 * expected, (counts, expected)


def test_stream_opens_across_processes_never_pass_the_cap(
    table: tuple[Path, SharedState],
) -> None:
    path, supervisor = table
    cap, window = 3, 1.5
    holding, most = SPAWN.Value("i", 0), SPAWN.Value("i", 0)
    results = SPAWN.Queue()
    start = time.monotonic() + 2.0
    procs = [
        SPAWN.Process(
            target=workers.hammer_streams,
            args=(path, w, "key-s", cap, start, window, holding, most, results),
        )
        for w in range(WORKERS)
    ]
    for proc in procs:
        proc.start()
    opened = [results.get(timeout=30) for _ in procs]
    for proc in procs:
        proc.join(5)
        assert proc.exitcode == 0
    assert sum(opened) > 100, opened
    assert most.value == cap  # the cap was reached (there was contention) and never passed
    probe = SharedState.open(path, 0)
    assert probe.streams("key-s") == 0  # every close was counted
    probe.close()
    assert supervisor.streams("key-s") == 0


def test_a_worker_killed_holding_a_stripe_lock_stops_no_one(
    table: tuple[Path, SharedState],
) -> None:
    path, _ = table
    parent, child = SPAWN.Pipe()
    holder = SPAWN.Process(target=workers.hold_lock_forever, args=(path, 1, "key-l", child))
    holder.start()
    state = SharedState.open(path, 0)
    try:
        assert parent.poll(20) and parent.recv() == "locked"
        answered: list[object] = []
        asking = threading.Thread(target=lambda: answered.append(state.admit("key-l", 1, 5)))
        asking.start()
        asking.join(0.5)
        assert not answered, "the lock did not keep the other worker out"
        os.kill(holder.pid, signal.SIGKILL)  # type: ignore[arg-type]
        asking.join(2.0)
        assert answered == [(True, pytest.approx(1.0, abs=0.1))]
        assert state.admit("key-l", 1, 5) is not None
    finally:
        holder.kill()
        holder.join()
        state.close()


def test_clear_worker_frees_a_dead_workers_streams(table: tuple[Path, SharedState]) -> None:
    path, supervisor = table
    dead = SPAWN.Process(target=workers.open_streams_and_die, args=(path, 2, "key-d", 3, 3))
    dead.start()
    dead.join(20)
    assert dead.exitcode == -signal.SIGKILL
    state = SharedState.open(supervisor.path, 0)  # the path the supervisor hands its workers
    assert state.streams("key-d") == 3
    assert state.open_stream("key-d", 3) == (False, 3)  # the dead worker's still count
    supervisor.clear_worker(2)
    assert state.open_stream("key-d", 3) == (True, 1)
    state.close()


def test_two_keys_never_share_an_entry(tmp_path: Path) -> None:
    capacity = 2 * STRIPE
    path = tmp_path / "small.shm"
    supervisor = SharedState.create(path, 2, capacity=capacity)
    state = SharedState.open(path, 0)
    keys = [f"key-{i}" for i in range(10 * capacity)]
    placed = [key for key in keys if state.admit(key, 3600.0, 1) is not None]
    # Every key that found an entry holds it alone: its one request of the hour is
    # spent (a key sharing another's entry would have been refused, or freed it).
    assert len(placed) == capacity
    for key in placed:
        assert state.admit(key, 3600.0, 1) == (False, pytest.approx(3600.0, abs=1))
    entries = state.entries()
    assert len(entries) == len(set(entries)) == capacity
    assert set(entries) == {digest(b"key", key) for key in placed}
    state.close()
    supervisor.close()


def test_a_spent_entry_is_taken_over_and_a_full_table_falls_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tiny.shm"
    supervisor = SharedState.create(path, 1, capacity=STRIPE)
    state = SharedState.open(path, 0)
    for i in range(STRIPE):
        assert state.admit(f"old-{i}", 0.05, 1) is not None
    assert state.open_stream("old-0", 1) == (True, 1)  # a stream keeps its entry
    assert state.admit("new", 0.05, 1) is None  # full: every entry's limit is in use
    time.sleep(0.06)
    assert state.admit("new", 0.05, 1) == (True, pytest.approx(0.05, abs=0.01))
    assert digest(b"key", "old-0") in state.entries()
    assert len(state.entries()) == STRIPE

    time.sleep(0.06)  # every entry but old-0's (a stream is open on it) is free again
    placed = [i for i in range(2 * STRIPE) if state.admit(f"hog-{i}", 3600.0, 1) is not None]
    assert len(placed) == STRIPE - 1
    limits = MachineLimits(state)  # the store a worker runs on: a full table falls back
    with caplog.at_level(logging.WARNING, logger="tokenroute.limits"):
        first = trio.run(limits.admit, "overflow", 3600.0, 1)
        second = trio.run(limits.admit, "overflow", 3600.0, 1)
        trio.run(limits.admit, "overflow-2", 3600.0, 1)
    assert first.admitted and not second.admitted  # still limited, in this process
    warnings = [r for r in caplog.records if "no room for key" in r.getMessage()]
    assert len(warnings) == 1 and "overflow" not in warnings[0].getMessage()
    state.close()
    supervisor.close()


def test_a_cooldown_in_one_worker_is_seen_by_another_and_a_success_clears_it(
    table: tuple[Path, SharedState],
) -> None:
    path, _ = table
    mine = Cooldowns(
        Settings(), clock=time.monotonic, shared=MachineLimits(SharedState.open(path, 0))
    )
    upstream = "openai/gpt-4o-mini"
    assert mine.available(upstream)
    parent, child = SPAWN.Pipe()
    other = SPAWN.Process(target=workers.cool_then_watch, args=(path, 1, upstream, child))
    other.start()
    try:
        assert parent.poll(20) and parent.recv() == "cooled"
        cooled_at = time.monotonic()
        while mine.available(upstream):
            assert time.monotonic() - cooled_at < 1.0, "the other worker's cooldown unseen"
            time.sleep(0.01)
        assert mine.states()[upstream]["state"] == "cooling"
        mine.succeeded(upstream)  # a stream of ours that began before ends well
        parent.send("available?")
        assert parent.recv() is True  # healthy again for the other worker too
        parent.send("stop")
    finally:
        other.join(5)
        other.kill()


def test_memory_limits_stay_on_the_clock_they_are_given() -> None:
    now = [10.0]
    limits = MemoryLimits(lambda: now[0])
    assert limits.admit_now("k", 1.0, 2).admitted
    assert limits.admit_now("k", 1.0, 2).admitted
    assert not limits.admit_now("k", 1.0, 2).admitted
    now[0] += 1.0
    assert limits.admit_now("k", 1.0, 2).admitted
    now[0] += 5.0
    assert limits.forget_idle() == 1 and limits.ahead_now("k") == 0.0
