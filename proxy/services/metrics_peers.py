"""The workers of one gateway lend each other their counters, so any of them answers
`/metrics` for the whole gateway.

Each worker listens on a unix socket of its own in the supervisor's private run
directory (mode 0700: only the gateway's user reaches it) and writes its pid and its own
exposition, in Prometheus' text format, after their length (8 bytes each, big-endian: a
cut answer is told from a whole one), to whoever connects, then closes: no request to
parse. The worker a scrape lands on reads its siblings' the same way, all at once and
each within `timeout`; a sibling that does not answer in time (restarting, or its loop
stuck) is left out of that scrape rather than holding it up (its last seen counts stand
in, `metrics_carry`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path

import trio

log = logging.getLogger("tokenroute")
PEER_TIMEOUT = 2.0  # seconds for one sibling's exposition (a scrape waits this at most)
MAX_EXPOSITION = 64 * 1024 * 1024  # a sibling's answer larger than this is not read on


class MetricsPeers:
    """This worker's socket (`own`) and its siblings' (`siblings`, by worker index)."""

    def __init__(self, own: Path, siblings: dict[int, Path], timeout: float = PEER_TIMEOUT) -> None:
        self.own = own
        self.siblings = siblings
        self._timeout = timeout

    async def serve(
        self,
        exposition: Callable[[], bytes],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Answer every connection with `exposition()` until cancelled."""
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.own)  # left by this worker's predecessor, which died
        await sock.bind(str(self.own))
        sock.listen(64)

        async def answer(stream: trio.SocketStream) -> None:
            async with stream:
                try:
                    body = os.getpid().to_bytes(8, "big") + exposition()
                    with trio.move_on_after(self._timeout):
                        await stream.send_all(len(body).to_bytes(8, "big") + body)
                except trio.BrokenResourceError:
                    pass  # the sibling gave up waiting: its scrape goes on without us

        listener = trio.SocketListener(sock)
        task_status.started()
        await trio.serve_listeners(answer, [listener])

    async def gather(self) -> dict[int, tuple[int, bytes]]:
        """The siblings' (pid, exposition) that came in time, by worker index."""
        found: dict[int, tuple[int, bytes]] = {}

        async def read(index: int, path: Path) -> None:
            with trio.move_on_after(self._timeout) as scope:
                try:
                    answer = await _read_all(path)
                    found[index] = (int.from_bytes(answer[:8], "big"), answer[8:])
                except (OSError, trio.BrokenResourceError) as error:  # none yet, refused, cut
                    log.debug("worker metrics at %s: %s", path, error)
            if scope.cancelled_caught:
                log.warning("worker metrics at %s did not answer within %.1f s", path,
                            self._timeout)  # fmt: skip

        async with trio.open_nursery() as nursery:
            for index, path in self.siblings.items():
                nursery.start_soon(read, index, path)
        return found


async def _read_all(path: Path) -> bytes:
    received = bytearray()
    async with await trio.open_unix_socket(str(path)) as stream:
        while chunk := await stream.receive_some(65536):
            received += chunk
            if len(received) > MAX_EXPOSITION + 8:
                raise OSError(f"more than {MAX_EXPOSITION} bytes")
    size = int.from_bytes(received[:8], "big")
    if len(received) != size + 8 or size < 8:
        raise OSError(f"a cut answer: {len(received) - 8} of {size} bytes")
    return bytes(received[8:])
