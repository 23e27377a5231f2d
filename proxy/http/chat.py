"""The chat routes for a known key: admit, prepare, then render ChatService's answer.

Served by the edge as plain ASGI (the hot routes). `POST /v1/chat/completions` and
Anthropic's `POST /v1/messages` run the same steps (`serve_chat`) and differ only in
their `Dialect`: how the body is read into a call, and how the typed reply, the typed
stream events and errors are rendered (OpenAI's `chat.completion` and SSE chunks, or
Anthropic's Message and named events), always with the key's rate-limit headers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson

from ..core.chat import parse_json
from ..core.errors import GatewayError
from ..services import (
    ChatCall,
    ChatReply,
    ChatService,
    ChatStream,
    KeyRecord,
    Services,
    StreamEvent,
)
from .asgi import KEEPALIVE, Receive, Responder, answer_unless_gone
from .openai_wire import JSON, STREAM_HEADERS, render_event

Headers = list[tuple[str, str]]  # the request headers a dialect reads (lower-case names)


@dataclass(frozen=True, slots=True)
class ChatHTTPRequest:
    id: str
    body: bytes
    session: str | None  # x-session-id: tokenroute/auto keeps a session's tier
    started: float  # trio clock, when the request arrived


@dataclass(frozen=True, slots=True)
class Dialect:
    """One wire format of the chat steps."""

    prepare: Callable[[ChatService, KeyRecord, Any, Headers, ChatHTTPRequest], ChatCall]
    stream_headers: Mapping[str, str]
    renderer: Callable[[ChatStream], Callable[[StreamEvent], bytes]]  # one per stream
    keepalive_event: bytes
    body: Callable[[ChatReply], bytes]


OPENAI = Dialect(
    prepare=lambda chat, key, body, headers, r: chat.prepare(key, body, r.id, r.session, r.started),
    stream_headers=STREAM_HEADERS,
    renderer=lambda stream: render_event,
    keepalive_event=KEEPALIVE,
    body=lambda reply: orjson.dumps(reply.completion),
)


async def serve_chat(
    dialect: Dialect,
    services: Services,
    key: KeyRecord,
    request: ChatHTTPRequest,
    headers: Headers,
    respond: Responder,
    receive: Receive,
    keepalive: float,
) -> None:
    chat = services.chat
    limits: dict[str, str] = {}
    call: ChatCall | None = None
    try:
        limits = await chat.admit(key)
        call = dialect.prepare(chat, key, parse_json(request.body), headers, request)
        respond.outcome = call.outcome
        if call.stream:
            async with chat.open_stream(call) as stream:
                sent = {**dialect.stream_headers, **limits, **stream.headers}
                render = dialect.renderer(stream)
                await respond.stream(
                    receive, sent, stream, render, keepalive, dialect.keepalive_event
                )
            return
    except GatewayError as error:
        if not respond.started:
            await respond.error(error, {**limits, **(call.failure_headers() if call else {})})
        return
    complete = partial(_complete, dialect, chat, call, limits, respond)
    await answer_unless_gone(receive, respond, complete)


async def _complete(
    dialect: Dialect, chat: ChatService, call: ChatCall, limits: dict[str, str], respond: Responder
) -> None:
    """The whole answer, or the upstream's failure, in the dialect's shapes."""
    try:
        reply = await chat.complete(call)
    except GatewayError as error:
        await respond.error(error, {**limits, **call.failure_headers()})
        return
    headers = {"content-type": JSON, **limits, **reply.headers}
    await respond.body(200, headers, dialect.body(reply))
