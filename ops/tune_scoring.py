"""Tune the auto-routing scorer's numbers on labelled prompts; words stay as written.

Reads prompts labelled with their tier (JSON lines: {"tier", "messages", "tools"?},
the format of `tests/data/auto_prompts_*.jsonl`; your own traffic works too),
measures each once, then searches the thresholds, each word signal's weight,
extra and max, and a scale for each counted signal, one at a time (coordinate
ascent), for the most prompts on their exact tier, with a heavy penalty for
confusing SIMPLE and REASONING. It reports accuracy on the prompts it tuned on
and, by k-fold cross-validation, on prompts it did not see, which is what to
expect on new traffic. `--write` puts the numbers back into the scoring file,
keeping its words and comments. From the repository root:

    python ops/tune_scoring.py [--scoring FILE] [--write] [LABELLED.jsonl ...]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from proxy.routing.scoring import Measure, Scorer
from proxy.routing.scoring_data import TIERS, ScoringData, read_scoring

ROOT = Path(__file__).resolve().parents[1]
FACTORS = (0.0, 0.5, 0.7, 0.85, 0.95, 1.05, 1.15, 1.4, 2.0)
STEPS = (-0.5, -0.25, -0.1, 0.1, 0.25, 0.5)
Param = tuple[str, str, str]  # (kind, name, field)


def load(paths: list[Path]) -> list[dict[str, Any]]:
    items = []
    for path in paths:
        items += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return items


def body(item: dict[str, Any]) -> dict[str, Any]:
    out = {"model": "tokenroute/auto", "messages": item["messages"]}
    if item.get("tools"):
        out["tools"] = item["tools"]
    return out


def objective(data: ScoringData, measures: list[Measure], truths: list[str]) -> float:
    scorer = Scorer(data)
    value = 0.0
    for measure, truth in zip(measures, truths, strict=True):
        got = scorer.weigh(measure).tier
        if got == truth:
            value += 1
        elif {got, truth} == {"SIMPLE", "REASONING"}:
            value -= 5
        elif abs(TIERS.index(got) - TIERS.index(truth)) > 1:
            value -= 0.5
    return value


def params(data: ScoringData) -> list[Param]:
    out: list[Param] = [("tier", t, "") for t in TIERS[1:]]
    out += [("counted", s.name, "scale") for s in data.counted]
    for signal in data.lexical:
        out += [("lexical", signal.name, f) for f in ("weight", "extra", "cap")]
    return out


def get(data: ScoringData, param: Param) -> float:
    kind, name, field = param
    if kind == "tier":
        return data.thresholds[name]
    if kind == "counted":
        return 1.0
    return float(getattr(next(s for s in data.lexical if s.name == name), field))


def put(data: ScoringData, param: Param, value: float) -> ScoringData:
    kind, name, field = param
    value = round(value, 2)
    if kind == "tier":
        return replace(data, thresholds={**data.thresholds, name: value})
    if kind == "counted":
        counted = tuple(
            replace(s, points=tuple((x, round(y * value, 2)) for x, y in s.points))
            if s.name == name
            else s
            for s in data.counted
        )
        return replace(data, counted=counted)
    lexical = tuple(replace(s, **{field: value}) if s.name == name else s for s in data.lexical)
    return replace(data, lexical=lexical)


def tune(data: ScoringData, measures: list[Measure], truths: list[str], passes: int) -> ScoringData:
    best = objective(data, measures, truths)
    for _ in range(passes):
        improved = False
        for param in params(data):
            current = get(data, param)
            tries = {current * f for f in FACTORS} | {current + d for d in STEPS}
            for value in sorted(tries):
                if param[2] in ("weight", "cap") and (value < 0) != (current < 0):
                    continue  # a signal keeps its direction
                candidate = put(data, param, value)
                try:
                    score = objective(candidate, measures, truths)
                except ValueError:
                    continue
                if score > best + 1e-9:
                    best, data, improved = score, candidate, True
        if not improved:
            break
    return data


def accuracy(data: ScoringData, measures: list[Measure], truths: list[str]) -> float:
    scorer = Scorer(data)
    right = sum(scorer.weigh(m).tier == t for m, t in zip(measures, truths, strict=True))
    return right / len(truths)


def write_back(path: Path, data: ScoringData) -> None:
    text = path.read_text()
    for tier, value in data.thresholds.items():
        text = _sub(text, r"(?m)^(\[tiers\][^\[]*?^" + tier + r" = )[-0-9.]+", value)
    for steps in data.counted:
        pairs = ", ".join(f"[{x:g}, {y:g}]" for x, y in steps.points)
        text = re.sub(
            r"(?ms)^(\[" + steps.name + r"\][^\n]*\n(?:[^\[\n][^\n]*\n)*?steps = )\[.*?\]\]",
            lambda m, p=pairs: m.group(1) + "[" + p + "]",
            text,
            count=1,
        )
    for signal in data.lexical:
        block = (
            r'(?ms)^(\[\[signal\]\]\nname = "'
            + re.escape(signal.name)
            + r'"\n(?:(?!\[\[)[^\n]*\n)*?'
        )
        for field, key in (("weight", "weight"), ("extra", "extra"), ("cap", "max")):
            text = _sub(text, block + key + r" = )[-0-9.]+", getattr(signal, field))
    path.write_text(text)


def _sub(text: str, pattern: str, value: float) -> str:
    new, count = re.subn(pattern, lambda m: m.group(1) + f"{value:g}", text, count=1)
    if not count:
        raise SystemExit(f"cannot find where to write {pattern!r}")
    return new


def folds(n: int, k: int) -> list[tuple[list[int], list[int]]]:
    return [
        ([i for i in range(n) if i % k != f], [i for i in range(n) if i % k == f]) for f in range(k)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("labelled", nargs="*", type=Path)
    parser.add_argument("--scoring", type=Path, default=ROOT / "proxy" / "data" / "scoring.toml")
    parser.add_argument("--passes", type=int, default=6)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    paths = args.labelled or sorted((ROOT / "tests" / "data").glob("auto_prompts_*.jsonl"))
    items = load(paths)
    data = read_scoring(tomllib.loads(args.scoring.read_text()), str(args.scoring))
    scorer = Scorer(data)
    measures = [scorer.measure(body(i)) for i in items]
    truths = [i["tier"] for i in items]
    print(f"{len(items)} labelled prompts; as written: {accuracy(data, measures, truths):.1%}")
    held_out = []
    for train, test in folds(len(items), args.folds) if args.folds > 1 else ():
        pick: Callable[[list[Any], list[int]], list[Any]] = lambda xs, idx: [xs[i] for i in idx]  # noqa: E731
        fitted = tune(data, pick(measures, train), pick(truths, train), args.passes)
        held_out.append(accuracy(fitted, pick(measures, test), pick(truths, test)))
    if held_out:
        mean = sum(held_out) / len(held_out)
        each = ", ".join(f"{a:.0%}" for a in held_out)
        print(f"cross-validated ({args.folds} folds, tuned without the fold): {mean:.1%} ({each})")
    tuned = tune(data, measures, truths, args.passes)
    print(f"tuned on all: {accuracy(tuned, measures, truths):.1%}")
    if args.write:
        write_back(args.scoring, tuned)
        check = read_scoring(tomllib.loads(args.scoring.read_text()), str(args.scoring))
        print(f"written to {args.scoring}; reads back at {accuracy(check, measures, truths):.1%}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
