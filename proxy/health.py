"""`/healthz` (the process answers) and `/readyz` (it can do its job right now)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
import trio
from quart import Blueprint, Response

if TYPE_CHECKING:
    from .app import Gateway

READY_DEADLINE = 2.0


def health_blueprint(gw: Gateway) -> Blueprint:
    bp = Blueprint("health", __name__)

    @bp.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', content_type="application/json")

    @bp.get("/readyz")
    async def readyz() -> Response:
        database = "ok"
        with trio.move_on_after(READY_DEADLINE) as scope:
            try:
                await gw.store.ping()
            except Exception as exc:
                database = f"not writable: {exc}"
        if scope.cancelled_caught:
            database = f"not writable within {READY_DEADLINE:g} s"
        providers = [p.name for p in gw.settings.providers]
        ready = database == "ok" and bool(providers)
        body = {
            "status": "ready" if ready else "not ready",
            "database": database,
            "providers": providers,
            "models": len(gw.catalog),
            "upstreams": gw.failover.cooldowns.states(),
            "queued_writes": gw.store.queued,
        }
        if not providers:
            body["reason"] = "no provider is enabled: set OPENAI_API_KEY or add [providers.*]"
        return Response(
            orjson.dumps(body), status=200 if ready else 503, content_type="application/json"
        )

    return bp
