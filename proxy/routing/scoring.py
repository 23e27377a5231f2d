"""The complexity scorer behind `tokenroute/auto`: a chat request in, a tier out.

Deterministic, explainable and cheap. It reads the whole conversation and adds
up points from signals whose words, weights and thresholds are data
(`proxy/data/scoring.toml`, or the operator's own file; see `scoring_data`), so
tuning it never means editing code. The total picks SIMPLE, MEDIUM or COMPLEX;
REASONING is reached by the points of the signals marked `reasoning` alone, so
a long, many-sided task does not pass for one that needs careful thought.

The work per request is bounded whatever the conversation's size: word signals
and markers read the last user message and a head and tail of the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .scoring_data import COUNTED, TIERS, ScoringData, read_scoring, split_words

__all__ = ["TIERS", "Fired", "Hits", "Measure", "Score", "Scorer"]


@dataclass(frozen=True, slots=True)
class Fired:
    """A signal that added points, and why."""

    name: str
    points: float
    detail: str
    reasoning: bool = False

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "signal": self.name,
            "weight": round(self.points, 2),
            "detail": self.detail,
        }
        if self.reasoning:
            out["reasoning"] = True
        return out


@dataclass(frozen=True, slots=True)
class Score:
    tier: str
    score: float  # every signal's points
    reasoning: float  # the points of reasoning signals
    signals: tuple[Fired, ...]
    prompt_tokens: int  # a cheap estimate: UTF-8 bytes / 4, tool schemas included
    tools: bool  # the request defines tools: only models with tools can serve it
    images: int  # attached images: only vision models can serve it


@dataclass(frozen=True, slots=True)
class Hits:
    """What one word signal found: in the last user message, as markers, earlier."""

    found: tuple[str, ...]
    markers: int
    earlier: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Measure:
    """What a conversation shows before any weight; tuning re-weighs these."""

    counts: dict[str, int]  # one per counted signal (length, depth, tools, ...)
    focus_tokens: int  # estimated tokens of the last user message
    prompt_tokens: int
    hits: tuple[Hits, ...]  # one per word signal, in order


@dataclass(slots=True)
class _Part:
    """A bounded window of the conversation: as written, lowercased, and its words."""

    raw: str
    lower: str
    words: set[str]
    chars: set[str]  # the characters of a text that is not plain ASCII

    @classmethod
    def of(cls, text: str, head: int, tail: int) -> _Part:
        text = _window(text, head, tail)
        lower = text.lower()
        chars = set() if lower.isascii() else set(lower)
        return cls(text, lower, set(split_words(lower)), chars)

    def count(self, marker: str, present: dict[str, bool]) -> int:
        """Occurrences of a marker; its first character is looked for once per window."""
        first = marker[0]
        found = present.get(first)
        if found is None:
            found = (first.isascii() or not self.raw.isascii()) and first in self.raw
            present[first] = found
        return self.raw.count(marker) if found else 0


class Scorer:
    def __init__(self, data: ScoringData) -> None:
        self.data = data
        # Each phrase filed under its first word (ASCII) or first character (other
        # scripts): a window is searched only for the phrases that can be in it.
        self._by_word: dict[str, list[tuple[int, str, tuple[str, ...]]]] = {}
        self._by_char: dict[str, list[tuple[int, str, tuple[str, ...]]]] = {}
        for index, signal in enumerate(data.lexical):
            for phrase, first in signal.phrases:
                if first is not None:  # its other words must be there too
                    rest = tuple(split_words(phrase)[1:])
                    self._by_word.setdefault(first, []).append((index, phrase, rest))
                else:
                    self._by_char.setdefault(phrase[0], []).append((index, phrase, ()))

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str = "scoring") -> Scorer:
        """Build from the TOML document; a bad entry is a ConfigError naming it."""
        return cls(read_scoring(data, where))

    def score(self, body: Mapping[str, Any]) -> Score:
        return self.weigh(self.measure(body))

    def measure(self, body: Mapping[str, Any]) -> Measure:
        messages = body.get("messages")
        messages = messages if isinstance(messages, list) else []
        last_user = max(
            (i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"),
            default=-1,
        )
        focus_text, context_texts = "", []
        counts = dict.fromkeys(COUNTED, 0)
        text_bytes = 0
        for i, message in enumerate(messages):
            if not isinstance(message, dict):
                continue
            role = message.get("role")
            counts["depth"] += role == "user"
            counts["tool_results"] += role in ("tool", "function")
            content, images = _content_text(message.get("content"))
            counts["images"] += images
            for call in message.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict):
                    content += f"\n{function.get('name', '')}({function.get('arguments', '')})"
            text_bytes += _token_bytes(content)
            if i == last_user:
                focus_text = content
            else:
                context_texts.append(content)
        tools = body.get("tools")
        counts["tools"] = len(tools) if isinstance(tools, list) else 0
        counts["length"] = text_bytes // 4
        bounds = self.data.bounds
        head, tail = bounds["focus_head_chars"], bounds["focus_tail_chars"]
        size = len(focus_text)
        pasted = ""  # what the ask quotes: its words are the material, not the task
        if size > head + tail:  # what was pasted between the ask's ends is context
            # The ask ends at its first blank line and resumes after its last one.
            cut = focus_text.find("\n\n", 0, head)
            head = cut if cut > 0 else head
            cut = focus_text.rfind("\n\n", size - tail)
            tail = size - cut if cut > 0 else tail
            pasted = focus_text[head : size - tail]
        focus = _Part.of(focus_text, head, tail)
        context = _Part.of(
            "\n".join(context_texts), bounds["context_head_chars"], bounds["context_tail_chars"]
        )
        quoted = _Part(_window(pasted, bounds["context_head_chars"], 0), "", set(), set())
        counts["numbers"] = sum(1 for w in focus.words if w[0].isdigit())
        schemas = len(str(tools)) if counts["tools"] else 0
        return Measure(
            counts=counts,
            focus_tokens=_token_bytes(focus_text) // 4,
            prompt_tokens=(text_bytes + schemas) // 4,
            hits=self._hits(focus, context, quoted),
        )

    def weigh(self, measure: Measure) -> Score:
        data = self.data
        fired: list[Fired] = []
        linked: dict[str, str] = {}  # a signal -> the one it needs
        for steps in data.counted:
            value = measure.counts[steps.name]
            points = steps.at(value)
            if points:
                detail = COUNTED[steps.name].format(value)
                fired.append(Fired(steps.name, points, detail, steps.reasoning))
                if steps.with_:
                    linked[steps.name] = steps.with_
        for signal, hits in zip(data.lexical, measure.hits, strict=True):
            if signal.only_if_short and measure.focus_tokens > signal.only_if_short:
                continue
            points = signal.points(len(hits.found) + hits.markers)
            said = list(hits.found[:4])
            if hits.markers:
                said.append(f"{hits.markers} markers")
            if data.earlier and hits.earlier and signal.weight > 0:
                points = min(points + data.earlier * signal.points(len(hits.earlier)), signal.cap)
                said.append("earlier: " + ", ".join(hits.earlier[:3]))
            if points:
                fired.append(Fired(signal.name, points, "; ".join(said), signal.reasoning))
                if signal.with_:
                    linked[signal.name] = signal.with_
        if linked:
            names = {f.name for f in fired}
            fired = [f for f in fired if linked.get(f.name, f.name) in names]
        total = sum(f.points for f in fired)
        reasoning = sum(f.points for f in fired if f.reasoning)
        limits = data.thresholds
        if reasoning >= limits["REASONING"]:
            tier = "REASONING"
        elif total >= limits["COMPLEX"]:
            tier = "COMPLEX"
        else:
            tier = "MEDIUM" if total >= limits["MEDIUM"] else "SIMPLE"
        return Score(
            tier=tier,
            score=round(total, 2),
            reasoning=round(reasoning, 2),
            signals=tuple(fired),
            prompt_tokens=measure.prompt_tokens,
            tools=measure.counts["tools"] > 0,
            images=measure.counts["images"],
        )

    def _hits(self, focus: _Part, context: _Part, quoted: _Part) -> tuple[Hits, ...]:
        """Words and phrases in the ask and earlier; markers there and in what it quotes."""
        seen: dict[str, bool] = {}
        marked = _Part("\n".join((focus.raw, context.raw, quoted.raw)), "", set(), set())
        focus_phrases = self._phrases(focus)
        context_phrases = self._phrases(context) if context.raw else {}
        out = []
        for index, signal in enumerate(self.data.lexical):
            found = sorted(signal.words & focus.words) + focus_phrases.get(index, [])
            markers = sum(marked.count(m, seen) for m in signal.markers)
            earlier: list[str] = []
            if context.raw:
                earlier = sorted(signal.words & context.words)
                earlier += [p for p in context_phrases.get(index, []) if p not in found]
            out.append(Hits(tuple(found), markers, tuple(earlier)))
        return tuple(out)

    def _phrases(self, part: _Part) -> dict[int, list[str]]:
        """Signal index -> the phrases found in the window, sorted."""
        found: dict[int, list[str]] = {}
        candidates = [self._by_word[w] for w in part.words & self._by_word.keys()]
        candidates += [self._by_char[c] for c in part.chars & self._by_char.keys()]
        words = part.words
        for group in candidates:
            for index, phrase, rest in group:
                if all(w in words for w in rest) and phrase in part.lower:
                    found.setdefault(index, []).append(phrase)
        for phrases in found.values():
            phrases.sort()
        return found


def _window(text: str, head: int, tail: int) -> str:
    if len(text) <= head + tail:
        return text
    return text[:head] + "\n" + text[-tail:] if tail else text[:head]


def _token_bytes(text: str) -> int:
    """Four per estimated token: a character of English is about a quarter of a token,
    one of Chinese or Japanese about one (a UTF-8 byte beyond the first counts 1.6)."""
    extra = len(text.encode()) - len(text)
    return len(text) + extra * 8 // 5


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
