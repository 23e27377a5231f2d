"""Gemini's responses as OpenAI's: the shared vocabulary and the stream translator.

Each `streamGenerateContent?alt=sse` event is a whole GenerateContentResponse
holding the next parts of every candidate. Text parts become `content` deltas, a
functionCall part (always sent whole) becomes one complete `tool_calls` entry,
and a candidate's `finishReason` becomes its last chunk's `finish_reason`.
`usageMetadata` is cumulative, so the last one seen is what gets billed.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from ..core.chat import Usage, token_count
from ..core.errors import BadRequest, Fault, GatewayError
from ..core.model import Price
from ..core.sse import Event
from .base import Refusal, common_fault, refusal_from, upstream_error
from .stream import Chunk, StreamTranslator

FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "MODEL_ARMOR": "content_filter",
}
# Google's canonical status names, for an error object that carries no HTTP code.
ERROR_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
# Canonical statuses about the caller's project rather than its request.
ACCOUNT_STATUSES = ("UNAUTHENTICATED", "PERMISSION_DENIED", "FAILED_PRECONDITION")


def finish_reason(reason: Any, made_calls: bool) -> str:
    """OpenAI's finish_reason; a normal stop after function calls is OpenAI's `tool_calls`."""
    mapped = FINISH_REASONS.get(reason, "stop") if isinstance(reason, str) else "stop"
    return "tool_calls" if mapped == "stop" and made_calls else mapped


def _count(meta: dict[str, Any], name: str) -> int:
    return token_count(meta.get(name)) or 0


def read_usage(meta: Any) -> tuple[Usage, dict[str, Any]] | None:
    """Our Usage and OpenAI's `usage` object from usageMetadata; thinking is billed as output."""
    if not isinstance(meta, dict) or token_count(meta.get("promptTokenCount")) is None:
        return None
    if any(token_count(v) is None for k, v in meta.items() if k.endswith("TokenCount")):
        return None  # a count no upstream could mean: estimate instead
    prompt = _count(meta, "promptTokenCount")
    thoughts = _count(meta, "thoughtsTokenCount")
    completion = _count(meta, "candidatesTokenCount") + thoughts
    cached = _count(meta, "cachedContentTokenCount")
    usage = Usage(prompt, completion, cached_tokens=cached)
    return usage, {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    }


def read_parts(candidate: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """A candidate's answer texts and its functionCall parts (thought summaries skipped)."""
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, dict) or part.get("thought") is True:
            continue
        if isinstance(part.get("text"), str) and part["text"]:
            texts.append(part["text"])
        elif isinstance(part.get("functionCall"), dict):
            calls.append(part)
    return texts, calls


def tool_call(part: dict[str, Any], position: int) -> dict[str, Any]:
    """OpenAI's tool call for a functionCall part.

    A thought signature rides along as `extra_content.google.thought_signature`, the
    field Google's own OpenAI endpoint uses, so clients that keep it can send it back.
    """
    call = part["functionCall"]
    call_id = call.get("id")
    args = call.get("args")
    result: dict[str, Any] = {
        "id": call_id if isinstance(call_id, str) and call_id else f"call_{position}",
        "type": "function",
        "function": {
            "name": str(call.get("name") or ""),
            "arguments": orjson.dumps(args if isinstance(args, dict) else {}).decode(),
        },
    }
    signature = part.get("thoughtSignature")
    if isinstance(signature, str) and signature:
        result["extra_content"] = {"google": {"thought_signature": signature}}
    return result


def completion_id(response_id: Any) -> str:
    if isinstance(response_id, str) and response_id:
        return f"chatcmpl-{response_id}"
    return f"chatcmpl-{uuid.uuid4().hex}"


def fault(refusal: Refusal) -> Fault:
    """Whose fault a Google error is: an invalid key (its ErrorInfo reason), a refused
    project or a failed precondition (billing, region) is the operator's account."""
    if "API_KEY_INVALID" in refusal.reasons or refusal.type in ACCOUNT_STATUSES:
        return Fault.ACCOUNT
    return common_fault(refusal)


def error_from_google(provider: str, error: Any) -> GatewayError:
    """Map Google's error object ({"code", "message", "status"}) as its HTTP status would be."""
    error = error if isinstance(error, dict) else {"message": error}
    code = error.get("code")
    if not (isinstance(code, int) and 400 <= code < 600):
        code = ERROR_STATUS.get(error.get("status"), 502)
    refusal = refusal_from(code, error)
    return upstream_error(refusal, None, provider, fault(refusal))


def prompt_blocked(provider: str, data: dict[str, Any]) -> BadRequest | None:
    """The error for a prompt Google refused to answer (promptFeedback.blockReason)."""
    feedback = data.get("promptFeedback")
    reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
    if not reason:
        return None
    detail = feedback.get("blockReasonMessage") if isinstance(feedback, dict) else None
    said = f": {detail}" if isinstance(detail, str) and detail else ""
    return BadRequest(f"{provider} blocked the prompt ({reason}){said}")


class GoogleStream(StreamTranslator):
    """Feed Gemini's SSE bytes; get OpenAI chunks back."""

    def __init__(
        self, provider: str, model_id: str, include_usage: bool, price: Price | None = None
    ) -> None:
        super().__init__(provider, model_id, include_usage, price)
        self.chunk_id = ""  # the first event's responseId names the stream
        self._calls: dict[int, int] = {}  # choice index -> tool calls sent so far
        self._usage: dict[str, Any] | None = None  # the last usage, in OpenAI's shape

    def _ended(self) -> list[Chunk]:
        if self.include_usage and self._usage is not None and self.state.usage is not None:
            return [self.encode([], usage=self.priced(self._usage, self.state.usage))]
        return []

    def _event(self, event: Event) -> list[Chunk]:
        text = event.data.strip()
        if not text:
            return []
        data = self._object(text)
        if data is None:
            return []
        if "error" in data:
            self.state.error = error_from_google(self.provider, data["error"])
            return []
        if not self.chunk_id:
            self.chunk_id = completion_id(data.get("responseId"))
        usage = read_usage(data.get("usageMetadata"))
        if usage is not None:
            self.state.usage, self._usage = usage
        candidates = data.get("candidates")
        if not isinstance(candidates, list) or not candidates:
            self.state.error = prompt_blocked(self.provider, data)
            return []
        out: list[Chunk] = []
        for position, candidate in enumerate(candidates):
            if isinstance(candidate, dict):
                out.extend(self._candidate(candidate, position))
        return out

    def _candidate(self, candidate: dict[str, Any], position: int) -> list[Chunk]:
        index = candidate.get("index")
        index = index if isinstance(index, int) else position
        out: list[Chunk] = []
        if index not in self._calls:
            self._calls[index] = 0
            out.append(self._chunk(index, {"role": "assistant", "content": ""}))
        texts, calls = read_parts(candidate)
        if texts:
            self._sent(texts)
            out.append(self._chunk(index, {"content": "".join(texts)}))
        for part in calls:
            call = {"index": self._calls[index], **tool_call(part, self._calls[index])}
            self._calls[index] += 1
            self._sent([call["function"]["name"], call["function"]["arguments"]])
            out.append(self._chunk(index, {"tool_calls": [call]}))
        reason = candidate.get("finishReason")
        if isinstance(reason, str) and reason:
            self.state.done = True
            out.append(self._chunk(index, {}, finish_reason(reason, self._calls[index] > 0)))
        return out

    def _chunk(self, index: int, delta: dict[str, Any], finish: str | None = None) -> Chunk:
        return self.encode([{"index": index, "delta": delta, "finish_reason": finish}])
