"""`GET /v1/models` and `GET /v1/models/{id}`: the catalog in OpenAI's shape, with prices,
or in Anthropic's when the request carries `anthropic-version` (as its SDKs send);
`POST /v1/embeddings`: EmbeddingService's answer in OpenAI's shape.

(`POST /v1/chat/completions` and `/v1/messages` are served by the edge.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
import trio
from quart import Blueprint, Response, g, request

from ..core.chat import parse_json
from ..core.errors import BadRequest, GatewayError
from ..core.model import AUTO_MODEL
from ..services import Services
from . import anthropic_wire
from .openai_wire import JSON, model_entry, models_json

MAX_PAGE = 1000


def v1_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("v1", __name__, url_prefix="/v1")
    chat = services.chat
    catalog = models_json(chat)
    auto = next((entry for entry in catalog["data"] if entry["id"] == AUTO_MODEL), None)
    listing = orjson.dumps(catalog)

    async def limits() -> dict[str, str]:
        key = await services.accounts.authenticate(credential())
        g.limit_headers = await chat.limit_headers(key)
        return g.limit_headers  # type: ignore[no-any-return]

    async def anthropic(answer: Callable[[], Awaitable[object]]) -> Response:
        """An answer in Anthropic's shapes, errors included."""
        try:
            headers = await limits()
            return Response(orjson.dumps(await answer()), content_type=JSON, headers=headers)
        except GatewayError as error:
            request_id = request.headers.get("x-request-id")
            status, headers, body = anthropic_wire.render_error(error, None, request_id)
            return Response(body, status=status, headers=headers)

    @bp.get("/models")
    async def list_models() -> Response:
        if "anthropic-version" in request.headers:
            return await anthropic(anthropic_page)
        return Response(listing, content_type=JSON, headers=await limits())

    @bp.get("/models/<path:model_id>")
    async def get_model(model_id: str) -> Response:
        if "anthropic-version" in request.headers:

            async def one() -> object:
                known = auto is not None and model_id == AUTO_MODEL
                return anthropic_wire.model_object(model_id if known else chat.model(model_id).id)

            return await anthropic(one)
        headers = await limits()
        entry = auto if auto is not None and model_id == AUTO_MODEL else None
        entry = entry or model_entry(chat.model(model_id))
        return Response(orjson.dumps(entry), content_type=JSON, headers=headers)

    async def anthropic_page() -> object:
        args = request.args
        limit = args.get("limit", "20")
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_PAGE:
            raise BadRequest(f"'limit' must be an integer from 1 to {MAX_PAGE}", param="limit")
        ids = ([AUTO_MODEL] if auto is not None else []) + [m.id for m in chat.models()]
        return anthropic_wire.models_page(
            ids, int(limit), args.get("after_id"), args.get("before_id")
        )

    @bp.post("/embeddings")
    async def embeddings() -> Response:
        started = trio.current_time()
        service = services.embeddings
        status, outcome = None, None  # for the metrics: what was answered, what ran
        try:
            key = await services.accounts.authenticate(credential())
            g.limit_headers = await service.admit(key)
            request_id = request.headers.get("x-request-id", "")
            body = parse_json(await request.get_data())
            call = g.call = service.prepare(key, body, request_id, started)
            outcome = call.outcome
            try:
                reply = await service.embed(call)
            except GatewayError:
                g.limit_headers = {**g.limit_headers, **call.failure_headers()}
                raise
            headers = {**g.limit_headers, **reply.headers}
            status = 200
            return Response(orjson.dumps(reply.data), content_type=JSON, headers=headers)
        except GatewayError as error:
            status = error.status
            raise
        except Exception:
            status = 500
            raise
        finally:
            services.metrics.answered("embeddings", status, outcome)

    return bp


def credential() -> str | None:
    """The key as an Authorization value: `x-api-key` (Anthropic's header) wins, as at the edge."""
    api_key = request.headers.get("x-api-key")
    return f"Bearer {api_key}" if api_key is not None else request.headers.get("authorization")
