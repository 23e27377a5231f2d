"""The scorer against the labelled prompts in tests/data: exact-tier accuracy and no wild misses.

The prompts (chat, code, math, writing, extraction, agentic tool use, images,
several languages) were written and labelled for this project by what the
cheapest adequate model would be, apart from the scorer's weights. The test
prints the confusion matrix and fails below 80 % exact-tier accuracy, or if any
REASONING prompt scores SIMPLE, or any SIMPLE prompt REASONING.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from proxy.routing.autoroute import builtin_scoring
from proxy.routing.scoring import TIERS, Scorer

DATA = Path(__file__).resolve().parent / "data"


def labelled() -> list[dict[str, Any]]:
    items = []
    for path in sorted(DATA.glob("auto_prompts_*.jsonl")):
        items += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return items


def request(item: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "tokenroute/auto", "messages": item["messages"]}
    if item.get("tools"):
        body["tools"] = item["tools"]
    return body


def confusion_report(pairs: list[tuple[str, str]]) -> str:
    counts = Counter(pairs)
    width = max(map(len, TIERS)) + 2
    lines = ["labelled \\ scored".ljust(20) + "".join(t.rjust(width) for t in TIERS)]
    for truth in TIERS:
        row = "".join(str(counts[truth, scored]).rjust(width) for scored in TIERS)
        lines.append(truth.ljust(20) + row)
    right = sum(counts[t, t] for t in TIERS)
    lines.append(f"exact tier: {right}/{len(pairs)} = {right / len(pairs):.1%}")
    return "\n".join(lines)


def test_the_set_covers_what_auto_routing_meets() -> None:
    items = labelled()
    assert len(items) >= 300
    assert len({i["id"] for i in items}) == len(items)
    tiers = Counter(i["tier"] for i in items)
    assert set(tiers) == set(TIERS) and min(tiers.values()) >= 60
    categories = Counter(i["category"] for i in items)
    for wanted in ("chat", "code", "math", "writing", "extraction", "agentic", "vision"):
        assert categories[wanted] >= 10, wanted
    languages = Counter(i["lang"] for i in items)
    assert len([lang for lang, n in languages.items() if n >= 5]) >= 6
    assert sum(1 for i in items if i.get("tools")) >= 25


def test_exact_tier_accuracy_is_at_least_80_percent() -> None:
    scorer = Scorer.from_data(builtin_scoring())
    items = labelled()
    pairs = [(item["tier"], scorer.score(request(item)).tier) for item in items]
    report = confusion_report(pairs)
    print("\n" + report)
    wild = [
        f"{item['id']} ({truth} scored {scored})"
        for item, (truth, scored) in zip(items, pairs, strict=True)
        if {truth, scored} == {"SIMPLE", "REASONING"}
    ]
    assert not wild, "REASONING and SIMPLE confused:\n" + "\n".join(wild) + "\n" + report
    right = sum(truth == scored for truth, scored in pairs)
    assert right / len(pairs) >= 0.80, report


def test_scoring_is_deterministic_and_explained() -> None:
    scorer = Scorer.from_data(builtin_scoring())
    for item in labelled()[::7]:
        first, again = scorer.score(request(item)), scorer.score(request(item))
        assert first == again
        assert round(sum(s.points for s in first.signals), 2) == first.score
