"""Settings: defaults with no file, env and file precedence, one clear line for a bad value."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from proxy.core.config import load_settings
from proxy.core.errors import ConfigError
from tests.cli_helpers import clean_env, run_cli


def test_defaults_work_with_no_file_at_all() -> None:
    settings = load_settings({})
    assert settings.db_path == Path("tokenroute.db")
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.providers == ()


def test_env_enables_builtin_providers() -> None:
    settings = load_settings(
        {
            "OPENAI_API_KEY": "sk-a",
            "DEEPSEEK_API_KEY": "sk-d",
            "MISTRAL_API_KEY": "m",
            "MISTRAL_BASE_URL": "http://127.0.0.1:1/v1/",
        }
    )
    by_name = {p.name: p for p in settings.providers}
    assert set(by_name) == {"openai", "deepseek", "mistral"}
    assert by_name["openai"].base_url == "https://api.openai.com/v1"
    assert by_name["mistral"].base_url == "http://127.0.0.1:1/v1"
    assert "sk-a" not in repr(by_name["openai"])  # secrets stay out of logs


def test_file_then_env_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "tokenroute.toml"
    path.write_text(
        '[server]\nport = 9000\nhost = "0.0.0.0"\ndb = "file.db"\nmarkup = "0.1"\n'
        '[providers.local]\nkind = "openai-compatible"\nbase_url = "http://127.0.0.1:8000/v1"\n'
        'api_key_env = "LOCAL_KEY"\nmodels = ["llama-3.1-8b"]\n'
        '[models."local/llama-3.1-8b"]\ninput_price = "0.05"\noutput_price = 0.1\n'
        "context_length = 8192\n"
    )
    settings = load_settings(
        {"TOKENROUTE_CONFIG": str(path), "TOKENROUTE_PORT": "9100", "LOCAL_KEY": "k"},
        None,
        {"db_path": "flag.db", "host": None},
    )
    assert settings.port == 9100 and settings.host == "0.0.0.0"
    assert settings.db_path == Path("flag.db") and settings.markup == Decimal("0.1")
    [local] = settings.providers
    assert local.name == "local" and local.api_key == "k" and local.models == ("llama-3.1-8b",)
    [model] = settings.models
    assert model.input_price == Decimal("0.05") and model.output_price == Decimal("0.1")


@pytest.mark.parametrize(
    ("env", "toml", "needle"),
    [
        ({"TOKENROUTE_PORT": "eighty"}, "", "TOKENROUTE_PORT"),
        ({"TOKENROUTE_PORT": "70000"}, "", "TOKENROUTE_PORT"),
        ({"TOKENROUTE_SHUTDOWN_GRACE": "-1"}, "", "TOKENROUTE_SHUTDOWN_GRACE"),
        ({"TOKENROUTE_INTERNAL_SECRET": "short"}, "", "TOKENROUTE_INTERNAL_SECRET"),
        ({}, "[server]\nprot = 1\n", "'prot'"),
        ({}, "[server\n", "config file"),
        ({}, '[providers.x]\nkind = "openai-compatible"\n', "base_url is required"),
        ({}, '[providers.x]\nbase_url = "ftp://h"\n', "base_url"),
        ({}, '[providers.x]\nbase_url = "http://h"\napi_key_env = "NOPE"\n', "NOPE"),
        ({}, '[models."nomodel"]\n', "provider/model"),
        ({}, '[models."a/b"]\ninput_price = "cheap"\n', "input_price"),
    ],
)
def test_bad_settings_name_the_setting(
    tmp_path: Path, env: dict[str, str], toml: str, needle: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(env, path if toml else None)
    assert needle in str(caught.value)
    assert "\n" not in str(caught.value)


async def test_serve_with_a_bad_setting_prints_one_line(tmp_path: Path) -> None:
    done = await run_cli("serve", env=clean_env(TOKENROUTE_PORT="eighty"))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "tokenroute: error: TOKENROUTE_PORT: expected an integer, got 'eighty'"
    ]


async def test_serve_with_a_missing_config_file(tmp_path: Path) -> None:
    done = await run_cli("serve", "--config", str(tmp_path / "missing.toml"))
    assert done.returncode == 1 and "config file not found" in done.stderr
    assert "Traceback" not in done.stderr


async def test_serve_on_a_busy_port_prints_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = await run_cli("serve", "--port", str(port), "--db", str(tmp_path / "x.db"))
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert errors == [
        f"tokenroute: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
    assert "Traceback" not in done.stderr


async def test_serve_with_a_database_in_a_missing_directory(tmp_path: Path) -> None:
    done = await run_cli("serve", "--db", str(tmp_path / "nope" / "x.db"))
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        == f"tokenroute: error: database directory does not exist: {tmp_path / 'nope'}"
    )


async def test_serve_refuses_a_model_without_prices(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[providers.local]\nbase_url = "http://127.0.0.1:9/v1"\nmodels = ["llama"]\n')
    done = await run_cli("serve", "--config", str(config), "--db", str(tmp_path / "x.db"))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and 'models."local/llama"' in errors[0] and "free = true" in errors[0]
