"""One log line per request: what was asked, by which key and user (ids, never the key),
what served it, what it cost and how long it took (`tokenroute.requests`, event `request`).

The edge writes it for its routes, the Quart app for the others, once the answer is sent;
a request the meter recorded brings its usage row's figures (for a stream, the status
it really ended with: 499 when its client left).
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from ..core.logs import event
from ..core.money import format_usd
from ..services import KeyRecord, UsageRecord

log = logging.getLogger("tokenroute.requests")


def log_request(
    *,
    method: str,
    route: str,
    request_id: str,
    status: int | None,
    started: float,
    key: KeyRecord | None = None,
    usage: UsageRecord | None = None,
    user_id: str | None = None,
) -> None:
    if not log.isEnabledFor(logging.INFO):
        return
    fields: dict[str, Any] = {
        "request_id": request_id,
        "method": method,
        "route": route,
        "status": usage.status if usage is not None else status,
        "latency_ms": round((trio.current_time() - started) * 1000),
        "key_id": key.id if key else usage.key_id if usage else None,
        "user_id": key.user_id if key else usage.user_id if usage else user_id,
    }
    if usage is not None:
        fields.update(
            requested_model=usage.requested_model,
            model=usage.served_model,
            provider=usage.provider,
            tier=usage.tier,
            stream=usage.stream,
            tokens_in=usage.tokens_in,
            tokens_out=usage.tokens_out,
            cached_tokens=usage.cached_tokens,
            estimated=usage.estimated,
            cost=usage.cost,
            cost_usd=format_usd(usage.cost),
            ttft_ms=usage.ttft_ms,
            fallbacks=usage.fallbacks,
            error=usage.error,
        )
    log.info("%s %s %s", method, route, fields["status"], extra=event("request", **fields))
