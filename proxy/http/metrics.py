"""`GET /metrics`: Prometheus' text format, on the main port to the holder of the internal
secret, and on `[metrics] listen` (a separate address, loopback or a private network)
without it.

The separate listener is a few lines of plain ASGI, not the Quart app: it answers
`/metrics` and nothing else, so binding it wider than the main port exposes no other route.
"""

from __future__ import annotations

from quart import Blueprint, Response, request

from ..services import Services
from .asgi import Receive, Scope, Send

PATH = "/metrics"


def metrics_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("metrics", __name__)
    export = services.metrics_export

    @bp.get(PATH)
    async def metrics() -> Response:
        """The gateway's counters and gauges, for Prometheus (send X-Internal-Secret)."""
        export.check(request.headers.get("x-internal-secret"))
        body, content_type = await export.render(request.headers.get("accept"))
        return Response(body, content_type=content_type, headers={"cache-control": "no-store"})

    return bp


class MetricsListener:
    """The ASGI app served on `[metrics] listen`: `GET /metrics` without the secret."""

    def __init__(self, services: Services) -> None:
        self._export = services.metrics_export

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        headers = dict(scope["headers"])
        if scope["path"] != PATH:
            status, content_type, body = 404, "text/plain", b"only /metrics is served here\n"
        elif scope["method"] not in ("GET", "HEAD"):
            status, content_type, body = 405, "text/plain", b"GET /metrics\n"
        else:
            accept = headers.get(b"accept", b"").decode("latin-1")
            body, content_type = await self._export.render(accept)
            status = 200
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        sent = b"" if scope["method"] == "HEAD" else body
        await send({"type": "http.response.body", "body": sent, "more_body": False})


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start or stop: the metrics belong to the main app's services."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
