"""`tokenroute serve --workers N`: one supervisor process and N gateway workers.

The supervisor serves nothing itself. Before any worker starts it binds the listening
sockets (a busy port is one line, before anything else), releases what gateway
processes that are gone left behind (`startup_reclaim`) and makes this machine's shared
table in a private run directory. Then it starts the workers, each `proxy.server.serve`
on the inherited sockets with its `WorkerRole` (`cli/worker.py`), and keeps them
running: a worker that dies is logged, what it held is released (`clear_worker`,
`reclaim_worker`) and it starts again, after a back-off when it died young. A worker
that fails its very first start stops the gateway with that worker's one line.

SIGTERM or SIGINT is forwarded to every worker, which drains for `shutdown_grace`; the
supervisor closes its copy of the sockets (the port refuses new connections once the
workers close theirs), waits for them all and exits 0. A second signal is forwarded too
(a worker's second signal ends it at once). The workers run in their own process group,
so a terminal's Ctrl-C reaches them once, through the supervisor; under systemd the
unit's `KillMode=mixed` does the same for SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import trio

from proxy.core.config import Settings
from proxy.core.config_scale import WorkerRole
from proxy.core.errors import ConfigError
from proxy.core.logs import event
from proxy.core.money import format_usd
from proxy.services import SharedState, reclaim_worker, startup_reclaim

from .handover import encode_settings, parse_status
from .listeners import Listeners, bind_listeners
from .output import EXIT_SERVER, EXIT_USER, UserFacingError
from .run_dir import private_run_dir

log = logging.getLogger("tokenroute.supervisor")
YOUNG = 10.0  # seconds: a worker that dies sooner after its start waits before the next
FIRST_BACKOFF = 0.5  # seconds before restarting a worker that died young, doubled each time
MAX_BACKOFF = 30.0
# Seconds past the grace after which a worker still running is killed: beyond its own
# backstop (Hypercorn's graceful_timeout, grace + proxy.server.DRAIN_MARGIN).
KILL_AFTER_GRACE = 15.0


@dataclass
class Ended:
    """How one run of a worker ended."""

    pid: int
    returncode: int
    ready: bool  # it served (it said so on its status line)
    error: str | None = None  # what stopped its start, in one line
    code: int = EXIT_USER


def supervise(settings: Settings) -> int:
    """Run the gateway as N workers until a signal stops it; the exit code."""
    listeners = bind_listeners(settings.host, settings.port, settings.metrics.listen)
    try:
        with private_run_dir() as run_dir:
            return trio.run(Supervisor(settings, listeners, run_dir).run)
    finally:
        listeners.close()


class Supervisor:
    """Keeps `settings.scale.worker_count()` workers running until told to stop."""

    def __init__(self, settings: Settings, listeners: Listeners, run_dir: Path) -> None:
        self._settings = replace(settings, port=listeners.port)  # port 0: the one bound
        self._listeners = listeners
        self._count = settings.scale.worker_count()
        self._run_dir = run_dir
        self._running: dict[int, trio.Process] = {}
        self._serving: set[int] = set()  # pids that said ready: their signals are their own
        self._stopping = trio.Event()
        self._failure: UserFacingError | None = None  # why the gateway could not start
        self._first_starts = 0

    async def run(self) -> int:
        async with trio.open_nursery() as nursery:
            await nursery.start(self._forward_signals)
            nursery.start_soon(self._backstop)
            shared = await self._prepare()
            if shared is not None:
                try:
                    async with trio.open_nursery() as workers:
                        for index in range(self._count):
                            workers.start_soon(self._keep, index, shared)
                finally:
                    shared.close()
            nursery.cancel_scope.cancel()  # every worker is gone: nothing left to forward to
        if self._failure is not None:
            raise self._failure
        log.info("stopped", extra=event("shutdown", phase="stopped"))
        return 0

    async def _prepare(self) -> SharedState | None:
        """The start-up work, once, before any worker runs (None: the gateway stops)."""
        try:
            holds, money = await trio.to_thread.run_sync(startup_reclaim, self._settings)
            shared = SharedState.create(self._shared_path, workers=self._count)
        except (ConfigError, OSError) as error:
            self._failure = UserFacingError(str(error))
            return None
        if holds or money:
            log.warning(
                "released %d holds and $%s of leases left by a gateway process that stopped "
                "without settling them; the usage of those requests is unknown",
                holds, format_usd(money),
                extra=event("reclaim", holds=holds, money=money),
            )  # fmt: skip
        if self._stopping.is_set():  # a signal came meanwhile
            shared.close()
            return None
        return shared

    @property
    def _shared_path(self) -> Path:
        return self._run_dir / "shared"

    def _role(self, index: int) -> WorkerRole:
        metrics = self._listeners.metrics
        return WorkerRole(
            index,
            self._count,
            self._shared_path,
            listen_fd=self._listeners.main.fileno(),
            metrics_fd=metrics.fileno() if metrics is not None else None,
        )

    async def _keep(self, index: int, shared: SharedState) -> None:
        """Run worker `index`, and again each time it dies, until the gateway stops."""
        backoff, served = 0.0, False
        settings = replace(self._settings, worker=self._role(index))
        while not self._stopping.is_set():
            started = trio.current_time()
            ended = await self._run_once(index, settings, restart=served)
            if self._stopping.is_set():
                _log_stopped(index, ended)
                return
            if not served and not ended.ready:  # its first start failed: so would the others'
                self._fail(index, ended)
                return
            served = True
            young = trio.current_time() - started < YOUNG
            backoff = min(MAX_BACKOFF, max(FIRST_BACKOFF, backoff * 2)) if young else 0.0
            why = f" ({ended.error})" if ended.error else ""
            log.warning(
                "worker %d (pid %d) %s%s; restarting it in %.1f s",
                index, ended.pid, _how(ended.returncode), why, backoff,
                extra=event("worker", worker=index, pid=ended.pid, action="died",
                            **_exit_fields(ended.returncode), error=ended.error,
                            restart_in=backoff),
            )  # fmt: skip
            if ended.pid:  # 0: no process was started
                await self._reclaim(index, ended.pid, shared)
            with trio.move_on_after(backoff):
                await self._stopping.wait()

    async def _run_once(self, index: int, settings: Settings, *, restart: bool) -> Ended:
        try:
            process = await trio.lowlevel.open_process(
                [sys.executable, "-P", "-m", "cli.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                pass_fds=self._listeners.fds(),
                process_group=0,  # a terminal's Ctrl-C reaches it through us, once
                env=_worker_env(),
            )
        except OSError as error:  # out of processes or descriptors: like a worker that died
            return Ended(0, 1, False, f"cannot start a worker process: {error}", EXIT_SERVER)
        assert process.stdin is not None and process.stdout is not None
        self._running[index] = process
        if self._stopping.is_set():
            process.send_signal(signal.SIGTERM)
        try:
            with contextlib.suppress(trio.BrokenResourceError):  # died already: see its code
                await process.stdin.send_all(encode_settings(settings))
            status = parse_status(await _read_line(process.stdout))
            ready = "ready" in status
            if ready:
                self._serving.add(process.pid)
                self._started(index, process.pid, restart)
            await process.wait()
        finally:
            del self._running[index]
            self._serving.discard(process.pid)
            await process.stdin.aclose()  # only now: its end tells a worker we are gone
            await process.stdout.aclose()
        assert process.returncode is not None
        error = status.get("error")
        return Ended(process.pid, process.returncode, ready, error, status.get("code", EXIT_USER))

    def _started(self, index: int, pid: int, restart: bool) -> None:
        fields = event(
            "worker", worker=index, pid=pid, action="restarted" if restart else "started"
        )
        if restart:
            log.warning("worker %d restarted (pid %d)", index, pid, extra=fields)
            return
        log.info("worker %d started (pid %d)", index, pid, extra=fields)
        self._first_starts += 1
        if self._first_starts == self._count:
            listen = f"{self._settings.host}:{self._settings.port}"
            log.info(
                "serving on %s with %d workers", listen, self._count,
                extra=event("start", listen=listen, workers=self._count, pid=os.getpid(),
                            run_dir=str(self._run_dir)),
            )  # fmt: skip

    async def _reclaim(self, index: int, pid: int, shared: SharedState) -> None:
        """Release what a dead worker held, before its successor starts."""
        try:
            await trio.to_thread.run_sync(shared.clear_worker, index)
            holds, money = await trio.to_thread.run_sync(reclaim_worker, self._settings, pid)
        except Exception as error:  # the gateway keeps running; a dead owner's leases expire
            log.error(
                "could not release what worker %d (pid %d) held: %s", index, pid, error,
                extra=event("worker", worker=index, pid=pid, action="reclaim_failed"),
            )  # fmt: skip
            return
        if holds or money:
            log.warning(
                "released %d holds and $%s of leases of worker %d (pid %d)",
                holds, format_usd(money), index, pid,
                extra=event("worker", worker=index, pid=pid, action="reclaimed", holds=holds,
                            money=money),
            )  # fmt: skip

    def _fail(self, index: int, ended: Ended) -> None:
        if self._failure is None:
            error = ended.error or f"worker {index} {_how(ended.returncode)} before it served"
            self._failure = UserFacingError(error, ended.code)
        self._stop(signal.SIGTERM)

    def _stop(self, signum: signal.Signals) -> None:
        """Forward `signum` to every worker (SIGTERM to one still starting: it has nothing to
        drain, and it ends quietly); the first time, stop restarting them too."""
        if not self._stopping.is_set():
            self._stopping.set()
            self._listeners.close()  # new connections are refused once the workers close theirs
        for process in self._running.values():
            if process.returncode is None:
                process.send_signal(signum if process.pid in self._serving else signal.SIGTERM)

    async def _forward_signals(self, task_status: trio.TaskStatus[None]) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async for signum in signals:
                name = signal.Signals(signum).name
                again = self._stopping.is_set() and self._failure is None
                count = len(self._running)
                log.info(
                    "received %s%s: forwarding it to %d worker%s", name, " again" if again else "",
                    count, "" if count == 1 else "s",
                    extra=event("shutdown", signal=name, phase="forced" if again else "draining"),
                )  # fmt: skip
                self._stop(signal.Signals(signum))

    async def _backstop(self) -> None:
        """A worker still running well past its own drain's end is stuck: SIGKILL it."""
        await self._stopping.wait()
        await trio.sleep(self._settings.shutdown_grace + KILL_AFTER_GRACE)
        for index, process in self._running.items():
            log.error(
                "worker %d (pid %d) outlived its grace: killing it", index, process.pid,
                extra=event("worker", worker=index, pid=process.pid, action="killed"),
            )  # fmt: skip
            process.kill()


def _log_stopped(index: int, ended: Ended) -> None:
    fields = event("worker", worker=index, pid=ended.pid, action="stopped",
                   **_exit_fields(ended.returncode))  # fmt: skip
    if ended.returncode == 0:
        log.info("worker %d (pid %d) stopped", index, ended.pid, extra=fields)
    else:
        log.warning("worker %d (pid %d) %s", index, ended.pid, _how(ended.returncode), extra=fields)


def _how(returncode: int) -> str:
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"


def _exit_fields(returncode: int) -> dict[str, object]:
    if returncode < 0:
        return {"signal": signal.Signals(-returncode).name}
    return {"exit_code": returncode}


async def _read_line(stream: trio.abc.ReceiveStream) -> bytes:
    """The worker's status line (b"" when it ended without one)."""
    data = b""
    while b"\n" not in data:
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0]


def _worker_env() -> dict[str, str]:
    """Ours. A worker runs with `-P` (the working directory is not on its path, so a `cli`
    there cannot shadow ours), so when our code came from the working directory (a checkout
    run as `python -m cli.main`) that directory is put on its path instead."""
    root = Path(__file__).resolve().parent.parent
    if root != Path.cwd().resolve():
        return dict(os.environ)  # the same interpreter, site and path find the same code
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{path}" if path else str(root)}
