"""One worker of `tokenroute serve --workers N`: the gateway's event loop, in a process its
supervisor started (`python -m cli.worker`; nobody else runs this).

The supervisor writes the Settings (its own, with this worker's `WorkerRole`: the
worker does not read the environment again) on stdin, length first, and keeps the pipe
open: its end is how a worker learns that the supervisor died, and then it stops at
once, as the whole gateway does when it is killed. Stdout carries one status line back,
`{"ready": pid}` once serving, or `{"error": ...}` with the one line that stopped the
start (the supervisor prints it once, for all workers); anything else printed goes to
stderr with the log.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import sys
from collections.abc import Callable
from typing import IO, Any, BinaryIO

import orjson
import trio

from proxy.core.config import Settings
from proxy.server import serve

from .output import EXIT_SERVER
from .process import configure_logging, first_leaf, startup_failure

log = logging.getLogger("tokenroute")


def encode_settings(settings: Settings) -> bytes:
    body = pickle.dumps(settings, protocol=pickle.HIGHEST_PROTOCOL)
    return len(body).to_bytes(8, "big") + body


def decode_settings(stream: BinaryIO) -> Settings:
    size = int.from_bytes(_read_exactly(stream, 8), "big")
    return pickle.loads(_read_exactly(stream, size))  # type: ignore[no-any-return]


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            raise SystemExit(
                "tokenroute worker: no settings on stdin (the supervisor starts workers)"
            )
        data += chunk
    return data


def parse_status(line: bytes) -> dict[str, Any]:
    """The worker's status line as the supervisor reads it (an unreadable line: {})."""
    try:
        status = orjson.loads(line)
    except orjson.JSONDecodeError:
        return {}
    return status if isinstance(status, dict) else {}


class Status:
    """The one line this worker owes its supervisor."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self._pipe: IO[bytes] | None = pipe

    def send(self, **status: Any) -> None:
        if self._pipe is None:
            return
        try:
            self._pipe.write(orjson.dumps(status) + b"\n")
            self._pipe.close()
        except OSError:
            pass  # the supervisor is gone; stdin's end tells us so
        self._pipe = None

    @property
    def sent(self) -> bool:
        return self._pipe is None


def main() -> int:
    # SIGINT comes from the supervisor once we serve (we run in our own process group, and
    # a worker still starting is sent SIGTERM): the first one drains
    # (`proxy.server.wait_for_signal`), a second one ends us at once, as a second SIGTERM
    # does, never with a KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    status = Status(os.fdopen(os.dup(1), "wb", buffering=0))
    os.dup2(2, 1)
    settings = decode_settings(sys.stdin.buffer)
    listener = configure_logging(settings)

    def stop_now() -> None:
        log.error("the supervisor is gone: this worker stops at once",
                  extra={"event": "shutdown", "fields": {"phase": "orphaned"}})  # fmt: skip
        listener.stop()
        os._exit(1)

    try:
        trio.run(_run, settings, status, stop_now)
    except Exception as error:  # every failure is one line, never a traceback
        failure = startup_failure(error, settings)
        message = str(failure) if failure else f"unexpected error: {first_leaf(error)!r}"
        code = failure.code if failure else EXIT_SERVER
        if not status.sent:  # the supervisor says it, once for all the workers
            status.send(error=message, code=code)
        else:
            log.error("worker failed: %s", message)
        log.debug("worker failed", exc_info=True)
        return code
    finally:
        listener.stop()
    return 0


async def _run(settings: Settings, status: Status, stop_now: Callable[[], None]) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_supervisor, stop_now)
        await nursery.start(_serve, settings, nursery.cancel_scope)
        status.send(ready=os.getpid())


async def _serve(
    settings: Settings,
    served: trio.CancelScope,
    task_status: trio.TaskStatus[list[str]],
) -> None:
    await serve(settings, task_status=task_status)
    served.cancel()  # served out: nothing left to watch for


async def _watch_supervisor(stop_now: Callable[[], None]) -> None:
    """Stdin stays open while the supervisor lives; its end means it was killed."""
    async with trio.lowlevel.FdStream(os.dup(0)) as stdin:
        while await stdin.receive_some(1024):
            pass
    stop_now()


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    os._exit(code)  # all is closed and written: skip tearing down a large heap (~0.5 s)
