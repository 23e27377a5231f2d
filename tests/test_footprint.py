"""What every gateway process carries: measured where a regression would hide it.

The supervisor and each worker count against the memory of a deployment (a worker per
core), so the supervisor must not load the gateway, the MCP SDK loads on first use, and
a request body held for the life of its stream is its own size."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc

from proxy.providers.base import json_body

HEAVY = ("proxy.upstream.relay", "proxy.http.mcp", "mcp", "stripe", "tiktoken", "quart")


def loaded_after(statement: str) -> set[str]:
    """The HEAVY modules a fresh interpreter has loaded after running `statement`."""
    probe = f"import sys; {statement}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_supervisor_does_not_load_the_gateway() -> None:
    assert loaded_after("import cli.serve, cli.supervisor") == set()


def test_the_app_loads_the_mcp_sdk_only_when_asked() -> None:
    loaded = loaded_after("import proxy.app")
    assert "quart" in loaded and "proxy.upstream.relay" in loaded  # the probe sees imports
    assert not loaded & {"mcp", "proxy.http.mcp"}


def test_a_request_body_is_its_own_size() -> None:
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    tracemalloc.start()
    try:
        kept = json_body(body)
        size, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept.startswith(b'{"model"')
    assert size < 512, f"{size} bytes held for a {len(kept)}-byte body"


def test_every_name_the_services_package_exports_loads_from_its_home() -> None:
    """The lazy package lists each name three times (type checkers, the loader, `__all__`):
    a name missing from one is caught here, not by the first surface that asks for it."""
    import proxy.services as services

    assert sorted(services.__all__) == sorted(services._HOMES)
    for name in services.__all__:
        assert getattr(services, name) is not None  # its home defines it
