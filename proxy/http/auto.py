"""`POST /v1/route/explain`: what tokenroute/auto would do with a chat body.

It answers the tier, score, signals that fired, the model and its alternatives,
without calling an upstream or charging; it reads the session's tier but does not
move it.
"""

from __future__ import annotations

import orjson
from quart import Blueprint, Response, g, request

from ..core.chat import parse_json
from ..services import Services
from .openai_wire import JSON

SESSION_HEADER = "x-session-id"


def auto_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("auto", __name__, url_prefix="/v1")

    @bp.post("/route/explain")
    async def explain() -> Response:
        key = await services.accounts.authenticate(request.headers.get("authorization"))
        g.limit_headers = await services.chat.admit(key)
        body = parse_json(await request.get_data())
        explanation, headers = services.chat.explain(key, body, request.headers.get(SESSION_HEADER))
        return Response(
            orjson.dumps(explanation),
            content_type=JSON,
            headers={**g.limit_headers, **headers},
        )

    return bp
