"""A real PostgreSQL server for the tests: Debian's binaries, a cluster in a temp dir.

`Cluster.start()` runs `initdb` and `postgres` on a free port on 127.0.0.1, with password
(SCRAM) authentication over TCP, as an unprivileged user: the current one, or `nobody`
when the tests run as root (PostgreSQL refuses to run as root). Missing binaries are a
failure with the package to install, never a skip.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

PASSWORD = "pg-test-secret-4711"
SUPERUSER = "tokenroute"


def binaries() -> Path:
    """The newest installed PostgreSQL's bin directory; fails with what to install."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=_major)
    if not found:
        on_path = shutil.which("postgres")
        if on_path and shutil.which("initdb"):
            return Path(on_path).parent
        raise RuntimeError(
            "PostgreSQL is not installed: the scaleout tests need its server binaries "
            "(Debian: apt-get install postgresql; .ci/run installs it)"
        )
    return Path(found[-1]).parent


def _major(path: str) -> int:
    part = Path(path).parent.parent.name
    return int(part) if part.isdigit() else 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    port: int = 0
    folder: Path = Path()
    process: subprocess.Popen[bytes] | None = None
    databases: list[str] = field(default_factory=list)
    log: Path = Path()

    def url(self, database: str = "postgres", password: str = PASSWORD) -> str:
        return f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{self.port}/{database}"

    def start(self) -> Cluster:
        bin_dir = binaries()
        self.folder = Path(tempfile.mkdtemp(prefix="tokenroute-pg-"))
        data, self.log, pwfile = (
            self.folder / "data",
            self.folder / "server.log",
            self.folder / "pw",
        )
        pwfile.write_text(PASSWORD + "\n")
        user = _run_as()
        if user is not None:
            for path in (self.folder, pwfile):
                os.chown(path, user.pw_uid, user.pw_gid)
        run = _runner(user)
        run([str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--pwfile", str(pwfile),
             "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8",
             "--locale=C.UTF-8", "--no-sync"], check=True, capture_output=True)  # fmt: skip
        self.port = free_port()
        with open(self.log, "wb") as log:
            self.process = run(
                [str(bin_dir / "postgres"), "-D", str(data), "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.folder}",
                 "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                 "-c", "max_connections=300", "-c", "shared_buffers=64MB"],
                stdout=log, stderr=subprocess.STDOUT, popen=True,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return self
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    tail = self.log.read_text()[-2000:]
                    raise RuntimeError(f"PostgreSQL did not start: {tail}") from None
                time.sleep(0.1)

    def create_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[-1]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def _run_as() -> pwd.struct_passwd | None:
    """PostgreSQL will not run as root: then run it as `nobody`."""
    if os.geteuid() != 0:
        return None
    return pwd.getpwnam("nobody")


def _runner(user: pwd.struct_passwd | None):  # type: ignore[no-untyped-def]
    def run(args: list[str], *, popen: bool = False, **kwargs):  # type: ignore[no-untyped-def]
        extra = {} if user is None else {"user": user.pw_uid, "group": user.pw_gid,
                                         "extra_groups": []}  # fmt: skip
        env = {**os.environ, "LC_ALL": "C.UTF-8"}
        if popen:
            return subprocess.Popen(args, env=env, **extra, **kwargs)
        return subprocess.run(args, env=env, **extra, **kwargs)

    return run
