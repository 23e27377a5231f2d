"""`GET /v1/models`, `GET /v1/models/{id}`: the catalog in OpenAI's shape, with prices;
`POST /v1/embeddings`: EmbeddingService's answer in OpenAI's shape.

(`POST /v1/chat/completions` is served by the edge: see `proxy.http.chat`.)
"""

from __future__ import annotations

import orjson
import trio
from quart import Blueprint, Response, g, request

from ..core.chat import parse_json
from ..core.errors import GatewayError
from ..core.model import AUTO_MODEL
from ..services import Services
from .openai_wire import JSON, auto_entry, model_entry, models_list


def v1_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("v1", __name__, url_prefix="/v1")
    chat = services.chat
    tiers = chat.auto_tiers()
    auto = auto_entry(AUTO_MODEL, tiers) if tiers is not None else None
    entries = [model_entry(m) for m in chat.models()]
    listing = models_list([auto, *entries] if auto else entries)

    async def limits() -> dict[str, str]:
        key = await services.accounts.authenticate(request.headers.get("authorization"))
        g.limit_headers = chat.limit_headers(key)
        return g.limit_headers  # type: ignore[no-any-return]

    @bp.get("/models")
    async def list_models() -> Response:
        return Response(listing, content_type=JSON, headers=await limits())

    @bp.get("/models/<path:model_id>")
    async def get_model(model_id: str) -> Response:
        headers = await limits()
        entry = auto if auto is not None and model_id == AUTO_MODEL else None
        entry = entry or model_entry(chat.model(model_id))
        return Response(orjson.dumps(entry), content_type=JSON, headers=headers)

    @bp.post("/embeddings")
    async def embeddings() -> Response:
        started = trio.current_time()
        service = services.embeddings
        key = await services.accounts.authenticate(request.headers.get("authorization"))
        g.limit_headers = service.admit(key)
        request_id = request.headers.get("x-request-id", "")
        body = parse_json(await request.get_data())
        call = service.prepare(key, body, request_id, started)
        try:
            reply = await service.embed(call)
        except GatewayError:
            g.limit_headers = {**g.limit_headers, **call.failure_headers()}
            raise
        headers = {**g.limit_headers, **reply.headers}
        return Response(orjson.dumps(reply.data), content_type=JSON, headers=headers)

    return bp
