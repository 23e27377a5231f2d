"""Structure: imports flow down the layers of ARCHITECTURE.md; modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {
    0: {
        "config",
        "config_values",
        "config_models",
        "errors",
        "money",
        "chat",
        "sse",
        "apikeys",
        "data",
    },
    1: {"catalog", "providers", "billing", "routing", "scoring", "scoring_data", "autoroute"},
    2: {
        "tokens",
        "ratelimit",
        "wallet",
        "auth",
        "store",
        "relay",
        "metering",
        "cooldown",
        "failover",
        "sessions",
    },
    3: {"api", "auto_api", "health", "edge"},
    4: {"app", "server"},
}
LAYER_OF = {name: layer for layer, names in LAYERS.items() for name in names}
IO_LIBRARIES = {
    "trio",
    "httpx2",
    "httpx",
    "quart",
    "quart_trio",
    "hypercorn",
    "sqlite3",
    "sqlite_utils",
}
ONLY_IN = {"sqlite3": "store", "sqlite_utils": "store", "httpx2": "relay", "httpx": "relay"}
MAX_LINES = 400


def modules() -> list[Path]:
    return sorted(p for p in (ROOT / "proxy").rglob("*.py"))


def top_module(path: Path) -> str:
    parts = path.relative_to(ROOT / "proxy").with_suffix("").parts
    return parts[0] if parts[0] != "__init__" else "__init__"


def runtime_imports(path: Path) -> list[tuple[str, int]]:
    """(module, level) for imports that run: `if TYPE_CHECKING:` blocks are skipped."""
    tree = ast.parse(path.read_text())
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, 0) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                found.append((child.module or "", child.level))
            visit(child)

    visit(tree)
    return found


def resolve(path: Path, module: str, level: int) -> str | None:
    """The proxy top-level module a relative import names, or None for outside packages."""
    if level == 0:
        return module.split(".")[1] if module.startswith("proxy.") else None
    package = path.relative_to(ROOT / "proxy").parent.parts
    base = list(package[: len(package) - (level - 1)]) if level > 1 else list(package)
    target = base + (module.split(".") if module else [])
    return target[0] if target else None


def test_every_module_has_a_layer() -> None:
    for path in modules():
        name = top_module(path)
        assert name == "__init__" or name in LAYER_OF, f"{path} is in no layer"


def test_imports_flow_down() -> None:
    problems = []
    for path in modules():
        name = top_module(path)
        if name == "__init__":
            continue
        layer = LAYER_OF[name]
        for module, level in runtime_imports(path):
            external = module.split(".")[0] if level == 0 else None
            if external in IO_LIBRARIES and layer <= 1:
                problems.append(f"{path.name}: layer {layer} imports {external}")
            if external in ONLY_IN and name != ONLY_IN[external]:
                problems.append(f"{path.name}: only {ONLY_IN[external]} may import {external}")
            target = resolve(path, module, level)
            if target and target in LAYER_OF and LAYER_OF[target] > layer:
                problems.append(f"{path.name} (L{layer}) imports {target} (L{LAYER_OF[target]})")
    assert problems == []


def test_modules_stay_small() -> None:
    sources = modules() + sorted((ROOT / "cli").rglob("*.py"))
    big = {
        str(p.relative_to(ROOT)): n
        for p in sources
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert big == {}
