"""Whether a process on this host still runs: to tell a dead gateway's leases (store) and
a dead supervisor's run directory (CLI) from a live one's."""

from __future__ import annotations

import os


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: existence and permission checks only
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process holds that pid now
    return True
