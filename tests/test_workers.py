"""`tokenroute serve --workers 2`, the real CLI as a subprocess beside a fake upstream: both
workers serve the one port, `/metrics` counts the whole gateway whichever worker answers,
a killed worker is restarted (after a back-off when its restarts fail), SIGTERM drains
streams on both, and a busy port or a bad setting is one line.

Which worker served what is read from the JSON log: every line of a worker says `"worker"`,
the Quart app and the edge write one line per request, and the supervisor logs each
worker's start, death and restart with its pid.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2 as httpx
import orjson
import pytest
import trio

from tests.cli_helpers import run_cli
from tests.fakes.openai_upstream import FakeOpenAI
from tests.process_helpers import create_key, free_port, process_env, serving, wait_until
from tests.test_shutdown import read_stream, usage_rows

SECRET = "s" * 32
CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def log_lines(log: Path) -> list[dict[str, Any]]:
    """The whole lines so far: a process may be writing the last one as this reads."""
    found = []
    for line in log.read_bytes().split(b"\n")[:-1]:
        if line.startswith(b"{"):
            found.append(orjson.loads(line))
    return found


def supervisor_events(log: Path, action: str) -> list[dict[str, Any]]:
    return [r for r in log_lines(log) if r["event"] == "worker" and r.get("action") == action]


def served_by(log: Path, route: str) -> dict[int, int]:
    """worker -> requests of `route` it logged."""
    counts: dict[int, int] = {}
    for r in log_lines(log):
        if r["event"] == "request" and r.get("route") == route:
            counts[r["worker"]] = counts.get(r["worker"], 0) + 1
    return counts


def alive(pid: int) -> bool:
    """Running (a zombie no parent reaped yet is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] != b"Z"


def workers_env(fake: FakeOpenAI, grace: float = 20) -> dict[str, str]:
    return {**process_env(fake, grace), "TOKENROUTE_LOG_FORMAT": "json",
            "TOKENROUTE_INTERNAL_SECRET": SECRET}  # fmt: skip


async def unlimited_key(db: str, env: dict[str, str], credit: str = "5") -> dict[str, str]:
    """A funded key whose rate limits stay out of the way of these bursts."""
    key = await create_key(db, env, credit)
    limits = ("--rps", "1000", "--burst", "1000", "--max-streams", "100")
    done = await run_cli("admin", "set-limits", "--key", key["id"], *limits, "--db", db, env=env)
    assert done.returncode == 0, done.stderr
    return key


async def both_started(log: Path) -> dict[int, int]:
    """worker -> pid, once the supervisor says both serve."""
    await wait_until(lambda: any(r["event"] == "start" and r.get("workers") == 2
                                 for r in log_lines(log)), 30)  # fmt: skip
    return {r["worker"]: r["pid"] for r in supervisor_events(log, "started")}


async def on_new_connections(
    url: str, count: int, send: Callable[[httpx.AsyncClient], Any]
) -> list[httpx.Response]:
    """`count` requests at once, each on a connection of its own (each a fresh accept)."""
    replies: list[httpx.Response] = []

    async def one() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=20) as client:
            replies.append(await send(client))

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)
    return replies


async def chats_until_both_served(url: str, auth: dict[str, str], log: Path) -> int:
    """Bursts of chats on fresh connections until both workers logged some; how many."""
    sent = 0
    for _ in range(10):
        replies = await on_new_connections(
            url, 16, lambda c: c.post("/v1/chat/completions", json=CHAT, headers=auth)
        )
        assert [r.status_code for r in replies] == [200] * 16
        sent += 16
        await wait_until(lambda n=sent: sum(served_by(log, "/v1/chat/completions").values())
                         == n, 10)  # fmt: skip
        if len(served_by(log, "/v1/chat/completions")) == 2:
            break
    return sent


def samples(text: str, name: str) -> float:
    """The sum of one metric's samples over its label sets."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"{name}(?:{{[^}}]*}})? (\S+)$", line)
        if match:
            total += float(match.group(1))
    return total


async def test_two_workers_share_the_port_and_metrics_count_the_whole_gateway(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    db, env, log = str(tmp_path / "gw.db"), workers_env(fake_openai), tmp_path / "gw.log"
    key = await unlimited_key(db, env)
    auth = {"authorization": f"Bearer {key['raw']}"}
    listen = f"http://127.0.0.1:{free_port()}"  # [metrics] listen: bound once, any worker answers
    config = tmp_path / "c.toml"
    config.write_text(f'[metrics]\nlisten = "{listen.removeprefix("http://")}"\n')
    async with serving(db, env, log, "--workers", "2", "--config", str(config)) as (process, url):
        pids = await both_started(log)
        assert sorted(pids) == [0, 1] and len(set(pids.values())) == 2
        assert process.pid not in pids.values()  # the supervisor serves nothing itself
        sent = await chats_until_both_served(url, auth, log)
        chats = served_by(log, "/v1/chat/completions")
        assert sorted(chats) == [0, 1], chats  # both workers served chats

        for _ in range(10):  # scrapes until each worker has answered some
            replies = await on_new_connections(
                url, 8, lambda c: c.get("/metrics", headers={"x-internal-secret": SECRET})
            )
            for reply in replies:
                assert reply.status_code == 200
                assert samples(reply.text, "tokenroute_requests_total") == sent
                assert samples(reply.text, "tokenroute_request_duration_seconds_count") == sent
                assert samples(reply.text, "tokenroute_workers_scraped") == 2
                assert samples(reply.text, "tokenroute_store_failing") == 0
            await wait_until(lambda: sum(served_by(log, "/metrics").values()) >= 8, 10)
            if len(served_by(log, "/metrics")) == 2:
                break
        assert sorted(served_by(log, "/metrics")) == [0, 1]

        replies = await on_new_connections(listen, 8, lambda c: c.get("/metrics"))
        assert {samples(r.text, "tokenroute_requests_total") for r in replies} == {sent}
        assert {samples(r.text, "tokenroute_workers_scraped") for r in replies} == {2}

        for route in ("/healthz", "/readyz"):  # answered by either worker
            replies = await on_new_connections(url, 8, lambda c, r=route: c.get(r))
            assert {r.status_code for r in replies} == {200}
    assert len(usage_rows(tmp_path / "gw.db")) == sent


async def test_a_killed_worker_is_restarted_and_the_port_keeps_answering(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    db, env, log = str(tmp_path / "gw.db"), workers_env(fake_openai), tmp_path / "gw.log"
    key = await unlimited_key(db, env)
    auth = {"authorization": f"Bearer {key['raw']}"}
    metrics = {"x-internal-secret": SECRET}
    async with serving(db, env, log, "--workers", "2") as (process, url):
        pids = await both_started(log)
        sent = await chats_until_both_served(url, auth, log)
        assert 1 in served_by(log, "/v1/chat/completions")  # worker 1 has counts to lose
        async with httpx.AsyncClient(base_url=url, timeout=20) as client:  # both answer
            scrape = await client.get("/metrics", headers=metrics)
        assert samples(scrape.text, "tokenroute_requests_total") == sent
        os.kill(pids[1], signal.SIGKILL)
        for _ in range(20):  # worker 0 answers meanwhile, on the same port
            async with httpx.AsyncClient(base_url=url, timeout=20) as client:
                assert (await client.post("/v1/chat/completions", json=CHAT,
                                          headers=auth)).status_code == 200  # fmt: skip
        await wait_until(lambda: len(supervisor_events(log, "restarted")) == 1, 30)
        [died] = supervisor_events(log, "died")
        assert (died["worker"], died["pid"], died["signal"]) == (1, pids[1], "SIGKILL")
        assert "was killed by SIGKILL" in died["msg"] and died["level"] == "warning"
        [restarted] = supervisor_events(log, "restarted")
        assert restarted["worker"] == 1 and restarted["pid"] not in pids.values()
        assert process.returncode is None
        for _ in range(4):  # on either worker: the dead worker's counts are still there
            async with httpx.AsyncClient(base_url=url, timeout=20) as client:
                scrape = await client.get("/metrics", headers=metrics)
            assert samples(scrape.text, "tokenroute_workers_scraped") == 2
            # a fall would be a reset to Prometheus, and the whole sum a spike of requests
            assert samples(scrape.text, "tokenroute_requests_total") == sent + 20
            assert samples(scrape.text, "tokenroute_request_duration_seconds_count") == sent + 20


async def test_a_worker_whose_restart_fails_is_retried_with_a_growing_back_off(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """A directory where the worker's metrics socket goes makes each restart fail at start."""
    db, env, log = str(tmp_path / "gw.db"), workers_env(fake_openai), tmp_path / "gw.log"
    await create_key(db, env)
    async with serving(db, env, log, "--workers", "2") as (process, url):
        pids = await both_started(log)
        [start] = [r for r in log_lines(log) if r["event"] == "start" and r.get("workers")]
        blocker = Path(start["run_dir"]) / "metrics-1.sock"
        blocker.unlink()
        blocker.mkdir()
        os.kill(pids[1], signal.SIGKILL)
        await wait_until(lambda: len(supervisor_events(log, "died")) >= 4, 30)
        blocker.rmdir()  # the cause goes away: the next restart serves
        await wait_until(lambda: len(supervisor_events(log, "restarted")) == 1, 30)
        async with httpx.AsyncClient(base_url=url, timeout=20) as client:
            assert (await client.get("/healthz")).status_code == 200
        assert process.returncode is None
    died = supervisor_events(log, "died")
    waits = [r["restart_in"] for r in died]
    assert waits[:4] == [0.5, 1.0, 2.0, 4.0], waits  # not a spin
    assert died[0]["signal"] == "SIGKILL"
    assert all(r["exit_code"] != 0 and r["error"] for r in died[1:4]), died  # and why


async def test_sigterm_lets_streams_on_both_workers_finish_then_exits_0(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.chunk_delay = 0.15
    fake_openai.words = [f" w{i}" for i in range(40)]  # ~6 s
    db, env, log = str(tmp_path / "gw.db"), workers_env(fake_openai), tmp_path / "gw.log"
    key = await unlimited_key(db, env)
    async with serving(db, env, log, "--workers", "2") as (process, url):
        await both_started(log)
        run_dir = Path(next(r["run_dir"] for r in log_lines(log) if r.get("run_dir")))
        outputs: list[list[bytes]] = []
        async with trio.open_nursery() as nursery:
            for _ in range(8):  # batches of streams until both workers hold some
                firsts = [trio.Event() for _ in range(4)]
                for first in firsts:
                    outputs.append([])
                    nursery.start_soon(read_stream, url, key["raw"], outputs[-1], first)
                for first in firsts:
                    await first.wait()
                if all([await active_streams(run_dir, i) for i in (0, 1)]):
                    break
            assert all([await active_streams(run_dir, i) for i in (0, 1)])
            process.send_signal(signal.SIGTERM)
            await trio.sleep(0.3)
            async with httpx.AsyncClient() as client:  # no new connections once stopping
                try:
                    await client.get(url + "/healthz")
                    accepted = True
                except httpx.TransportError:
                    accepted = False
            assert not accepted
        assert all(lines[-1] == b"data: [DONE]" for lines in outputs)  # every stream finished
        with trio.fail_after(15):
            assert await process.wait() == 0
    assert sorted(served_by(log, "/v1/chat/completions")) == [0, 1]  # streams on both
    ok = [r for r in usage_rows(tmp_path / "gw.db") if r["status"] == 200]
    assert len(ok) == len(outputs)
    stopped = supervisor_events(log, "stopped")
    assert sorted(r["worker"] for r in stopped) == [0, 1]
    assert all(r["exit_code"] == 0 for r in stopped)
    draining = [
        r for r in log_lines(log) if r["event"] == "shutdown" and r.get("phase") == "draining"
    ]
    assert sorted(r.get("worker", -1) for r in draining) == [-1, 0, 1]  # supervisor, 2 workers


async def active_streams(run_dir: Path, worker: int) -> float:
    """Streams worker `worker` has open now, from its own counters (its metrics socket)."""
    from proxy.services.metrics_peers import MetricsPeers

    path = run_dir / f"metrics-{worker}.sock"
    answers = await MetricsPeers(run_dir / "unused.sock", {worker: path}).gather()
    return samples(answers[worker][1].decode(), "tokenroute_active_streams")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_second_signal_is_forwarded_and_ends_the_drain(
    tmp_path: Path, fake_openai: FakeOpenAI, signum: signal.Signals
) -> None:
    fake_openai.chunk_delay = 0.2
    fake_openai.words = [f" w{i}" for i in range(300)]  # a minute: far past the test
    db, env, log = str(tmp_path / "gw.db"), workers_env(fake_openai, grace=60), tmp_path / "gw.log"
    key = await create_key(db, env)
    async with serving(db, env, log, "--workers", "2") as (process, url):
        await both_started(log)
        lines: list[bytes] = []
        first = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_stream_until_cut, url, key["raw"], lines, first)
            await first.wait()
            process.send_signal(signum)
            await wait_until(lambda: len([r for r in log_lines(log) if r.get("phase") == "draining"
                                          and "worker" in r]) == 2, 10)  # fmt: skip
            process.send_signal(signum)
            with trio.fail_after(10):  # not the 60 s grace
                assert await process.wait() == 0
    forced = [r for r in log_lines(log) if r.get("phase") == "forced"]
    assert len(forced) == 1
    assert forced[0]["msg"].startswith(f"received {signum.name} again: forwarding")
    # the worker with the stream was still draining: the second signal ended it at once
    assert signum.name in {r.get("signal") for r in supervisor_events(log, "stopped")}
    assert b"data: [DONE]" not in lines
    assert "Traceback" not in log.read_text()


async def test_a_killed_supervisor_takes_its_workers_with_it(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """SIGKILL stops the whole gateway at once, as it stops one process: no orphan serves on."""
    db, env, log = str(tmp_path / "gw.db"), workers_env(fake_openai), tmp_path / "gw.log"
    await create_key(db, env)
    async with serving(db, env, log, "--workers", "2") as (process, _):
        pids = await both_started(log)
        process.kill()
        await process.wait()
        await wait_until(lambda: not any(alive(pid) for pid in pids.values()), 10)
    orphaned = [r for r in log_lines(log) if r.get("phase") == "orphaned"]
    assert sorted(r["worker"] for r in orphaned) == [0, 1]


async def read_stream_until_cut(url: str, raw: str, lines: list[bytes], first: trio.Event) -> None:
    with contextlib.suppress(httpx.TransportError):  # the worker stopped at once under it
        await read_stream(url, raw, lines, first)


async def test_a_busy_port_is_one_line_before_any_worker_starts(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = await run_cli("serve", "--workers", "2", "--port", str(port),
                             "--db", str(tmp_path / "x.db"))  # fmt: skip
        assert done.returncode == 1
        errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
        assert errors == [
            f"tokenroute: error: cannot listen on 127.0.0.1:{port}: Address already in use"
        ]
        assert "Traceback" not in done.stderr and "worker" not in done.stderr

        config = tmp_path / "c.toml"
        config.write_text(f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
        done = await run_cli("serve", "--workers", "2", "--port", "0", "--config", str(config),
                             "--db", str(tmp_path / "x.db"))  # fmt: skip
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert done.stderr.strip().splitlines()[-1] == (
            f"tokenroute: error: cannot listen on 127.0.0.1:{port} ([metrics] listen): "
            "Address already in use"
        )


async def test_a_setting_only_a_worker_can_check_is_one_line(tmp_path: Path) -> None:
    """Each worker fails its first start the same way: the supervisor says it once."""
    config = tmp_path / "c.toml"
    config.write_text('[providers.local]\nbase_url = "http://127.0.0.1:9/v1"\nmodels = ["llama"]\n')
    done = await run_cli("serve", "--workers", "2", "--port", "0", "--config", str(config),
                         "--db", str(tmp_path / "x.db"))  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and 'models."local/llama"' in errors[0], done.stderr
    assert errors[0].startswith("tokenroute: error: ")


ONE = """# HELP tokenroute_requests_total Requests.
# TYPE tokenroute_requests_total counter
tokenroute_requests_total{route="chat",status="200"} 3.0
# HELP tokenroute_request_duration_seconds Time.
# TYPE tokenroute_request_duration_seconds histogram
tokenroute_request_duration_seconds_bucket{route="chat",le="0.1"} 1.0
tokenroute_request_duration_seconds_bucket{route="chat",le="+Inf"} 3.0
tokenroute_request_duration_seconds_count{route="chat"} 3.0
tokenroute_request_duration_seconds_sum{route="chat"} 0.5
# HELP tokenroute_upstream_state State.
# TYPE tokenroute_upstream_state gauge
tokenroute_upstream_state{upstream="m",state="healthy"} 1.0
tokenroute_upstream_state{upstream="m",state="cooling"} 0.0
# HELP tokenroute_active_streams Streams open now.
# TYPE tokenroute_active_streams gauge
tokenroute_active_streams 2.0
# HELP process_start_time_seconds Start.
# TYPE process_start_time_seconds gauge
process_start_time_seconds 200.0
"""
OTHER = """# HELP tokenroute_requests_total Requests.
# TYPE tokenroute_requests_total counter
tokenroute_requests_total{route="chat",status="200"} 4.0
tokenroute_requests_total{route="chat",status="429"} 1.0
# HELP tokenroute_request_duration_seconds Time.
# TYPE tokenroute_request_duration_seconds histogram
tokenroute_request_duration_seconds_bucket{route="chat",le="0.1"} 4.0
tokenroute_request_duration_seconds_bucket{route="chat",le="+Inf"} 4.0
tokenroute_request_duration_seconds_count{route="chat"} 4.0
tokenroute_request_duration_seconds_sum{route="chat"} 0.25
# HELP tokenroute_upstream_state State.
# TYPE tokenroute_upstream_state gauge
tokenroute_upstream_state{upstream="m",state="healthy"} 0.0
tokenroute_upstream_state{upstream="m",state="cooling"} 1.0
# HELP tokenroute_active_streams Streams open now.
# TYPE tokenroute_active_streams gauge
tokenroute_active_streams 5.0
# HELP process_start_time_seconds Start.
# TYPE process_start_time_seconds gauge
process_start_time_seconds 100.0
"""


def test_merged_adds_amounts_and_keeps_the_worst_state() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from proxy.services.metrics_export import merged

    workers = [list(text_string_to_metric_families(text)) for text in (ONE, OTHER)]
    families = merged(workers)
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}
    chat = (("route", "chat"),)
    assert got["tokenroute_requests_total", (*chat, ("status", "200"))] == 7
    assert got["tokenroute_requests_total", (*chat, ("status", "429"))] == 1  # one worker's
    assert got["tokenroute_request_duration_seconds_bucket", (("le", "0.1"), *chat)] == 5
    assert got["tokenroute_request_duration_seconds_bucket", (("le", "+Inf"), *chat)] == 7
    assert got["tokenroute_request_duration_seconds_count", chat] == 7
    assert got["tokenroute_request_duration_seconds_sum", chat] == 0.75
    assert got["tokenroute_active_streams", ()] == 7
    cooling = (("state", "cooling"), ("upstream", "m"))
    healthy = (("state", "healthy"), ("upstream", "m"))
    assert (
        got["tokenroute_upstream_state", cooling],
        got["tokenroute_upstream_state", healthy],
    ) == (1, 1)
    assert got["process_start_time_seconds", ()] == 100  # the earliest
    assert got["tokenroute_workers_scraped", ()] == 2
    kinds = {f.name: f.type for f in families}
    assert kinds["tokenroute_requests"] == "counter"
    assert kinds["tokenroute_request_duration_seconds"] == "histogram"


def test_a_workers_lines_say_which_worker_wrote_them() -> None:
    import logging

    from proxy.core.logs import HumanFormatter, JsonFormatter, event

    record = logging.LogRecord("tokenroute", logging.INFO, __file__, 1, "serving", None, None)
    record.__dict__.update(event("start", port=8080))
    line = orjson.loads(JsonFormatter(1).format(record))
    assert (line["worker"], line["event"], line["port"]) == (1, "start", 8080)
    assert "worker" not in orjson.loads(JsonFormatter().format(record))  # the supervisor's
    assert " INFO [worker 1] tokenroute serving port=8080" in HumanFormatter(1).format(record)
    assert "[worker" not in HumanFormatter().format(record)


def test_a_stuck_worker_is_killed_only_after_its_own_backstop() -> None:
    from cli.supervisor import KILL_AFTER_GRACE
    from proxy.server import DRAIN_MARGIN

    assert KILL_AFTER_GRACE > DRAIN_MARGIN


def test_a_killed_supervisors_run_directory_is_removed_at_the_next_start(tmp_path: Path) -> None:
    """SIGKILL leaves the run directory behind; the next supervisor clears those whose
    supervisor is gone, and only those."""
    from cli.run_dir import private_run_dir

    gone = tmp_path / f"tokenroute-{dead_pid()}-abc"
    live = tmp_path / f"tokenroute-{os.getpid()}-def"
    other = tmp_path / "tokenroute-notapid"
    for path in (gone, live, other):
        path.mkdir()
    with private_run_dir(tmp_path) as run_dir:
        assert run_dir.parent == tmp_path and run_dir.name.startswith(f"tokenroute-{os.getpid()}-")
        assert oct(run_dir.stat().st_mode & 0o777) == "0o700"
        assert not gone.exists() and live.exists() and other.exists()
    assert not run_dir.exists()


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid
