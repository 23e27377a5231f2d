"""`GET /v1/models` and `GET /v1/models/{id}`: the catalog in OpenAI's shape, with prices.

(`POST /v1/chat/completions` is served by the edge: see `proxy.http.chat`.)
"""

from __future__ import annotations

import orjson
from quart import Blueprint, Response, g, request

from ..core.model import AUTO_MODEL
from ..services import Services
from .openai_wire import JSON, model_entry, models_json


def v1_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("v1", __name__, url_prefix="/v1")
    chat = services.chat
    catalog = models_json(chat)
    auto = next((entry for entry in catalog["data"] if entry["id"] == AUTO_MODEL), None)
    listing = orjson.dumps(catalog)

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

    return bp
