"""A small catalog for tokenroute/auto tests: each tier, each capability, known prices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from proxy.core.config import Settings, load_settings

# name: (tiers, tools, vision, context, input $/M, output $/M)
MODELS = {
    "nano": (["SIMPLE"], False, False, 8_000, "0.05", "0.20"),
    "mini": (["SIMPLE", "MEDIUM"], True, False, 32_000, "0.15", "0.60"),
    "seer": (["SIMPLE", "MEDIUM"], True, True, 32_000, "0.30", "1.20"),
    "large": (["COMPLEX"], True, True, 128_000, "2", "8"),
    "wide": (["COMPLEX"], True, False, 1_000_000, "3", "12"),
    "thinker": (["REASONING"], False, False, 200_000, "1", "4"),
    "thinker-tools": (["REASONING"], True, True, 200_000, "5", "20"),
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look a fact up",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
]
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
QUESTION = "What's the capital of France?"
PROOF = (
    "Prove that there are infinitely many primes of the form 4k+3. Justify each step rigorously."
)


def config(extra: str = "", base_url: str = "http://127.0.0.1:9/v1") -> str:
    lines = ["[providers.local]", f'base_url = "{base_url}"', f"models = {list(MODELS)}"]
    for name, (tiers, tools, vision, context, inp, out) in MODELS.items():
        lines += [
            f'[models."local/{name}"]',
            f"tiers = {tiers}",
            f"tools = {str(tools).lower()}",
            f"vision = {str(vision).lower()}",
            f"context_length = {context}",
            f'input_price = "{inp}"',
            f'output_price = "{out}"',
        ]
    return "\n".join(lines).replace("'", '"') + "\n" + extra


def settings_for(
    tmp_path: Path, extra: str = "", base_url: str = "http://127.0.0.1:9/v1"
) -> Settings:
    path = tmp_path / "tokenroute.toml"
    path.write_text(config(extra, base_url))
    return load_settings({}, path, {"db_path": tmp_path / "gw.db", "port": 0})


def ask(text: str, *, tools: bool = False, image: bool = False, **extra: Any) -> dict[str, Any]:
    """A one-message tokenroute/auto request."""
    content: Any = [{"type": "text", "text": text}, IMAGE] if image else text
    body: dict[str, Any] = {
        "model": "tokenroute/auto",
        "messages": [{"role": "user", "content": content}],
    }
    if tools:
        body["tools"] = TOOLS
    return {**body, **extra}
