"""The JSON of the management API: bodies in, money and times out, in one place.

Money is a USD string (never a float), times ISO 8601 UTC; a bad field is a 400 that
names it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from quart import Response, request

from ..core.errors import BadRequest
from ..core.money import MoneyError, format_usd, usd_to_units
from ..services import KeyRecord, NewKey, UserRecord
from .openai_wire import JSON


async def body() -> dict[str, Any]:
    raw = await request.get_data()
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as exc:
        raise BadRequest("the body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def string(body: dict[str, Any], name: str, *, required: bool = False) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{name} must be a non-empty string", param=name)
    if len(value) > 200:
        raise BadRequest(f"{name} is longer than 200 characters", param=name)
    return value.strip()


def usd(body: dict[str, Any], name: str, *, allow_negative: bool = False) -> int:
    """A USD amount given as a string ("5.00") or whole number; above 0 unless allowed."""
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadRequest(f'{name} must be a USD amount as a string, like "5.00"', param=name)
    try:
        amount = usd_to_units(value)
    except MoneyError as exc:
        raise BadRequest(f"{name}: {exc}", param=name) from exc
    if amount <= 0 and not allow_negative:
        raise BadRequest(f"{name} must be above 0", param=name)
    return amount


def days(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 365:
        raise BadRequest(f"days must be a whole number from 1 to 365, got {text!r}", param="days")
    return int(text)


def new_key_fields(body: dict[str, Any]) -> tuple[str, int, str | None]:
    """(name, credit, from_key) of a new key's request: credit moves from `from_key`."""
    name = string(body, "name", required=True)
    credit = usd(body, "credit_usd") if "credit_usd" in body else 0
    return name, credit, string(body, "from_key") or None


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def key_json(key: KeyRecord, last_used: int | None) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "key_prefix": key.key_prefix,
        "balance_usd": format_usd(key.balance),
        "status": key.status,
        "created_at": iso(key.created_at),
        "last_used_at": iso(last_used),
    }


def new_key_json(new: NewKey) -> dict[str, Any]:
    """A key just made, with its raw secret: the only time anyone sees it."""
    return key_json(new.record, None) | {"raw": new.raw}


def me_json(user: UserRecord, balance: int) -> dict[str, Any]:
    return {
        "id": user.id,
        "display_name": user.display_name,
        "email": user.email,
        "logto_sub": user.subject or user.id,
        "balance_usd": format_usd(balance),
        "status": user.status,
    }


def balance_json(balance: int) -> dict[str, Any]:
    return {"balance_usd": format_usd(balance), "currency": "USD"}


def usage_json(days: int, summary: dict[str, Any]) -> dict[str, Any]:
    def share(row: dict[str, Any], *names: str) -> dict[str, Any]:
        return {
            **{name: row[name] for name in names},
            "requests": row["requests"],
            "tokens_in": row["tokens_in"],
            "tokens_out": row["tokens_out"],
            "cost_usd": format_usd(row["cost"]),
        }

    return {
        "range_days": days,
        "total_requests": summary["requests"],
        "total_tokens_in": summary["tokens_in"],
        "total_tokens_out": summary["tokens_out"],
        "total_cost_usd": format_usd(summary["cost"]),
        "by_model": [share(m, "model") for m in summary["by_model"]],
        "by_key": [share(k, "key_id", "name") for k in summary["by_key"]],
        "by_day": [share(d, "date") for d in summary["by_day"]],
    }


def generation_json(rows: list[dict[str, Any]]) -> dict[str, Any]:
    last = rows[-1]
    return {
        "id": last["request_id"],
        "key_id": last["key_id"],
        "model": last["requested_model"],
        "served_model": last["served_model"],
        "provider": last["provider"],
        "tokens_in": last["tokens_in"],
        "tokens_out": last["tokens_out"],
        "cost_usd": format_usd(last["cost"]),
        "latency_ms": last["latency_ms"],
        "ttft_ms": last["ttft_ms"],
        "fallbacks": last["fallbacks"],
        "status": last["status"],
        "stream": bool(last["stream"]),
        "created_at": iso(last["created_at"]),
    }


def json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, content_type=JSON)


def user_json(user: UserRecord) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "display_name": user.display_name,
        "is_admin": user.is_admin,
        "status": user.status,
        "logto_sub": user.subject or user.id,
        "created_at": iso(user.created_at),
    }


def ledger_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "kind": row["kind"],
        "amount_usd": format_usd(row["amount"]),
        "reference": row["reference"],
        "actor": row["actor"],
        "note": row["note"],
        "created_at": iso(row["created_at"]),
    }


def payment_json(payment: Any) -> dict[str, Any]:
    return {
        "id": payment.id,
        "key_id": payment.key_id,
        "amount_usd": format_usd(payment.amount),
        "credit_usd": format_usd(payment.credit),
        "status": payment.status,
        "session_id": payment.session_id,
        "checkout_url": payment.checkout_url if payment.status == "open" else None,
        "clawed_back_usd": format_usd(payment.clawed_back),
        "owed_usd": format_usd(payment.owed),
        "created_at": iso(payment.created_at),
        "credited_at": iso(payment.credited_at),
    }
