"""ReportService: what the operator's pages show, read off the event loop.

Totals and charts over time windows, latency per model, top keys, money in and out,
users and keys with filters, the usage table (keyset pages and a streamed CSV), the
audit log, and what the upstreams are doing right now.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import fields
from typing import Any

from ..core.config import Settings
from ..store import Store
from ..store import identity as ids
from ..store import reports as rep
from ..store.reports import UsageFilter
from ..upstream.health import UpstreamHealth

HOUR_MS, DAY_MS = 3_600_000, 86_400_000
CSV_PAGE = 1000
SECRETS = ("internal_secret",)
CSV_COLUMNS = ("id", "request_id", "created_at", "user_id", "key_id", "requested_model",
               "served_model", "provider", "tier", "tokens_in", "tokens_out", "cost", "status",
               "error", "latency_ms", "ttft_ms", "fallbacks", "stream")  # fmt: skip


class ReportService:
    def __init__(
        self, store: Store, health: UpstreamHealth, open_streams: Callable[[], int]
    ) -> None:
        self._store = store
        self._health = health
        self._open_streams = open_streams

    async def dashboard(self) -> dict[str, Any]:
        now = _now_ms()

        def read(conn: Any) -> dict[str, Any]:
            today = now - now % DAY_MS  # UTC midnight: whole days come from the rollups
            month = today - 29 * DAY_MS
            return {
                "hour": rep.totals(conn, now - HOUR_MS),
                "day": rep.days_totals(conn, _day(today)),
                "month": rep.days_totals(conn, _day(month)),
                "per_day": rep.days_chart(conn, _day(month)),
                "models": rep.model_latency(conn, now - DAY_MS),
                "top_keys": rep.rolled_top_keys(conn, _day(month)),
                "money": rep.money_flow(conn, month),
            }

        board = await self._store.read(read)
        board["streams"] = self._open_streams()
        board["upstreams"] = self._health.states(details=True)
        return board  # type: ignore[no-any-return]

    def upstreams(self) -> dict[str, dict[str, object]]:
        return self._health.states(details=True)

    async def users(self, search: str = "") -> list[dict[str, Any]]:
        return await self._store.read(lambda c: rep.users(c, search))  # type: ignore[no-any-return]

    async def keys(self, *, owner: str = "", status: str = "", tier: str = "",
                   idle_days: int | None = None) -> list[dict[str, Any]]:  # fmt: skip
        return await self._store.read(  # type: ignore[no-any-return]
            lambda c: rep.keys(c, owner=owner, status=status, tier=tier, idle_days=idle_days)
        )

    async def usage(self, selected: UsageFilter, before_id: int | None, limit: int = 50
                    ) -> dict[str, Any]:  # fmt: skip
        where, args = selected.where()
        rolled, rolled_args = selected.rollup_where()

        def read(conn: Any) -> dict[str, Any]:
            rows = rep.usage_page(conn, where, args, before_id, limit + 1)
            page = {
                "rows": rows[:limit],
                "next": rows[limit - 1]["id"] if len(rows) > limit else None,
            }
            if selected.by_day_only:  # the one-row-a-day rollup
                since, until = _day(selected.since_ms), _day(selected.until_ms)
                status = {"ok": ("ok = 1", ()), "error": ("ok = 0", ())}
                extra, extra_args = status.get(selected.status or "", ("1 = 1", ()))
                page["totals"] = rep.days_totals(conn, since, until, extra, extra_args)
                page["per_day"] = rep.days_chart(conn, since, until, extra, extra_args)
            else:
                page["totals"] = rep.rolled_totals(conn, rolled, rolled_args)
                page["per_day"] = rep.rolled_per_day(conn, rolled, rolled_args)
            return page

        return await self._store.read(read)  # type: ignore[no-any-return]

    async def usage_csv(self, selected: UsageFilter) -> AsyncIterator[bytes]:
        """The filtered usage rows as CSV, a page at a time (never all in memory)."""
        where, args = selected.where()
        yield _csv_line(CSV_COLUMNS)
        before: int | None = None
        while True:
            rows = await self._store.read(
                lambda c, b=before: rep.usage_page(c, where, args, b, CSV_PAGE)
            )
            if not rows:
                return
            yield b"".join(_csv_line([row[c] for c in CSV_COLUMNS]) for row in rows)
            before = rows[-1]["id"]

    async def recent_errors(self, limit: int = 50) -> list[dict[str, Any]]:
        return await self._store.read(lambda c: rep.recent_errors(c, limit))  # type: ignore[no-any-return]

    async def ledger(self, kind: str = "", user_id: str = "") -> list[dict[str, Any]]:
        return await self._store.read(lambda c: rep.ledger_rows(c, kind, user_id=user_id))  # type: ignore[no-any-return]

    async def audit(self, limit: int = 200, action: str = "", actor: str = "", target: str = ""
                    ) -> list[dict[str, object]]:  # fmt: skip
        return await self._store.read(  # type: ignore[no-any-return]
            lambda c: ids.audit_rows(c, limit, action, actor, target)
        )


def settings_table(settings: Settings) -> list[dict[str, str]]:
    """Each server setting in force, where it came from, secrets masked."""
    rows = []
    for item in fields(settings):
        if item.name in ("providers", "models", "tiers", "routes", "auto", "identity",
                         "payments", "sources"):  # fmt: skip
            continue
        value = getattr(settings, item.name)
        shown = "(set, hidden)" if item.name in SECRETS and value else str(value)
        rows.append({"name": item.name, "value": shown,
                     "source": settings.sources.get(item.name, "default")})  # fmt: skip
    for section, table in (("auth", settings.identity), ("payments", settings.payments)):
        defaults = type(table)()
        for item in fields(table):
            value = getattr(table, item.name)
            secret = item.name in ("secret_key", "webhook_secret")
            shown = ("(set, hidden)" if value else "unset") if secret else str(value)
            changed = value != getattr(defaults, item.name)
            source = _section_source(section, item.name) if changed else "default"
            rows.append({"name": f"{section}.{item.name}", "value": shown, "source": source})
    for provider in settings.providers:
        rows.append({"name": f"provider {provider.name}",
                     "value": f"{provider.kind} at {provider.base_url}, key "
                              + ("(set, hidden)" if provider.api_key else "none"),
                     "source": "environment or [providers]"})  # fmt: skip
    return rows


def _section_source(section: str, name: str) -> str:
    environment = {"secret_key": "STRIPE_SECRET_KEY", "webhook_secret": "STRIPE_WEBHOOK_SECRET",
                   "api_base": "STRIPE_API_BASE"}  # fmt: skip
    if name == "signup":
        return "[accounts] signup"
    return environment.get(name) or f"[{section}] {name}"


def _csv_line(values: Any) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerow(["" if v is None else v for v in values])
    return out.getvalue().encode()


def _day(ms: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ms / 1000))


def _now_ms() -> int:
    return int(time.time() * 1000)
