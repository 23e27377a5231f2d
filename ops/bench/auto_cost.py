"""What tokenroute/auto saves on the labelled prompts, from catalog prices.

Every built-in provider enabled, the default tier mapping. For each labelled
prompt in `tests/data/`: its prompt tokens counted with tiktoken (o200k), an
assumed answer length by its labelled tier, and its cost on the model
auto-routing picks, against sending every prompt to the REASONING tier's model
(and, for scale, to the COMPLEX tier's model). Answer lengths are the same on
both sides, so hidden reasoning tokens (which reasoning models bill as output
even for "what's 2+2") are left out: the real saving is larger. From the
repository root, with the project's venv python:

    python ops/bench/auto_cost.py
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from proxy.core.chat import Usage
from proxy.core.config import load_settings
from proxy.core.model import Model
from proxy.core.money import format_usd
from proxy.money.tokens import IMAGE_TOKENS, TOKENS_PER_MESSAGE, load_o200k, message_text
from proxy.routing.autoroute import AutoRouter
from proxy.routing.catalog import build_catalog

ROOT = Path(__file__).resolve().parents[2]
PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "DEEPSEEK_API_KEY", "MISTRAL_API_KEY")
# Assumed answer tokens by the prompt's labelled tier.
ANSWER_TOKENS = {"SIMPLE": 150, "MEDIUM": 500, "COMPLEX": 1_200, "REASONING": 2_500}
TIERS = ("SIMPLE", "MEDIUM", "COMPLEX", "REASONING")


def labelled() -> list[dict[str, Any]]:
    items = []
    for path in sorted((ROOT / "tests" / "data").glob("auto_prompts_*.jsonl")):
        items += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return items


def prompt_tokens(item: dict[str, Any]) -> int:
    text, count = message_text(item["messages"])
    tools = json.dumps(item.get("tools", [])) if item.get("tools") else ""
    images = sum(
        1
        for m in item["messages"]
        if isinstance(m.get("content"), list)
        for part in m["content"]
        if part.get("type") == "image_url"
    )
    return len(load_o200k().encode(text + tools)) + count * TOKENS_PER_MESSAGE + images * IMAGE_TOKENS


def main() -> None:
    settings = load_settings({k: "unused" for k in PROVIDER_KEYS}, None, {})
    router = AutoRouter(build_catalog(settings), settings.auto)
    items = labelled()
    reasoning, complex_ = router.tiers["REASONING"][0], router.tiers["COMPLEX"][0]
    alone = {m.id: m for m in router.tiers["REASONING"]}  # every REASONING model, on everything
    total: Counter[str] = Counter()
    picked: Counter[str] = Counter()
    below = 0

    def cost(model: Model, usage: Usage) -> int:
        return model.price.cost(usage)

    for item in items:
        body = {"model": "tokenroute/auto", "messages": item["messages"]}
        if item.get("tools"):
            body["tools"] = item["tools"]
        decision = router.decide(body)
        usage = Usage(prompt_tokens(item), ANSWER_TOKENS[item["tier"]], 0)
        fits = [m for m in (reasoning, complex_) if not decision.needs.unmet(m)]
        total["auto"] += cost(decision.models[0], usage)
        total["reasoning"] += cost(reasoning if reasoning in fits else decision.models[0], usage)
        total["complex"] += cost(complex_ if complex_ in fits else decision.models[0], usage)
        for model_id, model in alone.items():
            fitting = model if not decision.needs.unmet(model) else decision.models[0]
            total[model_id] += cost(fitting, usage)
        picked[f"{decision.tier} -> {decision.models[0].id}"] += 1
        below += TIERS.index(decision.tier) < TIERS.index(item["tier"])
    print(f"{len(items)} labelled prompts; answer tokens assumed by labelled tier: {ANSWER_TOKENS}")
    print()
    print("| routing | total cost (USD) | vs all to REASONING |")
    print("|---|---|---|")
    for name, label in (
        ("auto", "tokenroute/auto (default mapping)"),
        ("complex", f"everything to the COMPLEX pick ({complex_.id})"),
        ("reasoning", f"everything to the REASONING pick ({reasoning.id})"),
    ):
        share = total[name] / total["reasoning"]
        print(f"| {label} | {format_usd(total[name])} | {share:.0%} |")
    for model_id in list(alone)[1:]:
        share = total["auto"] / total[model_id]
        print(f"| everything to {model_id} (auto costs {share:.0%} of it) | {format_usd(total[model_id])} | |")
    print()
    print(f"Routed below their labelled tier: {below} of {len(items)}.")
    print()
    print("| tier -> model | prompts |")
    print("|---|---|")
    for route, count in sorted(picked.items(), key=lambda kv: TIERS.index(kv[0].split()[0])):
        print(f"| {route} | {count} |")


if __name__ == "__main__":
    main()
