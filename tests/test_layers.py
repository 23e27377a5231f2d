"""Structure: imports flow down the layers of ARCHITECTURE.md, without cycles; modules stay small.

The rules are data (`ALLOWED`, `ONLY_IN`, `PURE`) checked on the source with `ast`, imports
under `if TYPE_CHECKING:` included: a lower layer reports back through a callback or a
protocol of its own, never by importing its caller. A fixture tree with one wrong import
of each kind shows every rule catching what it is for.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("proxy", "cli", "admin")
MAX_LINES = 400

# What each unit may import of ours. A surface (http, cli, admin) reaches the engine only
# through the services; nothing below the services imports them or a surface.
ENGINE = {"proxy.core", "proxy.providers", "proxy.routing", "proxy.money"}
ENGINE |= {"proxy.access", "proxy.upstream", "proxy.store", "proxy.identity", "proxy.payments"}
ALLOWED: dict[str, set[str]] = {
    "proxy": set(),
    "proxy.data": set(),
    "proxy.core": set(),
    "proxy.providers": {"proxy.core"},
    "proxy.routing": {"proxy.core", "proxy.providers"},
    "proxy.store": {"proxy.core"},
    "proxy.money": {"proxy.core", "proxy.routing", "proxy.store"},
    "proxy.access": {"proxy.core", "proxy.store"},
    "proxy.upstream": {"proxy.core", "proxy.providers", "proxy.routing"},
    "proxy.identity": {"proxy.core", "proxy.store"},
    "proxy.payments": {"proxy.core", "proxy.store", "proxy.money"},
    "proxy.services": ENGINE,
    "proxy.http": {"proxy.core", "proxy.services"},
    "admin": {"proxy.core", "proxy.services"},
    "proxy.app": {"proxy.core", "proxy.services", "proxy.http", "admin"},
    "proxy.server": {"proxy.core", "proxy.app"},
    "cli": {"proxy.core", "proxy.services", "proxy.server"},  # `serve` runs the server
}
# One unit per outside system.
ONLY_IN = {
    "sqlite3": "proxy.store",
    "sqlite_utils": "proxy.store",
    "psycopg": "proxy.store",  # PostgreSQL: the store alone knows the engine
    "psycopg_pool": "proxy.store",
    "httpx2": "proxy.upstream",
    "httpx": "proxy.upstream",
    "stripe": "proxy.payments",
    "authlib": "proxy.identity",
    "joserfc": "proxy.identity",
    "mcp": "proxy.http.mcp",  # the MCP SDK: one module of the HTTP surface
    "prometheus_client": "proxy.services.metrics_export",  # read at scrape time only
    "redis": "proxy.access.redis_limits",  # Redis: limits across machines
}
# Pure logic: no event loop, no network, no disk database, no web framework.
PURE = {"proxy.core", "proxy.providers", "proxy.routing"}
IO_LIBRARIES = {"trio", "quart", "quart_trio", "hypercorn", *ONLY_IN}


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str:
    """proxy.core.chat -> proxy.core; proxy.app -> proxy.app; cli.admin -> cli."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "proxy" else parts[0]


def sources(root: Path) -> dict[str, Path]:
    found = {}
    for top in SOURCES:
        for path in sorted((root / top).rglob("*.py")):
            found[module_name(root, path)] = path
    return found


def imports(root: Path, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(module imported, line) for every import in a file, `TYPE_CHECKING` ones included.

    Relative imports are resolved; `from package import name` names the submodule
    when there is one.
    """
    module = module_name(root, path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((sub if sub in known else target, node.lineno))
    return found


def layer_problems(root: Path) -> list[str]:
    modules = sources(root)
    problems = []
    for module, path in modules.items():
        unit = unit_of(module)
        allowed = ALLOWED.get(unit)
        if allowed is None:
            problems.append(f"{module}: {unit} is in no layer")
            continue
        for target, line in imports(root, path, set(modules)):
            where = f"{path.relative_to(root)}:{line}"
            outside = target.split(".")[0]
            if outside in IO_LIBRARIES and unit in PURE:
                problems.append(f"{where}: {unit} is pure logic but imports {outside}")
            if outside in ONLY_IN and ONLY_IN[outside] not in (unit, module):
                problems.append(f"{where}: only {ONLY_IN[outside]} may import {outside}")
            if outside not in SOURCES:
                continue
            other = unit_of(target)
            if other != unit and other not in allowed:
                problems.append(f"{where}: {unit} may not import {other}")
    return problems


def cycles(root: Path) -> list[list[str]]:
    """Every import cycle between our modules (strongly connected components of two or more)."""
    modules = sources(root)
    graph = {
        module: {t for t, _ in imports(root, path, set(modules)) if t in modules and t != module}
        for module, path in modules.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def oversized(root: Path) -> dict[str, int]:
    return {
        str(path.relative_to(root)): n
        for path in sources(root).values()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }


def test_the_project_keeps_its_layers() -> None:
    assert layer_problems(ROOT) == []


def test_the_project_has_no_import_cycles() -> None:
    assert cycles(ROOT) == []


def test_modules_stay_small() -> None:
    assert oversized(ROOT) == {}


def test_the_checks_catch_wrong_imports(tmp_path: Path) -> None:
    tree = {
        "proxy/__init__.py": "",
        "proxy/core/__init__.py": "",
        "proxy/core/chat.py": "from ..store import db\n",  # core reaches up
        "proxy/routing/__init__.py": "",
        "proxy/routing/plan.py": (
            "from typing import TYPE_CHECKING\nimport trio\n"  # pure logic with an event loop
            "if TYPE_CHECKING:\n    from ..services import ChatService\n"  # up, for types
        ),
        "proxy/store/__init__.py": "",
        "proxy/store/db.py": "import sqlite3\nimport httpx2\n",  # only upstream speaks HTTP
        "proxy/services/__init__.py": "",
        "proxy/http/__init__.py": "",
        "proxy/http/v1.py": "from proxy.store import db\nfrom ..services import x\nimport mcp\n",
        "proxy/money/__init__.py": "",
        "proxy/money/wallet.py": "from . import ledger\n",
        "proxy/money/ledger.py": "from .wallet import Wallet\n",  # a cycle
        "proxy/gadgets/__init__.py": "",  # a package in no layer
        "cli/__init__.py": "",
        "cli/main.py": "from proxy.upstream import relay\n" + "x = 1\n" * MAX_LINES,
        "proxy/upstream/__init__.py": "",
        "proxy/upstream/relay.py": "import httpx2\n",
    }
    for name, text in tree.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert sorted(layer_problems(tmp_path)) == sorted(
        [
            "proxy/core/chat.py:1: proxy.core may not import proxy.store",
            "proxy/routing/plan.py:2: proxy.routing is pure logic but imports trio",
            "proxy/routing/plan.py:4: proxy.routing may not import proxy.services",
            "proxy/store/db.py:2: only proxy.upstream may import httpx2",
            "proxy/http/v1.py:1: proxy.http may not import proxy.store",
            "proxy/http/v1.py:3: only proxy.http.mcp may import mcp",  # the SDK: one module
            "proxy.gadgets: proxy.gadgets is in no layer",
            "cli/main.py:1: cli may not import proxy.upstream",
        ]
    )
    assert cycles(tmp_path) == [["proxy.money.ledger", "proxy.money.wallet"]]
    assert oversized(tmp_path) == {"cli/main.py": MAX_LINES + 1}
