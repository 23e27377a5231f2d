"""The supervisor's listening sockets: bound and listening once, inherited by every worker.

One socket (one accept queue) for all the workers rather than one each with
`SO_REUSEPORT`, by measurement (ops/bench/RESULTS.md, 2026-12-02): as fast under
keep-alive load, 11-24 % faster with a connection per request, because a waiting
connection is taken by whichever worker is free instead of being hashed to one that may
be busy. Connections queued while a worker dies or restarts are served by the others,
and a second gateway on the same port gets "Address already in use" instead of half the
traffic. The cost: connections that arrive together on idle workers split less evenly.
A port that cannot be bound is one line, before any worker starts.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from .output import UserFacingError

BACKLOG = 2048  # as Hypercorn's own bind (`proxy.server.hypercorn_config`)


@dataclass
class Listeners:
    """The main port's socket and, with `[metrics] listen`, the metrics listener's."""

    main: socket.socket
    metrics: socket.socket | None

    def fds(self) -> list[int]:
        return [s.fileno() for s in (self.main, self.metrics) if s is not None]

    @property
    def port(self) -> int:
        return int(self.main.getsockname()[1])

    def close(self) -> None:
        """Close our copies: once the workers close theirs, the port refuses connections."""
        for sock in (self.main, self.metrics):
            if sock is not None:
                sock.close()


def bind_listeners(host: str, port: int, metrics: str | None) -> Listeners:
    main = listen_on(host, port, f"{host}:{port}")
    if metrics is None:
        return Listeners(main, None)
    metrics_host, _, metrics_port = metrics.rpartition(":")
    try:
        return Listeners(
            main, listen_on(metrics_host, int(metrics_port), f"{metrics} ([metrics] listen)")
        )
    except UserFacingError:
        main.close()
        raise


def listen_on(host: str, port: int, shown: str) -> socket.socket:
    """A listening TCP socket on host:port, made as Hypercorn makes its own; inheritable."""
    host = host.strip("[]")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as error:
        sock.close()
        raise UserFacingError(f"cannot listen on {shown}: {error.strerror or error}") from error
    sock.set_inheritable(True)
    return sock
