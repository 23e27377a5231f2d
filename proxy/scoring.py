"""The complexity scorer behind `tokenroute/auto`: a chat request in, a tier out.

Deterministic, explainable and cheap. It reads the whole conversation and adds
up points from signals whose words, weights and thresholds are data
(`proxy/data/scoring.toml`, or the operator's own file), so tuning it never
means editing code. The work per request is bounded: structural markers are
counted over the whole text with `str.count` (C speed), while word and phrase
signals read the last user message and a bounded head and tail of the rest.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

TIERS = ("SIMPLE", "MEDIUM", "COMPLEX", "REASONING")
# Words are what is left between ASCII punctuation and spaces: a byte-level
# translate and a split cost a fifth of a regex scan.
_PUNCTUATION = bytes(c for c in range(128) if not chr(c).isalnum() and chr(c) != "_")
_TO_SPACES = bytes.maketrans(_PUNCTUATION, b" " * len(_PUNCTUATION))
_STEPPED = ("length", "depth", "tools", "tool_results", "images")


@dataclass(frozen=True, slots=True)
class Fired:
    """A signal that added points, and why."""

    name: str
    points: float
    detail: str

    def as_json(self) -> dict[str, object]:
        return {"signal": self.name, "weight": round(self.points, 2), "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Score:
    tier: str
    score: float
    signals: tuple[Fired, ...]
    prompt_tokens: int  # a cheap estimate: UTF-8 bytes / 4
    tools: bool  # the request defines tools: only models with tools can serve it
    images: int  # attached images: only vision models can serve it


@dataclass(frozen=True, slots=True)
class _Lexical:
    """Points for distinct words/phrases matched and markers counted."""

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

    def points(self, hits: int) -> float:
        if hits <= 0:
            return 0.0
        raw = self.weight + self.extra * (hits - 1)
        return max(raw, self.cap) if self.weight < 0 else min(raw, self.cap)


@dataclass(frozen=True, slots=True)
class _Steps:
    """Piecewise-linear points over a count (tokens, turns, tools...)."""

    points: tuple[tuple[float, float], ...]

    def at(self, value: float) -> float:
        steps = self.points
        if not steps or value <= steps[0][0]:
            return steps[0][1] if steps else 0.0
        for (x0, y0), (x1, y1) in itertools.pairwise(steps):
            if value <= x1:
                return y0 + (y1 - y0) * (value - x0) / (x1 - x0)
        return steps[-1][1]


@dataclass(slots=True)
class _Part:
    """A bounded window of the conversation, as written, lowercased, and as words."""

    raw: str
    lower: str
    words: set[str]

    @classmethod
    def of(cls, text: str, head: int, tail: int) -> _Part:
        if len(text) > head + tail:
            text = text[:head] + "\n" + text[-tail:] if tail else text[:head]
        lower = text.lower()
        words = set(_split(lower))
        return cls(text, lower, words)

    def has_phrase(self, phrase: str, first_word: str | None) -> bool:
        if first_word is not None:
            return first_word in self.words and phrase in self.lower
        return not self.lower.isascii() and phrase in self.lower

    def count(self, marker: str, present: dict[str, bool]) -> int:
        """Occurrences of a marker; its first character is looked for once per window."""
        first = marker[0]
        found = present.get(first)
        if found is None:
            found = present[first] = first.isascii() or not self.raw.isascii()
            found = found and first in self.raw
        return self.raw.count(marker) if found else 0


@dataclass(slots=True)
class _Text:
    """The conversation as the signals read it."""

    focus: _Part  # the last user message
    context: _Part  # every other message
    total_bytes: int
    focus_tokens: int
    user_turns: int
    tools: int
    tool_results: int
    images: int


class Scorer:
    def __init__(
        self,
        thresholds: Mapping[str, float],
        stepped: Mapping[str, _Steps],
        lexical: Sequence[_Lexical],
        earlier: float,
        bounds: Mapping[str, int],
    ) -> None:
        self._thresholds = [(TIERS.index(t), v) for t, v in thresholds.items()]
        self._thresholds.sort(key=lambda item: item[1])
        self._stepped = dict(stepped)
        self._lexical = tuple(lexical)
        self._earlier = earlier
        self._bounds = dict(bounds)

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "scoring") -> Scorer:
        """Build from the TOML document; a bad entry is a ConfigError naming it."""
        tiers = _table(data, "tiers", where)
        if set(tiers) != set(TIERS[1:]):
            raise ConfigError(f"{where} [tiers]: give the score where {', '.join(TIERS[1:])} begin")
        thresholds = {t: _number(v, f"{where} [tiers] {t}") for t, v in tiers.items()}
        if not thresholds["MEDIUM"] <= thresholds["COMPLEX"] <= thresholds["REASONING"]:
            raise ConfigError(f"{where} [tiers]: thresholds must rise from MEDIUM to REASONING")
        stepped = {name: _steps(data, name, where) for name in _STEPPED}
        text = _table(data, "text", where)
        earlier = _number(text.get("earlier_messages", 0.5), f"{where} [text] earlier_messages")
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
        lexical = [
            _lexical(entry, f"{where} [[signal]] #{i + 1}") for i, entry in enumerate(signals)
        ]
        return cls(thresholds, stepped, lexical, earlier, bounds)

    def score(self, body: Mapping[str, Any]) -> Score:
        text = self._read(body)
        fired: list[Fired] = []
        stepped = (
            ("length", text.total_bytes // 4, "~{:.0f} tokens"),
            ("depth", text.user_turns, "{:.0f} user turns"),
            ("tools", text.tools, "{:.0f} tools defined"),
            ("tool_results", text.tool_results, "{:.0f} tool results so far"),
            ("images", text.images, "{:.0f} images"),
        )
        for name, value, detail in stepped:
            points = self._stepped[name].at(value)
            if points:
                fired.append(Fired(name, points, detail.format(value)))
        fired.extend(self._lexical_signals(text))
        total = sum(f.points for f in fired)
        tier = 0
        for index, threshold in self._thresholds:
            if total >= threshold:
                tier = max(tier, index)
        return Score(
            tier=TIERS[tier],
            score=round(total, 2),
            signals=tuple(fired),
            prompt_tokens=text.total_bytes // 4,
            tools=text.tools > 0,
            images=text.images,
        )

    def _lexical_signals(self, text: _Text) -> list[Fired]:
        focus, context = text.focus, text.context
        seen_focus: dict[str, bool] = {}
        seen_context: dict[str, bool] = {}
        out = []
        for signal in self._lexical:
            if signal.only_if_short and text.focus_tokens > signal.only_if_short:
                continue
            found = sorted(signal.words & focus.words)
            found += [p for p, first in signal.phrases if focus.has_phrase(p, first)]
            markers = sum(
                focus.count(m, seen_focus) + context.count(m, seen_context) for m in signal.markers
            )
            points = signal.points(len(found) + markers)
            said = found[:4]
            if markers:
                said.append(f"{markers} markers")
            if self._earlier and context.raw and signal.weight > 0:
                earlier = sorted(signal.words & context.words)
                earlier += [
                    p
                    for p, first in signal.phrases
                    if p not in found and context.has_phrase(p, first)
                ]
                extra = self._earlier * signal.points(len(earlier))
                if extra:
                    points = min(points + extra, signal.cap)
                    said.append("earlier: " + ", ".join(earlier[:3]))
            if points:
                out.append(Fired(signal.name, points, "; ".join(said)))
        return out

    def _read(self, body: Mapping[str, Any]) -> _Text:
        messages = body.get("messages")
        messages = messages if isinstance(messages, list) else []
        last_user = max(
            (i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"),
            default=-1,
        )
        focus, context, whole = "", [], []
        user_turns = tool_results = images = 0
        for i, message in enumerate(messages):
            if not isinstance(message, dict):
                continue
            role = message.get("role")
            user_turns += role == "user"
            tool_results += role in ("tool", "function")
            content, pictures = _content_text(message.get("content"))
            images += pictures
            for call in message.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict):
                    content += f"\n{function.get('name', '')}({function.get('arguments', '')})"
            whole.append(content)
            if i == last_user:
                focus = content
            else:
                context.append(content)
        b = self._bounds
        tools = body.get("tools")
        total_bytes = sum(map(len, map(str.encode, whole)))
        if isinstance(tools, list):
            total_bytes += len(str(tools))  # schemas weigh on length, not on words
        return _Text(
            focus=_Part.of(focus, b["focus_head_chars"], b["focus_tail_chars"]),
            context=_Part.of("\n".join(context), b["context_head_chars"], b["context_tail_chars"]),
            total_bytes=total_bytes,
            focus_tokens=len(focus.encode()) // 4,
            user_turns=user_turns,
            tools=len(tools) if isinstance(tools, list) else 0,
            tool_results=tool_results,
            images=images,
        )


def tier_index(name: str) -> int:
    return TIERS.index(name)


def _content_text(content: Any) -> tuple[str, int]:
    """A message's text and its number of images."""
    if isinstance(content, str):
        return content, 0
    if not isinstance(content, list):
        return "", 0
    texts, images = [], 0
    for part in content:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind in ("image_url", "input_image", "image"):
            images += 1
    return "\n".join(texts), images


def _table(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where} [{key}]: expected a table")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _steps(data: Mapping[str, Any], name: str, where: str) -> _Steps:
    raw = _table(data, name, where).get("steps", [])
    where = f"{where} [{name}] steps"
    if not isinstance(raw, list) or not all(isinstance(s, list) and len(s) == 2 for s in raw):
        raise ConfigError(f"{where}: expected a list of [value, points] pairs")
    steps = tuple((_number(x, where), _number(y, where)) for x, y in raw)
    if any(b[0] <= a[0] for a, b in itertools.pairwise(steps)):
        raise ConfigError(f"{where}: the values must rise")
    return _Steps(steps)


def _lexical(entry: Any, where: str) -> _Lexical:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise ConfigError(f"{where}: a signal needs a name")
    where = f"{where} ({entry['name']})"
    known = {"name", "weight", "extra", "max", "words", "phrases", "markers", "only_if_short"}
    unknown = set(entry) - known
    if unknown:
        raise ConfigError(f"{where}: unknown setting {sorted(unknown)[0]!r}")
    lists = {}
    for key in ("words", "phrases", "markers"):
        value = entry.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{where} {key}: expected a list of strings")
        lists[key] = value
    bad = [w for w in lists["words"] if _split(w) != [w.lower()]]
    if bad:
        raise ConfigError(f"{where} words: {bad[0]!r} is not one word; put it in phrases")
    weight = _number(entry.get("weight", 1.0), f"{where} weight")
    return _Lexical(
        name=entry["name"],
        weight=weight,
        extra=_number(entry.get("extra", 0.0), f"{where} extra"),
        cap=_number(entry.get("max", weight), f"{where} max"),
        words=frozenset(w.lower() for w in lists["words"]),
        phrases=tuple((p.lower(), _first_ascii_word(p)) for p in lists["phrases"]),
        markers=tuple(lists["markers"]),
        only_if_short=int(_number(entry.get("only_if_short", 0), f"{where} only_if_short")),
    )


def _first_ascii_word(phrase: str) -> str | None:
    """The word an ASCII phrase starts with, as `_Part` splits words."""
    if not phrase.isascii():
        return None
    words = _split(phrase)
    return words[0] if words else None


def _split(text: str) -> list[str]:
    return text.lower().encode().translate(_TO_SPACES).decode().split()
