"""Counts that outlive a worker, so the gateway's `/metrics` sums never fall.

Prometheus takes any fall of a counter for a reset to zero and counts the whole new value
as new. A sum across workers that lost a restarted worker's counts, or a sibling too slow
for one scrape, would draw a spike of requests that never happened. So the run directory
keeps, for each worker slot, the highest counts a scrape has seen of the process now in
it, and the counts of the processes that were in it before (retired); a scrape answers
their sum, so a slot that did not answer in time counts what was last seen of it. Only
counters and histograms carry over: a gone process's gauges are not the gateway's.

One small JSON file on the run directory's tmpfs, read and written once per scrape under
an flock (scrapes land on any worker), in a thread: never on the event loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("tokenroute")
Labels = tuple[tuple[str, str], ...]
# family name -> (type, help, {(sample name, labels): value})
Counts = dict[str, tuple[str, str, dict[tuple[str, Labels], float]]]


class CarriedCounts:
    """The file of one gateway's worker slots (`slots` of them)."""

    def __init__(self, path: Path, slots: int) -> None:
        self.path = path
        self._slots = slots

    def update(self, answered: dict[int, tuple[int, Counts]]) -> Counts:
        """Record what this scrape saw (slot -> (pid, counts)); return the gateway's counts:
        the highest seen of every slot's process, answered or not, and the retired ones.
        Never less than an earlier scrape answered, whichever worker it landed on."""
        with _locked(self.path.with_name(self.path.name + ".lock")):
            state = self._read()
            retired: Counts = state["retired"]
            for slot, (pid, counts) in answered.items():
                seen = state["slots"].get(slot)
                if seen is None or seen[0] != pid:  # a new process in the slot
                    if seen is not None:
                        _add(retired, seen[1])
                    state["slots"][slot] = (pid, counts)
                else:  # another scrape may have seen it later: keep the highest
                    _keep_highest(seen[1], counts)
            self._write(state)
            total: Counts = {}
            _add(total, retired)
            for _, counts in state["slots"].values():
                _add(total, counts)
            return total

    def _read(self) -> dict[str, Any]:
        try:
            raw = json.loads(self.path.read_bytes())
            slots = {
                int(slot): (pid, _decode(counts))
                for slot, (pid, counts) in raw["slots"].items()
                if int(slot) < self._slots
            }
            return {"slots": slots, "retired": _decode(raw["retired"])}
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError) as error:  # not ours: start over
            log.warning("%s is unreadable (%s): the worker counters start again", self.path,
                        error)  # fmt: skip
        return {"slots": {}, "retired": {}}

    def _write(self, state: dict[str, Any]) -> None:
        raw = {
            "slots": {str(s): [pid, _encode(c)] for s, (pid, c) in state["slots"].items()},
            "retired": _encode(state["retired"]),
        }
        partial = self.path.with_name(self.path.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w") as file:
            json.dump(raw, file, separators=(",", ":"))
        os.replace(partial, self.path)  # a reader sees the old file or the new, whole


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel if this process dies
        yield
    finally:
        os.close(fd)


def _add(into: Counts, counts: Counts) -> None:
    for name, (kind, doc, samples) in counts.items():
        target = into.setdefault(name, (kind, doc, {}))[2]
        for key, value in samples.items():
            target[key] = target.get(key, 0.0) + value


def _keep_highest(into: Counts, counts: Counts) -> None:
    for name, (kind, doc, samples) in counts.items():
        target = into.setdefault(name, (kind, doc, {}))[2]
        for key, value in samples.items():
            target[key] = max(target.get(key, 0.0), value)


def _encode(counts: Counts) -> dict[str, Any]:
    return {
        name: [kind, doc, [[s, list(map(list, labels)), v] for (s, labels), v in samples.items()]]
        for name, (kind, doc, samples) in counts.items()
    }


def _decode(raw: dict[str, Any]) -> Counts:
    counts: Counts = {}
    for name, (kind, doc, samples) in raw.items():
        values = {(s, tuple((k, v) for k, v in labels)): value for s, labels, value in samples}
        counts[name] = (kind, doc, values)
    return counts
