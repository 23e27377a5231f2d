"""The supervisor's private run directory: the workers' shared table and metrics sockets.

Made with `mkdtemp` (mode 0700: only the gateway's user reaches the sockets), in memory
under /dev/shm when there is one, named after the supervisor's pid; removed when the
supervisor exits. A supervisor that was killed (SIGKILL, the OOM killer) cannot remove
its own, so each start first removes those of supervisors that are gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from proxy.core.pids import running

PREFIX = "tokenroute-"
SHM = Path("/dev/shm")
_NAME = re.compile(rf"^{PREFIX}(\d+)-")


@contextmanager
def private_run_dir(parent: Path | None = None) -> Iterator[Path]:
    """A fresh run directory for this process (in `parent`, else /dev/shm, else the system
    temporary directory), removed at exit."""
    if parent is not None:
        path = _make(parent)
    else:
        try:
            path = _make(SHM)
        except OSError:  # no /dev/shm here, or not ours to write
            path = _make(Path(tempfile.gettempdir()))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _make(parent: Path) -> Path:
    remove_stale(parent)
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=parent))


def remove_stale(parent: Path) -> list[Path]:
    """Remove this user's run directories whose supervisor is gone; which."""
    removed = []
    for entry in parent.iterdir():
        match = _NAME.match(entry.name)
        if match is None or running(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):  # another start removed it first
            if entry.is_dir() and entry.stat().st_uid == os.getuid():
                shutil.rmtree(entry)
                removed.append(entry)
    return removed
