"""A fake Gemini upstream: a real HTTP server on 127.0.0.1 speaking Google's wire format.

It serves `POST /v1beta/models/<model>:generateContent` and
`:streamGenerateContent?alt=sse` with camelCase GenerateContentResponse JSON (one
per SSE event, `\\r\\n`-terminated as Google sends them), and `:batchEmbedContents`
(deterministic vectors from `embedding_vectors`, at most 100 a call, no usage).
Tests steer it through attributes (`status`, `finish_reason`,
`reset_mid_stream_after`, ...) and read what it saw (`requests`, `paths`,
`headers`, `stream_ends`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import trio
from quart import Response, request
from quart_trio import QuartTrio

from tests.fakes import embedding_vectors as vectors
from tests.fakes.openai_upstream import StreamEnd
from tests.fakes.serving import FakeServer

WORDS = ["Hello", " from", " the", " fake", " Gemini", "."]
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
EMBED_BATCH = 100  # Google's limit on the requests of one batchEmbedContents call
SIGNATURE = "ZmFrZS10aG91Z2h0LXNpZ25hdHVyZQ=="  # base64, as Google sends thoughtSignature


class StreamReset(Exception):
    """Raised inside a streaming body so the server aborts the response mid-way."""


def error_envelope(status: int, message: str) -> dict[str, Any]:
    return {
        "error": {"code": status, "message": message, "status": STATUS_NAMES.get(status, "UNKNOWN")}
    }


@dataclass
class FakeGemini(FakeServer):
    """Behaviour knobs and a record of traffic."""

    status: int = 200
    retry_after: str | None = None
    hang_before_headers: bool = False
    hang_mid_stream_after: int | None = None  # stop sending after N text chunks
    reset_mid_stream_after: int | None = None  # abort the connection after N text chunks
    malformed_after: int | None = None  # a broken event after N text chunks (N < len(words))
    chunk_delay: float = 0.0
    finish_reason: str = "STOP"
    words: list[str] = field(default_factory=lambda: list(WORDS))
    prompt_tokens: int = 11
    candidates_tokens: int | None = None  # None: one per word
    thoughts_tokens: int = 0
    cached_tokens: int = 0
    api_key: str | None = None  # None: any non-empty x-goog-api-key is accepted
    requests: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    stream_ends: list[StreamEnd] = field(default_factory=list)
    url: str = ""
    _shutdown: trio.Event = field(default_factory=trio.Event)

    def app(self) -> QuartTrio:
        app = QuartTrio("fake-gemini")
        app.config["RESPONSE_TIMEOUT"] = None

        @app.post("/v1beta/models/<target>")
        async def generate(target: str) -> Response:
            model, _, method = target.partition(":")
            body = orjson.loads(await request.get_data())
            self.requests.append(body)
            self.paths.append(request.full_path.rstrip("?"))
            self.headers.append({k.lower(): v for k, v in request.headers.items()})
            key = request.headers.get("x-goog-api-key")
            if not key or (self.api_key is not None and key != self.api_key):
                return _json(error_envelope(401, "API key missing or not valid."), 401)
            if method == "batchEmbedContents":
                return self._embed(model, body)
            if method not in ("generateContent", "streamGenerateContent"):
                return _json(error_envelope(404, f"Method {method} not found."), 404)
            if self.hang_before_headers:
                await trio.sleep_forever()
            if self.status != 200:
                headers = {"retry-after": self.retry_after} if self.retry_after else {}
                failure = error_envelope(self.status, f"fake failure {self.status}")
                return _json(failure, self.status, headers)
            if method == "streamGenerateContent":
                if request.args.get("alt") != "sse":
                    return _json(error_envelope(400, "this fake streams only with alt=sse"), 400)
                response = Response(self._stream(body, model), content_type="text/event-stream")
                response.timeout = None
                return response
            return _json(self._response(model, self._candidates(body, self.words)))

        return app

    # -- embeddings ------------------------------------------------------------------------
    def _embed(self, model: str, body: dict[str, Any]) -> Response:
        """`batchEmbedContents`: one vector per request, at most 100 of them, no usage."""
        if self.status != 200:
            return _json(error_envelope(self.status, f"fake failure {self.status}"), self.status)
        requests = body.get("requests") or []
        if len(requests) > EMBED_BATCH:
            message = (
                "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch"
            )
            return _json(error_envelope(400, message), 400)
        embeddings = []
        for item in requests:
            if item.get("model") != f"models/{model}":
                message = f"model {item.get('model')!r} does not match the URL's models/{model}"
                return _json(error_envelope(400, message), 400)
            text = "".join(part["text"] for part in item["content"]["parts"])
            values = vectors.vector(text, item.get("outputDimensionality"))
            embeddings.append({"values": values})
        return _json({"embeddings": embeddings})

    # -- responses -------------------------------------------------------------------------
    def _functions(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        return [d for tool in body.get("tools") or () for d in tool.get("functionDeclarations", ())]

    def _last_part(self, body: dict[str, Any]) -> dict[str, Any]:
        return body["contents"][-1]["parts"][-1]

    def _wants_call(self, body: dict[str, Any]) -> bool:
        return bool(self._functions(body)) and "functionResponse" not in self._last_part(body)

    def _count(self, body: dict[str, Any]) -> int:
        return int((body.get("generationConfig") or {}).get("candidateCount") or 1)

    def _candidates(
        self, body: dict[str, Any], words: list[str], finish: bool = True
    ) -> list[dict[str, Any]]:
        last = self._last_part(body)
        candidates = []
        for i in range(self._count(body)):
            if self._wants_call(body):
                name = self._functions(body)[0]["name"]
                call = {"name": name, "args": {"city": "Paris"}}
                parts: list[dict[str, Any]] = [
                    {"functionCall": call, "thoughtSignature": SIGNATURE}
                ]
            elif "functionResponse" in last:
                said = orjson.dumps(last["functionResponse"]["response"]).decode()
                parts = [{"text": f"The tool said: {said}"}]
            else:
                parts = [{"text": "".join(words) + (f" #{i}" if i and finish else "")}]
            candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": i}
            if finish:
                candidate["finishReason"] = self.finish_reason
            candidates.append(candidate)
        return candidates

    def _usage(self, candidates_tokens: int) -> dict[str, Any]:
        tokens = self.candidates_tokens if self.candidates_tokens is not None else candidates_tokens
        usage: dict[str, Any] = {
            "promptTokenCount": self.prompt_tokens,
            "candidatesTokenCount": tokens,
            "totalTokenCount": self.prompt_tokens + tokens + self.thoughts_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": self.prompt_tokens}],
        }
        if self.thoughts_tokens:
            usage["thoughtsTokenCount"] = self.thoughts_tokens
        if self.cached_tokens:
            usage["cachedContentTokenCount"] = self.cached_tokens
        return usage

    def _response(
        self, model: str, candidates: list[dict[str, Any]], usage: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return {
            "candidates": candidates,
            "usageMetadata": usage or self._usage(len(self.words)),
            "modelVersion": model,
            "responseId": "fake-response-1",
        }

    def _event(self, data: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps(data) + b"\r\n\r\n"

    async def _stream(self, body: dict[str, Any], model: str) -> AsyncIterator[bytes]:
        sent = 0
        completed = False
        partial = {"promptTokenCount": self.prompt_tokens, "totalTokenCount": self.prompt_tokens}
        try:
            # a function call or the answer to a tool result comes whole, in one event
            plain = not self._wants_call(body) and "functionResponse" not in self._last_part(body)
            words = self.words if plain else []
            for word in words[:-1]:
                await self._fault(sent)
                if self.malformed_after is not None and sent >= self.malformed_after:
                    yield b'data: {"candidates": [{"content": \r\n\r\n'
                    return
                await trio.sleep(self.chunk_delay)
                candidates = self._candidates(body, [word], finish=False)
                yield self._event(self._response(model, candidates, partial))
                sent += 1
            await self._fault(sent)
            await trio.sleep(self.chunk_delay)
            final = self._candidates(body, words[-1:])
            yield self._event(self._response(model, final))
            sent += 1
            completed = True
        finally:
            self.stream_ends.append(StreamEnd(trio.current_time(), completed, sent))

    async def _fault(self, sent: int) -> None:
        if self.hang_mid_stream_after is not None and sent >= self.hang_mid_stream_after:
            await trio.sleep_forever()
        if self.reset_mid_stream_after is not None and sent >= self.reset_mid_stream_after:
            raise StreamReset(f"fake reset after {sent} chunks")


def _json(
    data: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(data), status=status, headers=headers or {}, content_type="application/json"
    )
