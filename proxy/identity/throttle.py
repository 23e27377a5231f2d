"""Failed attempts counted per name (an email, an address), in memory, with a clock given.

After `limit` failures within `window` seconds a name is refused until the oldest of
them ages out; a success clears it. Bounded: the least recently failed names are
forgotten first, so a flood of made-up names cannot grow it without end.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable

MAX_NAMES = 100_000


class Throttle:
    def __init__(self, limit: int, window: float, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def wait(self, name: str) -> float:
        """Seconds before `name` may try again; 0 when it may now."""
        times = self._failures.get(name)
        if times is None:
            return 0.0
        now = self._clock()
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) < self.limit:
            return 0.0
        return times[0] + self.window - now

    def failed(self, name: str) -> None:
        times = self._failures.pop(name, None) or deque(maxlen=self.limit)
        times.append(self._clock())
        self._failures[name] = times
        while len(self._failures) > MAX_NAMES:
            self._failures.popitem(last=False)

    def succeeded(self, name: str) -> None:
        self._failures.pop(name, None)
