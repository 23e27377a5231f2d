"""The usage explorer: filters, keyset pages, a chart per day, and the CSV export streamed."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from quart import Blueprint, Response, request

from proxy.core.errors import BadRequest
from proxy.services import Services, UsageFilter, UserRecord

from . import charts
from . import session as auth

FIELDS = ("from", "to", "user", "key", "model", "provider", "tier", "status")
DAY_MS = 86_400_000


def usage_filter(args: Mapping[str, str]) -> UsageFilter:
    """The filter a query string asks for (the last 30 days by default)."""
    now = int(time.time() * 1000)
    since = (
        _day(args.get("from")) if args.get("from") else now - int(args.get("days") or 30) * DAY_MS
    )
    until = _day(args.get("to")) + DAY_MS if args.get("to") else now + 1
    status = args.get("status") or None
    if status not in (None, "ok", "error"):
        raise BadRequest("status must be ok or error")
    return UsageFilter(
        since_ms=since,
        until_ms=until,
        user_id=args.get("user") or None,
        key_id=args.get("key") or None,
        served_model=args.get("model") or None,
        provider=args.get("provider") or None,
        tier=args.get("tier") or None,
        status=status,
    )


def usage_views(
    bp: Blueprint, services: Services, page: Callable[..., Any], render: Callable[..., Any]
) -> None:
    reports = services.reports

    def chosen() -> dict[str, str]:
        return {n: request.args.get(n, "")[:200] for n in FIELDS if request.args.get(n)}

    @bp.get("/usage")
    @page
    async def usage(who: UserRecord) -> Response:
        f = chosen()
        before = request.args.get("before", "")
        result = await reports.usage(usage_filter(f), int(before) if before.isdigit() else None)
        return await render(
            "usage.html",
            admin=who,
            title="Usage",
            f=f,
            result=result,  # type: ignore[no-any-return]
            query=urlencode(f),
            chart=charts.bars(result["per_day"], "requests", title="requests"),
        )

    @bp.get("/usage.csv")
    @page
    async def usage_csv(who: UserRecord) -> Response:
        selected = usage_filter(chosen())
        name = f"usage-{datetime.now(tz=UTC):%Y%m%d-%H%M%S}.csv"
        headers = {**auth.HEADERS, "content-disposition": f'attachment; filename="{name}"'}
        return Response(
            reports.usage_csv(selected), content_type="text/csv; charset=utf-8", headers=headers
        )


def _day(text: str | None) -> int:
    try:
        moment = datetime.strptime(str(text), "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError as exc:
        raise BadRequest(f"a date is YYYY-MM-DD, got {text!r}") from exc
    return int(moment.timestamp() * 1000)
