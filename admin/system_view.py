"""Models and providers (catalog, health, recent upstream errors, settings in force) and
money (the ledger across keys, payments, the books check on demand)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from quart import Blueprint, Response, request

from proxy.services import Services, UserRecord, settings_table

from . import session as auth


def system_views(
    bp: Blueprint, services: Services, page: Callable[..., Any], render: Callable[..., Any]
) -> None:
    reports = services.reports

    @bp.get("/models")
    @page
    async def models(who: UserRecord) -> Response:
        catalog = [
            {
                "id": m.id,
                "provider": m.provider,
                "kind": m.kind,
                "pricing": m.pricing(),
                "context": m.context_length,
                "tiers": ", ".join(sorted(m.tiers)),
                "hidden": m.hidden,
            }
            for m in services.chat.models()
        ]
        return await render(
            "models.html",
            admin=who,
            title="Models and providers",  # type: ignore[no-any-return]
            models=catalog,
            upstreams=reports.upstreams(),
            errors=await reports.recent_errors(),
            settings=settings_table(services.settings),
        )

    @bp.get("/money")
    @page
    async def money(who: UserRecord) -> Response:
        kind = request.args.get("kind", "")[:20]
        return await render(
            "money.html",
            admin=who,
            title="Money",
            kind=kind,  # type: ignore[no-any-return]
            ledger=await reports.ledger(kind),
            payments=await services.payments.payments(limit=50),
        )

    @bp.post("/money/check")
    @page
    async def check(who: UserRecord) -> Response:
        await auth.checked_form()
        result = await services.accounts.check()
        notice = "the books agree: every balance equals its ledger" if not result.problems else None
        error = "; ".join(result.problems[:20]) if result.problems else None
        return await render(
            "money.html",
            admin=who,
            title="Money",
            kind="",  # type: ignore[no-any-return]
            ledger=await reports.ledger(),
            notice=notice,
            error=error,
            payments=await services.payments.payments(limit=50),
            open_holds=result.open_holds,
        )
