"""`/healthz` (the process answers) and `/readyz` (it can do its job right now)."""

from __future__ import annotations

import orjson
from quart import Blueprint, Response, request

from ..services import Services
from .openai_wire import JSON


def health_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("health", __name__)

    @bp.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', content_type=JSON)

    @bp.get("/readyz")
    async def readyz() -> Response:
        ready, report = await services.status.readiness(request.headers.get("x-internal-secret"))
        return Response(orjson.dumps(report), status=200 if ready else 503, content_type=JSON)

    return bp
