"""`POST /v1/messages` and `/v1/messages/count_tokens`: Anthropic's Messages API.

Served by the edge as plain ASGI, like chat completions, and by the same service:
the same keys, holds, limits, routes, fallbacks, usage rows and headers. Only the
wire format differs: requests are read by `ChatService.prepare_messages`, answers
and errors rendered by `anthropic_wire`.
"""

from __future__ import annotations

from functools import partial

import orjson

from ..core.chat import parse_json
from ..core.errors import GatewayError
from ..services import ChatCall, ChatService, KeyRecord, Services
from .anthropic_wire import PING, STREAM_HEADERS, MessagesStream, message
from .asgi import Receive, Responder, answer_unless_gone
from .chat import ChatHTTPRequest
from .openai_wire import JSON

Headers = list[tuple[str, str]]


async def serve_messages(
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
        limits = chat.admit(key)
        body = parse_json(request.body)
        call = chat.prepare_messages(
            key, body, headers, request.id, request.session, request.started
        )
        if call.stream:
            async with chat.open_stream(call) as stream:
                sent = {**STREAM_HEADERS, **limits, **stream.headers}
                rendered = MessagesStream(stream.headers["x-tokenroute-model"], stream.native)
                await respond.stream(receive, sent, stream, rendered.render, keepalive, PING)
            return
    except GatewayError as error:
        if not respond.started:
            await respond.error(error, {**limits, **(call.failure_headers() if call else {})})
        return
    await answer_unless_gone(receive, respond, partial(_complete, chat, call, limits, respond))


async def _complete(
    chat: ChatService, call: ChatCall, limits: dict[str, str], respond: Responder
) -> None:
    """The whole Message (the upstream's own when it is Anthropic's), or the failure."""
    try:
        reply = await chat.complete(call)
    except GatewayError as error:
        await respond.error(error, {**limits, **call.failure_headers()})
        return
    body = reply.native if reply.native is not None else orjson.dumps(message(reply.completion))
    await respond.body(200, {"content-type": JSON, **limits, **reply.headers}, body)


async def serve_count_tokens(
    services: Services,
    key: KeyRecord,
    request: ChatHTTPRequest,
    headers: Headers,
    respond: Responder,
    receive: Receive,
    keepalive: float,
) -> None:
    """`{"input_tokens": n}` for a Messages body; nothing is held or charged."""
    try:
        counted, limits = await services.chat.count_tokens(key, parse_json(request.body), headers)
    except GatewayError as error:
        await respond.error(error, services.chat.limit_headers(key))
        return
    await respond.body(200, {"content-type": JSON, **limits}, orjson.dumps(counted))
