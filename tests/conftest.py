"""Real parts: a fake upstream on its own port, the gateway on another, a real SQLite file
(or a real PostgreSQL server, for the `scaleout` tests: `pg_url`)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
from openai import AsyncOpenAI

from proxy.access import keys as apikeys
from proxy.app import create_app, services_of
from proxy.core.config import Settings, load_settings
from proxy.core.money import usd_to_units
from proxy.server import serve
from proxy.services import Services, build_services
from proxy.store import accounts as acc
from proxy.store import connect, migrate, open_database
from proxy.store.ledger import transaction
from tests import log_capture
from tests.fakes.openai_upstream import FakeOpenAI
from tests.pg_cluster import Cluster
from tests.redis_helpers import redis_server

ROOT = Path(__file__).resolve().parent.parent
INTERNAL_SECRET = "operator-secret-for-tests-0001"  # X-Internal-Secret: the operator's view
OPERATOR = {"x-internal-secret": INTERNAL_SECRET}


@dataclass
class RunningGateway:
    url: str
    settings: Settings
    db_path: Path
    stop: trio.Event
    stopped: trio.Event
    services: Services
    clients: list[AsyncOpenAI] = field(default_factory=list)

    def db(self) -> sqlite3.Connection:
        """A connection of our own: to the SQLite file, or the PostgreSQL database."""
        conn = open_database(self.settings.scale.database_url or self.db_path)
        migrate(conn)
        return conn  # type: ignore[no-any-return]

    def create_key(self, credit: str = "10", email: str = "dev@example.com") -> tuple[str, str]:
        """A user (made if needed) and a key; returns (key id, raw key)."""
        conn = self.db()
        try:
            raw = apikeys.generate_key()
            with transaction(conn):
                user = acc.user_by_email(conn, email) or acc.create_user(conn, email)
                record = acc.create_key(
                    conn,
                    user_id=user.id,
                    name="test",
                    key_hash=apikeys.hash_key(raw),
                    key_prefix=apikeys.display_prefix(raw),
                    credit=usd_to_units(credit),
                )
        finally:
            conn.close()
        return record.id, raw

    def client(self, raw_key: str, **kwargs: Any) -> AsyncOpenAI:
        client = AsyncOpenAI(base_url=self.url + "/v1", api_key=raw_key, max_retries=0, **kwargs)
        self.clients.append(client)
        return client

    async def close_clients(self) -> None:
        for client in self.clients:
            await client.close()

    def usage_rows(self) -> list[dict[str, Any]]:
        conn = self.db()
        try:
            return [dict(r) for r in conn.execute("SELECT * FROM usage ORDER BY id")]
        finally:
            conn.close()

    async def wait_usage_rows(self, count: int, deadline: float = 5.0) -> list[dict[str, Any]]:
        with trio.fail_after(deadline):
            while True:
                rows = self.usage_rows()
                if len(rows) >= count:
                    return rows
                await trio.sleep(0.02)


@pytest.fixture
async def fake_openai(nursery: trio.Nursery) -> AsyncIterator[FakeOpenAI]:
    fake = await nursery.start(FakeOpenAI().run)
    yield fake
    fake.stop()


@pytest.fixture
def gateway_env(fake_openai: FakeOpenAI) -> dict[str, str]:
    return {"OPENAI_API_KEY": "sk-upstream-secret-123", "OPENAI_BASE_URL": fake_openai.url + "/v1"}


@pytest.fixture
def gateway_settings(
    request: pytest.FixtureRequest, tmp_path: Path, gateway_env: dict[str, str]
) -> Settings:
    """`TOKENROUTE_TEST_DATABASE=postgresql` puts every gateway of the run on PostgreSQL
    (a developer's look for dialect slips: tests that pass `--db` to the CLI then fail)."""
    extra = {}
    if os.environ.get("TOKENROUTE_TEST_DATABASE") == "postgresql":
        extra["TOKENROUTE_DATABASE_URL"] = request.getfixturevalue("pg_url")
    return load_settings(
        {
            **gateway_env,
            "TOKENROUTE_SHUTDOWN_GRACE": "2",
            "TOKENROUTE_INTERNAL_SECRET": INTERNAL_SECRET,
            **extra,
        },
        None,
        {"db_path": tmp_path / "tokenroute.db", "port": 0},
    )


@pytest.fixture
def fast_login(tmp_path: Path, gateway_env: dict[str, str]) -> Settings:
    """Settings whose device flow polls every second (tests of `tokenroute login`)."""
    config = tmp_path / "tokenroute.toml"
    config.write_text("[auth]\npoll_interval_seconds = 1\n")
    return load_settings(gateway_env, config, {"db_path": tmp_path / "gw.db", "port": 0})


@asynccontextmanager
async def running_gateway(
    nursery: trio.Nursery, settings: Settings
) -> AsyncIterator[RunningGateway]:
    """The gateway served in this process on the given settings, until the block ends."""
    stop, stopped = trio.Event(), trio.Event()
    app = create_app(settings)

    async def run(task_status: trio.TaskStatus[list[str]]) -> None:
        try:
            await serve(settings, shutdown_trigger=stop.wait, app=app, task_status=task_status)
        finally:
            stopped.set()

    binds = await nursery.start(run)
    url = binds[0].replace("0.0.0.0", "127.0.0.1")
    running = RunningGateway(url, settings, settings.db_path, stop, stopped, services_of(app))
    try:
        yield running
    finally:
        await running.close_clients()
        stop.set()
        with trio.move_on_after(10):
            await stopped.wait()


@pytest.fixture
async def gateway(
    nursery: trio.Nursery, gateway_settings: Settings
) -> AsyncIterator[RunningGateway]:
    async with running_gateway(nursery, gateway_settings) as running:
        yield running


@asynccontextmanager
async def running_services(nursery: trio.Nursery, settings: Settings) -> AsyncIterator[Services]:
    """The services the gateway runs on, started on a real database file, without HTTP."""
    services = build_services(settings)
    await services.start(nursery)
    try:
        yield services
    finally:
        await services.stop()


@pytest.fixture
async def services(nursery: trio.Nursery, gateway_settings: Settings) -> AsyncIterator[Services]:
    async with running_services(nursery, gateway_settings) as running:
        yield running


@pytest.fixture
def tmp_db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = connect(tmp_path / "t.db")
    migrate(conn)
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One PostgreSQL server for the whole run; a test that needs it fails (never skips)
    when the binaries are missing."""
    try:
        cluster = Cluster().start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> Iterator[str]:
    """A fresh, empty database on the test server; its URL (with the password)."""
    url = pg_cluster.create_database()
    yield url
    pg_cluster.drop_database(url)


@pytest.fixture
def pg_settings(tmp_path: Path, gateway_env: dict[str, str], pg_url: str) -> Settings:
    """The gateway's settings with its store on PostgreSQL."""
    return load_settings(
        {
            **gateway_env,
            "TOKENROUTE_SHUTDOWN_GRACE": "2",
            "TOKENROUTE_INTERNAL_SECRET": INTERNAL_SECRET,
            "TOKENROUTE_DATABASE_URL": pg_url,
        },
        None,
        {"db_path": tmp_path / "unused.db", "port": 0},
    )


@pytest.fixture
async def pg_gateway(nursery: trio.Nursery, pg_settings: Settings) -> AsyncIterator[RunningGateway]:
    async with running_gateway(nursery, pg_settings) as running:
        yield running


def pytest_configure(config: Any) -> None:
    log_capture.install()  # every line the run logs, for the secrets check


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say where the browser tests left their screenshots."""
    folder = Path(os.environ.get("TOKENROUTE_TEST_ARTIFACTS", ROOT / ".test-artifacts"))
    shots = sorted(folder.glob("*.png")) if folder.is_dir() else []
    if shots:
        terminalreporter.write_line(f"page screenshots ({len(shots)}): {folder}")


@pytest.fixture
def place(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Where the deployment keeps its books: the database (file or URL) and, for
    gateways on several machines, the Redis URL."""
    if kind != "postgres-redis":
        yield {"db": str(tmp_path / "gw.db")}
        return
    with redis_server(tmp_path / "redis") as redis_url:
        yield {"db": request.getfixturevalue("pg_url"), "redis": redis_url}
