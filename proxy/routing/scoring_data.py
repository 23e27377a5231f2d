"""The scorer's tunable data: signals, weights and thresholds, read from TOML and checked.

A bad entry is a `ConfigError` naming it, so an operator's own scoring file
fails start-up with one clear line.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core.config_models import AUTO_TIERS as TIERS
from ..core.errors import ConfigError

# Counted signals, and how each explains itself.
COUNTED = {
    "length": "~{:.0f} tokens",
    "depth": "{:.0f} user turns",
    "tools": "{:.0f} tools defined",
    "tool_results": "{:.0f} tool results so far",
    "images": "{:.0f} images",
    "numbers": "{:.0f} distinct numbers",
}
# Words are what is left between ASCII punctuation and spaces: a byte-level
# translate and a split cost a fifth of a regex scan.
_PUNCTUATION = bytes(c for c in range(128) if not chr(c).isalnum() and chr(c) != "_")
_TO_SPACES = bytes.maketrans(_PUNCTUATION, b" " * len(_PUNCTUATION))
_LEXICAL_KEYS = {
    "name",
    "weight",
    "extra",
    "max",
    "words",
    "phrases",
    "markers",
    "only_if_short",
    "reasoning",
    "with",
}


@dataclass(frozen=True, slots=True)
class Steps:
    """Points over a count (tokens, turns, tools...), linear between the steps."""

    name: str
    points: tuple[tuple[float, float], ...]
    reasoning: bool = False  # counts toward the REASONING threshold
    with_: str | None = None  # counts only when this other signal fired

    def at(self, value: float) -> float:
        steps = self.points
        if not steps or value <= steps[0][0]:
            return steps[0][1] if steps else 0.0
        for (x0, y0), (x1, y1) in itertools.pairwise(steps):
            if value <= x1:
                return y0 + (y1 - y0) * (value - x0) / (x1 - x0)
        return steps[-1][1]


@dataclass(frozen=True, slots=True)
class Lexical:
    """Points for distinct words and phrases matched, and markers counted."""

    name: str
    weight: float  # for the first hit
    extra: float  # for each further hit
    cap: float  # the most it adds (or, for a negative weight, takes away)
    words: frozenset[str]
    # Substrings of the lowercased text, each with the word it starts with: an ASCII
    # phrase is searched for only when its first word is in the text.
    phrases: tuple[tuple[str, str | None], ...]
    markers: tuple[str, ...]  # case-sensitive substrings, counted
    only_if_short: int  # fire only when the last user message has at most this many tokens
    reasoning: bool = False
    with_: str | None = None

    def points(self, hits: int) -> float:
        if hits <= 0:
            return 0.0
        raw = self.weight + self.extra * (hits - 1)
        return max(raw, self.cap) if self.weight < 0 else min(raw, self.cap)


@dataclass(frozen=True, slots=True)
class ScoringData:
    thresholds: dict[str, float]  # where MEDIUM, COMPLEX (total) and REASONING (reasoning) begin
    counted: tuple[Steps, ...]
    lexical: tuple[Lexical, ...]
    earlier: float  # the weight of word signals found before the last user message
    bounds: dict[str, int]  # how much of the conversation the word signals read


def read_scoring(data: Mapping[str, Any], where: str = "scoring") -> ScoringData:
    tiers = _table(data, "tiers", where)
    if set(tiers) != set(TIERS[1:]):
        raise ConfigError(f"{where} [tiers]: give the score where {', '.join(TIERS[1:])} begin")
    thresholds = {t: _number(v, f"{where} [tiers] {t}") for t, v in tiers.items()}
    if not thresholds["MEDIUM"] <= thresholds["COMPLEX"]:
        raise ConfigError(f"{where} [tiers]: COMPLEX must begin at or above MEDIUM")
    text = _table(data, "text", where)
    bounds = {
        k: int(_number(text.get(k, default), f"{where} [text] {k}"))
        for k, default in (
            ("focus_head_chars", 6000),
            ("focus_tail_chars", 2000),
            ("context_head_chars", 3000),
            ("context_tail_chars", 6000),
        )
    }
    signals = data.get("signal", [])
    if not isinstance(signals, list):
        raise ConfigError(f"{where}: [[signal]] entries expected")
    lexical = tuple(_lexical(s, f"{where} [[signal]] #{i + 1}") for i, s in enumerate(signals))
    counted = tuple(_steps(data, name, where) for name in COUNTED)
    names = {s.name for s in lexical} | set(COUNTED)
    for signal in (*counted, *lexical):
        if signal.with_ is not None and signal.with_ not in names:
            raise ConfigError(f"{where} {signal.name}: 'with' names no signal {signal.with_!r}")
    return ScoringData(
        thresholds=thresholds,
        counted=counted,
        lexical=lexical,
        earlier=_number(text.get("earlier_messages", 0.5), f"{where} [text] earlier_messages"),
        bounds=bounds,
    )


def split_words(text: str) -> list[str]:
    return text.lower().encode().translate(_TO_SPACES).decode().split()


def _table(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where} [{key}]: expected a table")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _link(entry: Mapping[str, Any], where: str) -> tuple[bool, str | None]:
    reasoning = entry.get("reasoning", False)
    with_ = entry.get("with")
    if not isinstance(reasoning, bool):
        raise ConfigError(f"{where} reasoning: expected true or false")
    if with_ is not None and not isinstance(with_, str):
        raise ConfigError(f"{where} with: expected the name of another signal")
    return reasoning, with_


def _steps(data: Mapping[str, Any], name: str, where: str) -> Steps:
    table = _table(data, name, where)
    where = f"{where} [{name}]"
    unknown = set(table) - {"steps", "reasoning", "with"}
    if unknown:
        raise ConfigError(f"{where}: unknown setting {sorted(unknown)[0]!r}")
    raw = table.get("steps", [])
    if not isinstance(raw, list) or not all(isinstance(s, list) and len(s) == 2 for s in raw):
        raise ConfigError(f"{where} steps: expected a list of [value, points] pairs")
    steps = tuple((_number(x, where), _number(y, where)) for x, y in raw)
    if any(b[0] <= a[0] for a, b in itertools.pairwise(steps)):
        raise ConfigError(f"{where} steps: the values must rise")
    return Steps(name, steps, *_link(table, where))


def _lexical(entry: Any, where: str) -> Lexical:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise ConfigError(f"{where}: a signal needs a name")
    where = f"{where} ({entry['name']})"
    unknown = set(entry) - _LEXICAL_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown setting {sorted(unknown)[0]!r}")
    lists = {}
    for key in ("words", "phrases", "markers"):
        value = entry.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{where} {key}: expected a list of strings")
        lists[key] = value
    bad = [w for w in lists["words"] if split_words(w) != [w.lower()]]
    if bad:
        raise ConfigError(f"{where} words: {bad[0]!r} is not one word; put it in phrases")
    weight = _number(entry.get("weight", 1.0), f"{where} weight")
    return Lexical(
        entry["name"],
        weight,
        _number(entry.get("extra", 0.0), f"{where} extra"),
        _number(entry.get("max", weight), f"{where} max"),
        frozenset(w.lower() for w in lists["words"]),
        tuple((p.lower(), _first_ascii_word(p)) for p in lists["phrases"]),
        tuple(lists["markers"]),
        int(_number(entry.get("only_if_short", 0), f"{where} only_if_short")),
        *_link(entry, where),
    )


def _first_ascii_word(phrase: str) -> str | None:
    """The word an ASCII phrase starts with, as the scorer splits words."""
    if not phrase.isascii():
        return None
    words = split_words(phrase)
    return words[0] if words else None
