"""Anthropic's Messages API: `POST /v1/messages` and `/v1/messages/count_tokens`.

Served by the edge as plain ASGI, by the same steps as chat completions (`chat.serve_chat`)
and the same service: the same keys, holds, limits, routes, fallbacks, usage rows and
headers. Only the dialect differs: requests are read by `ChatService.prepare_messages`,
answers and errors rendered by `anthropic_wire` (an Anthropic upstream's own answer and
events as they came).
"""

from __future__ import annotations

import orjson

from ..core.chat import parse_json
from ..core.errors import GatewayError
from ..services import ChatReply, KeyRecord, Services
from .anthropic_wire import PING, STREAM_HEADERS, MessagesStream, message
from .asgi import Receive, Responder
from .chat import ChatHTTPRequest, Dialect, Headers
from .openai_wire import JSON


def _body(reply: ChatReply) -> bytes:
    return reply.native if reply.native is not None else orjson.dumps(message(reply.completion))


ANTHROPIC = Dialect(
    prepare=lambda chat, key, body, headers, r: chat.prepare_messages(
        key, body, headers, r.id, r.session, r.started
    ),
    stream_headers=STREAM_HEADERS,
    renderer=lambda stream: (
        MessagesStream(stream.headers["x-tokenroute-model"], stream.native).render
    ),
    keepalive_event=PING,
    body=_body,
)


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
        await respond.error(error, await services.chat.limit_headers(key))
        return
    await respond.body(200, {"content-type": JSON, **limits}, orjson.dumps(counted))
