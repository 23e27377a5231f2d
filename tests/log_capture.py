"""Every log record of the test run, as the JSON and the human line the server would write.

Installed for the whole session by `conftest.py` with the levels `tokenroute serve` sets
(request lines on), so `test_zz_log_secrets.py` can read every line the run produced.
"""

from __future__ import annotations

import logging

from proxy.core.logs import HumanFormatter, JsonFormatter

QUIET = ("httpx2", "httpcore2", "httpx", "httpcore", "mcp")  # as `tokenroute serve` sets them


class LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self._json = JsonFormatter()
        self._human = HumanFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self._json.format(record))
            self.lines.append(self._human.format(record))
        except Exception:  # a record that cannot be formatted is the logging call's bug
            self.handleError(record)


CAPTURE = LogCapture()


def install() -> None:
    logging.getLogger().addHandler(CAPTURE)
    logging.getLogger("tokenroute").setLevel(logging.INFO)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
