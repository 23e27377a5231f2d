"""Session stickiness for `tokenroute/auto`: a conversation does not flap between tiers.

A request carrying a session id (header `x-session-id`, else the `user` field)
is served at no lower tier than the session's last request, for
`[auto] session_seconds` after it, so an agent keeps its model and its prompt
cache warm. Sessions belong to the key that made them; the oldest are forgotten
past `MAX_SESSIONS`. Times come from the clock given (trio's, in the gateway).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

MAX_SESSIONS = 100_000
MAX_SESSION_ID = 256  # characters kept of a session id


class Sessions:
    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self._seconds = seconds
        self._clock = clock
        self._last: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()

    def tier(self, key_id: str, session: str | None) -> str | None:
        """The session's last tier, while it still holds."""
        if not session or self._seconds <= 0:
            return None
        found = self._last.get((key_id, session[:MAX_SESSION_ID]))
        if found is None or found[1] <= self._clock():
            return None
        return found[0]

    def remember(self, key_id: str, session: str | None, tier: str) -> None:
        if not session or self._seconds <= 0:
            return
        entry = (key_id, session[:MAX_SESSION_ID])
        now = self._clock()
        self._last[entry] = (tier, now + self._seconds)
        self._last.move_to_end(entry)
        while self._last:
            oldest = next(iter(self._last.values()))
            if len(self._last) <= MAX_SESSIONS and oldest[1] > now:
                break
            self._last.popitem(last=False)

    def __len__(self) -> int:
        return len(self._last)
