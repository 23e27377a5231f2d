"""A real redis-server (Debian's package) on its own port in a temporary directory, run
by the test that needs it: never the system's service."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.process_helpers import free_port


def redis_binary() -> str:
    """The redis-server binary; a clear failure (not a skip) when it is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not installed: the scaleout tests need Debian's package "
            "(apt-get install -y redis-server; .ci/run installs it)",
            pytrace=False,
        )
    return binary


@contextmanager
def redis_server(folder: Path, port: int | None = None) -> Iterator[str]:
    """Run redis-server until the block ends; its URL."""
    port = port or free_port()
    folder.mkdir(parents=True, exist_ok=True)
    command = [
        redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", str(folder), "--daemonize", "no",
    ]  # fmt: skip
    with (folder / f"redis-{port}.log").open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log)
    try:
        _wait_ready(port, process)
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"redis-server exited at start ({process.returncode})", pytrace=False)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    pytest.fail("redis-server did not answer PING within 10 s", pytrace=False)
