"""One worker of `tokenroute serve --workers N`: the gateway's event loop, in a process its
supervisor started (`python -m cli.worker`; nobody else runs this).

It reads the supervisor's Settings, with its `WorkerRole`, from stdin (`cli/handover.py`:
it does not read the environment again), serves, and says `ready`, or the one line that
stopped its start (the supervisor prints it once, for all workers); anything else printed
goes to stderr with the log. Stdin stays open while the supervisor lives: its end means
the supervisor was killed, and the worker stops at once, as the whole gateway would.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable

import trio

from proxy.core.config import Settings
from proxy.server import serve

from .handover import Status, decode_settings
from .output import EXIT_SERVER
from .process import configure_logging, first_leaf, startup_failure

log = logging.getLogger("tokenroute")


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
