"""A real `tokenroute serve` process beside a fake upstream, for start/stop/kill tests."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2 as httpx
import trio

from tests.cli_helpers import TOKENROUTE, clean_env, run_json
from tests.fakes.openai_upstream import FakeOpenAI


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_until(predicate: Callable[[], bool], deadline: float) -> None:
    """Poll state another process owns (its database, its log) until it holds."""
    with trio.fail_after(deadline):
        while not predicate():  # noqa: ASYNC110 (no event to wait on across processes)
            await trio.sleep(0.05)


def process_env(fake: FakeOpenAI, grace: float = 20) -> dict[str, str]:
    return clean_env(
        OPENAI_API_KEY="sk-upstream",
        OPENAI_BASE_URL=fake.url + "/v1",
        TOKENROUTE_SHUTDOWN_GRACE=str(grace),
    )


async def create_key(db: str, env: dict[str, str], credit: str = "1") -> dict[str, str]:
    """A user and a funded key in the database file, made with the real CLI."""
    await run_json("admin", "create-user", "--email", "s@example.com", "--db", db, env=env)
    return await run_json(  # type: ignore[no-any-return]
        "admin", "create-key", "--email", "s@example.com", "--name", "k",
        "--credit", credit, "--db", db, env=env,
    )  # fmt: skip


@asynccontextmanager
async def serving(
    db: str, env: dict[str, str], log: Path, *args: str
) -> AsyncIterator[tuple[trio.Process, str]]:
    """Run the server until the block ends (killed then if still running); (process, url)."""
    port = free_port()
    with log.open("ab") as out:
        process = await trio.lowlevel.open_process(
            [TOKENROUTE, "serve", "--db", db, "--port", str(port), *args],
            env=env,
            stdout=out,
            stderr=out,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        with trio.fail_after(20):
            async with httpx.AsyncClient() as client:
                while True:
                    try:
                        if (await client.get(url + "/healthz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        await trio.sleep(0.05)
        yield process, url
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


@asynccontextmanager
async def gateway_process(
    tmp_path: Path, fake: FakeOpenAI, grace: float
) -> AsyncIterator[tuple[trio.Process, str, str]]:
    db, env = str(tmp_path / "gw.db"), process_env(fake, grace)
    key = await create_key(db, env)
    async with serving(db, env, tmp_path / "gateway.log") as (process, url):
        yield process, url, key["raw"]
