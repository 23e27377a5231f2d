"""What the operator's pages read: totals over time windows, per-model latency, top keys,
users with their keys, and the usage table paged by keyset (`id < ?`), never by OFFSET.

Every query is bounded by an indexed time range or a LIMIT; they run on reader
connections in threads, never on the event loop.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from .accounts import now_ms
from .dialect import DAY_MS, utc_day

USAGE_FILTERS = ("user_id", "key_id", "served_model", "provider", "tier")
ROLLUP_COLUMNS = ("user_id", "key_id", "model", "provider", "tier")


@dataclass(frozen=True, slots=True)
class UsageFilter:
    since_ms: int
    until_ms: int
    user_id: str | None = None
    key_id: str | None = None
    served_model: str | None = None
    provider: str | None = None
    tier: str | None = None
    status: str | None = None  # "ok", "error", or None for all

    @property
    def by_day_only(self) -> bool:
        """Whether only dates and status filter it (the one-row-a-day rollup answers)."""
        return not any(getattr(self, name) for name in USAGE_FILTERS)

    def rollup_where(self) -> tuple[str, list[Any]]:
        """The same filter on `usage_daily` (whole UTC days from `since_ms` to `until_ms`)."""
        clauses = ["day >= ?", "day < ?"]
        args: list[Any] = [utc_day(self.since_ms), utc_day(self.until_ms)]
        for name, column in zip(USAGE_FILTERS, ROLLUP_COLUMNS, strict=True):
            value = getattr(self, name)
            if value:
                clauses.append(f"{column} = ?")
                args.append(value)
        if self.status in ("ok", "error"):
            clauses.append("ok = ?")
            args.append(1 if self.status == "ok" else 0)
        return " AND ".join(clauses), args

    def where(self) -> tuple[str, list[Any]]:
        # `+created_at`: page by id (newest first) rather than sort a whole time range
        clauses, args = ["+created_at >= ?", "+created_at < ?"], [self.since_ms, self.until_ms]
        for name in USAGE_FILTERS:
            value = getattr(self, name)
            if value:
                clauses.append(f"{name} = ?")
                args.append(value)
        if self.status == "ok":
            clauses.append("status = 200")
        elif self.status == "error":
            clauses.append("status != 200")
        return " AND ".join(clauses), args


def totals(conn: sqlite3.Connection, since_ms: int) -> dict[str, int]:
    row = conn.execute(
        "SELECT count(*), coalesce(sum(tokens_in), 0), coalesce(sum(tokens_out), 0), "
        "coalesce(sum(cost), 0), coalesce(sum(CASE WHEN status != 200 THEN 1 ELSE 0 END), 0) "
        "FROM usage WHERE created_at >= ?",
        (since_ms,),
    ).fetchone()
    return dict(zip(("requests", "tokens_in", "tokens_out", "cost", "errors"), row, strict=True))


def model_latency(conn: sqlite3.Connection, since_ms: int, sample: int = 2000
                  ) -> list[dict[str, Any]]:  # fmt: skip
    """p50 / p95 latency and time to first token per served model (the newest `sample` rows
    of each, so the cost stays flat however many rows there are)."""
    models = recent_models(conn, utc_day(since_ms))
    found = []
    for model in sorted(models):
        rows = conn.execute(
            "SELECT latency_ms, ttft_ms FROM usage WHERE served_model = ? AND created_at >= ? "
            "AND status = 200 ORDER BY created_at DESC LIMIT ?",
            (model, since_ms, sample),
        ).fetchall()
        latencies = sorted(r[0] for r in rows if r[0] is not None)
        firsts = sorted(r[1] for r in rows if r[1] is not None)
        found.append({"model": model, "requests": len(rows),
                      "p50": _pct(latencies, 50), "p95": _pct(latencies, 95),
                      "ttft_p50": _pct(firsts, 50), "ttft_p95": _pct(firsts, 95)})  # fmt: skip
    return found


def money_flow(conn: sqlite3.Connection, since_ms: int) -> dict[str, int]:
    """Credit sold (top-ups), given (grants) and spent (usage) since a time."""
    rows = {
        kind: conn.execute(
            "SELECT coalesce(sum(amount), 0) FROM ledger WHERE kind = ? AND created_at >= ?",
            (kind, since_ms),
        ).fetchone()[0]
        for kind in ("topup", "grant", "refund", "dispute")
    }
    since_day = utc_day(since_ms)
    rows["usage"] = -conn.execute(
        "SELECT coalesce(sum(cost), 0) FROM usage_days WHERE day >= ?", (since_day,)
    ).fetchone()[0]
    return {"sold": rows.get("topup", 0), "granted": rows.get("grant", 0),
            "spent": -rows.get("usage", 0), "clawed_back": -(rows.get("refund", 0)
                                                             + rows.get("dispute", 0))}  # fmt: skip


def users(conn: sqlite3.Connection, search: str, limit: int = 100) -> list[dict[str, Any]]:
    like = f"%{search.strip()}%"
    rows = conn.execute(
        "SELECT u.id, u.email, u.display_name, u.is_admin, u.status, u.created_at, "
        "count(k.id), coalesce(sum(CASE WHEN k.status = 'active' THEN k.balance END), 0), "
        "(SELECT max(created_at) FROM usage WHERE user_id = u.id) "
        "FROM users u LEFT JOIN api_keys k ON k.user_id = u.id "
        "WHERE u.email LIKE ? OR u.display_name LIKE ? OR u.id = ? "
        "GROUP BY u.id ORDER BY u.created_at DESC LIMIT ?",
        (like, like, search.strip(), limit),
    ).fetchall()
    names = ("id", "email", "display_name", "is_admin", "status", "created_at", "keys",
             "balance", "last_used")  # fmt: skip
    return [dict(zip(names, row, strict=True)) for row in rows]


def keys(conn: sqlite3.Connection, *, owner: str = "", status: str = "", tier: str = "",
         idle_days: int | None = None, limit: int = 200) -> list[dict[str, Any]]:  # fmt: skip
    """Keys by the filters; `idle_days`: only those unused for that long (or never used)."""
    clauses, args = ["1 = 1"], []
    if idle_days is not None:
        clauses.append("coalesce((SELECT max(day) FROM usage_key_days d WHERE d.key_id = k.id), "
                       "'') < ?")  # fmt: skip
        args.append(utc_day(now_ms() - idle_days * DAY_MS))
    if owner:
        clauses.append("(us.email LIKE ? OR k.user_id = ?)")
        args += [f"%{owner}%", owner]
    if status:
        clauses.append("k.status = ?")
        args.append(status)
    if tier:
        clauses.append("coalesce(k.tier, 'default') = ?")
        args.append(tier)
    rows = conn.execute(
        "SELECT k.id, k.name, k.key_prefix, k.balance, k.status, coalesce(k.tier, ''), "
        "k.created_at, us.email, (SELECT max(created_at) FROM usage WHERE key_id = k.id) "
        f"FROM api_keys k JOIN users us ON us.id = k.user_id WHERE {' AND '.join(clauses)} "
        "ORDER BY k.created_at DESC LIMIT ?",
        (*args, limit),
    ).fetchall()
    names = ("id", "name", "key_prefix", "balance", "status", "tier", "created_at", "email",
             "last_used")  # fmt: skip
    return [dict(zip(names, row, strict=True)) for row in rows]


def usage_page(conn: sqlite3.Connection, where: str, args: list[Any], before_id: int | None,
               limit: int) -> list[dict[str, Any]]:  # fmt: skip
    """One page of usage rows, newest first, after the keyset `before_id`."""
    if before_id is not None:
        where, args = f"{where} AND id < ?", [*args, before_id]
    cursor = conn.execute(
        "SELECT id, request_id, created_at, user_id, key_id, requested_model, served_model, "
        "provider, tier, tokens_in, tokens_out, cost, status, error, latency_ms, ttft_ms, "
        f"fallbacks, stream FROM usage WHERE {where} ORDER BY id DESC LIMIT ?",
        (*args, limit),
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _pct(values: list[int], percent: int) -> int | None:
    if not values:
        return None
    return values[min(len(values) - 1, (len(values) * percent) // 100)]


def recent_errors(conn: sqlite3.Connection, limit: int = 50) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT created_at, request_id, coalesce(served_model, requested_model), provider, "
        "status, error FROM usage WHERE status != 200 ORDER BY id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    names = ("created_at", "request_id", "model", "provider", "status", "error")
    return [dict(zip(names, row, strict=True)) for row in rows]


def ledger_rows(
    conn: sqlite3.Connection, kind: str = "", limit: int = 200, *, user_id: str = ""
) -> list[dict[str, Any]]:
    clauses, args = ["1 = 1"], []
    if kind:
        clauses.append("l.kind = ?")
        args.append(kind)
    if user_id:
        clauses.append("k.user_id = ?")
        args.append(user_id)
    where = "WHERE " + " AND ".join(clauses)
    rows = conn.execute(
        "SELECT l.created_at, l.key_id, k.name, l.kind, l.amount, l.actor, l.note FROM ledger l "
        f"LEFT JOIN api_keys k ON k.id = l.key_id {where} ORDER BY l.id DESC LIMIT ?",
        (*args, limit),
    ).fetchall()
    names = ("created_at", "key_id", "name", "kind", "amount", "actor", "note")
    return [dict(zip(names, row, strict=True)) for row in rows]


def rolled_totals(conn: sqlite3.Connection, where: str, args: list[Any]) -> dict[str, int]:
    row = conn.execute(
        "SELECT coalesce(sum(requests), 0), coalesce(sum(tokens_in), 0), "
        "coalesce(sum(tokens_out), 0), coalesce(sum(cost), 0), "
        f"coalesce(sum(CASE WHEN ok = 0 THEN requests END), 0) FROM usage_daily WHERE {where}",
        args,
    ).fetchone()
    return dict(zip(("requests", "tokens_in", "tokens_out", "cost", "errors"), row, strict=True))


def rolled_per_day(conn: sqlite3.Connection, where: str, args: list[Any]) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT day, sum(requests), sum(cost), coalesce(sum(CASE WHEN ok = 0 THEN requests END), "
        f"0) FROM usage_daily WHERE {where} GROUP BY day ORDER BY day",
        args,
    ).fetchall()
    return [{"day": d, "requests": n, "cost": c, "errors": e} for d, n, c, e in rows]


def days_totals(conn: sqlite3.Connection, since_day: str, until_day: str = "9999",
                where: str = "1 = 1", args: tuple[Any, ...] = ()) -> dict[str, int]:  # fmt: skip
    row = conn.execute(
        "SELECT coalesce(sum(requests), 0), coalesce(sum(tokens_in), 0), "
        "coalesce(sum(tokens_out), 0), coalesce(sum(cost), 0), "
        "coalesce(sum(CASE WHEN ok = 0 THEN requests END), 0) FROM usage_days "
        f"WHERE day >= ? AND day < ? AND {where}",
        (since_day, until_day, *args),
    ).fetchone()
    return dict(zip(("requests", "tokens_in", "tokens_out", "cost", "errors"), row, strict=True))


def days_chart(
    conn: sqlite3.Connection,
    since_day: str,
    until_day: str = "9999",
    where: str = "1 = 1",
    args: tuple[Any, ...] = (),
) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT day, sum(requests), sum(cost), coalesce(sum(CASE WHEN ok = 0 THEN requests "
        f"END), 0) FROM usage_days WHERE day >= ? AND day < ? AND {where} "
        "GROUP BY day ORDER BY day",
        (since_day, until_day, *args),
    ).fetchall()
    return [{"day": d, "requests": n, "cost": c, "errors": e} for d, n, c, e in rows]


def rolled_top_keys(conn: sqlite3.Connection, since_day: str, limit: int = 10
                    ) -> list[dict[str, Any]]:  # fmt: skip
    rows = conn.execute(
        "SELECT t.key_id, k.name, us.email, t.requests, t.cost FROM ("
        "SELECT key_id, max(user_id) AS user_id, sum(requests) AS requests, sum(cost) AS cost "
        "FROM usage_key_days WHERE day >= ? GROUP BY key_id ORDER BY cost DESC LIMIT ?) t "
        "LEFT JOIN api_keys k ON k.id = t.key_id LEFT JOIN users us ON us.id = t.user_id",
        (since_day, limit),
    ).fetchall()
    return [{"key_id": k, "name": n, "email": e, "requests": r, "cost": c}
            for k, n, e, r, c in rows]  # fmt: skip


def recent_models(conn: sqlite3.Connection, since_day: str) -> list[str]:
    rows = conn.execute(
        "SELECT DISTINCT model FROM usage_daily WHERE day >= ? AND model != ''", (since_day,)
    )
    return sorted(r[0] for r in rows)
