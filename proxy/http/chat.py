"""`POST /v1/chat/completions` for a known key: admit, then render ChatService's answer.

Served by the edge as plain ASGI (the hot route). The service does the work; this
renders its typed reply as a `chat.completion` body, or its typed stream events as
OpenAI's SSE, and every error in OpenAI's envelope with the key's rate-limit
headers.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import orjson

from ..core.chat import parse_json
from ..core.errors import GatewayError
from ..services import ChatCall, ChatService, KeyRecord, Services
from .asgi import Receive, Responder, answer_unless_gone
from .openai_wire import JSON, STREAM_HEADERS, render_event


@dataclass(frozen=True, slots=True)
class ChatHTTPRequest:
    id: str
    body: bytes
    session: str | None  # x-session-id: tokenroute/auto keeps a session's tier
    started: float  # trio clock, when the request arrived


async def serve_chat(
    services: Services,
    key: KeyRecord,
    request: ChatHTTPRequest,
    respond: Responder,
    receive: Receive,
    keepalive: float,
) -> None:
    chat = services.chat
    limits: dict[str, str] = {}
    call: ChatCall | None = None
    try:
        limits = chat.admit(key)
        call = chat.prepare(
            key, parse_json(request.body), request.id, request.session, request.started
        )
        if call.stream:
            async with chat.open_stream(call) as stream:
                headers = {**STREAM_HEADERS, **limits, **stream.headers}
                await respond.stream(receive, headers, stream, render_event, keepalive)
            return
    except GatewayError as error:
        if not respond.started:
            await respond.error(error, {**limits, **(call.failure_headers() if call else {})})
        return
    await answer_unless_gone(receive, respond, partial(_complete, chat, call, limits, respond))


async def _complete(
    chat: ChatService, call: ChatCall, limits: dict[str, str], respond: Responder
) -> None:
    """The whole `chat.completion`, or the upstream's failure in OpenAI's envelope."""
    try:
        reply = await chat.complete(call)
    except GatewayError as error:
        await respond.error(error, {**limits, **call.failure_headers()})
        return
    headers = {"content-type": JSON, **limits, **reply.headers}
    await respond.body(200, headers, orjson.dumps(reply.completion))
