"""How long tokenroute/auto takes to score a conversation, on one core.

Builds conversations of about 2,000 and 32,000 tokens (counted with tiktoken's
o200k) from the labelled prompts in `tests/data/` (prose, code, math, several
languages, tool calls), then times the scorer and the whole routing decision
many times each with the process pinned to one CPU. For scale it also times
counting the same conversation's tokens with tiktoken. From the repository
root, with the project's venv python:

    python ops/bench/scoring_bench.py [--runs 3000]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from proxy.core.config import load_settings
from proxy.money.tokens import load_o200k, message_text
from proxy.routing.autoroute import AutoRouter
from proxy.routing.catalog import build_catalog

ROOT = Path(__file__).resolve().parents[2]
PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "DEEPSEEK_API_KEY", "MISTRAL_API_KEY")


def labelled() -> list[dict[str, Any]]:
    items = []
    for path in sorted((ROOT / "tests" / "data").glob("auto_prompts_*.jsonl")):
        items += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return items


def conversation(items: list[dict[str, Any]], tokens: int) -> dict[str, Any]:
    """Turns taken from the labelled prompts, in a fixed order, until `tokens` is reached."""
    encoder = load_o200k()
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a careful assistant."}]
    for i, item in enumerate(items):
        text, _ = message_text(item["messages"])
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
        if len(encoder.encode(message_text(messages)[0])) >= tokens:
            break
    if messages[-1]["role"] != "user":
        messages.append({"role": "user", "content": "Given all that, what should I do first?"})
    return {"model": "tokenroute/auto", "messages": messages}


def timings(fn: Any, runs: int) -> dict[str, float]:
    for _ in range(min(200, runs)):
        fn()
    gc.collect()
    gc.disable()
    try:
        samples = []
        for _ in range(runs):
            start = time.perf_counter_ns()
            fn()
            samples.append(time.perf_counter_ns() - start)
    finally:
        gc.enable()
    samples.sort()

    def at(q: float) -> float:
        return samples[min(len(samples) - 1, int(q * len(samples)))] / 1e6

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": samples[-1] / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--cpu", type=int, default=0, help="the CPU to pin to")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.cpu})
    settings = load_settings({k: "unused" for k in PROVIDER_KEYS}, None, {})
    router = AutoRouter(build_catalog(settings), settings.auto)
    items = labelled()
    encoder = load_o200k()
    print(
        f"{platform.node()} · {platform.processor() or platform.machine()} · "
        f"{os.cpu_count()} CPUs · Python {platform.python_version()} · pinned to CPU {args.cpu}"
    )
    print(
        "| conversation | messages | tokens (o200k) | score p50 / p99 / max (ms) | "
        "route decision p99 (ms) | tiktoken count p50 (ms) |"
    )
    print("|---|---|---|---|---|---|")
    for target in (2_000, 32_000):
        body = conversation(items * 8, target)
        text, _ = message_text(body["messages"])
        tokens = len(encoder.encode(text))
        score = timings(lambda body=body: router.scorer.score(body), args.runs)
        decide = timings(lambda body=body: router.decide(body), args.runs)
        count = timings(lambda text=text: encoder.encode(text), max(20, args.runs // 50))
        print(
            f"| ~{target:,} tokens | {len(body['messages'])} | {tokens:,} | "
            f"{score['p50']:.3f} / {score['p99']:.3f} / {score['max']:.3f} | "
            f"{decide['p99']:.3f} | {count['p50']:.2f} |"
        )


if __name__ == "__main__":
    main()
