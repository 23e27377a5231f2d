"""The management API `/api/v1`: a person's account, keys, balance and usage.

A login token (from the device flow) acts for its user; an `sk-tr` key acts for
itself alone (`me`, `balance`, `usage`, `topup`, scoped to that key) and cannot
manage keys (403). Money is a USD string, times ISO 8601 UTC; errors are in the
OpenAI-style envelope of the seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from quart import Blueprint, Response, request

from ..core.errors import (
    AuthenticationFailed,
    BadRequest,
    PermissionDenied,
    ServiceUnavailable,
)
from ..core.money import MoneyError, format_usd, usd_to_units
from ..services import KeyRecord, Services, UserRecord
from .openai_wire import JSON

KEY_PREFIX = "sk-tr-"


@dataclass(frozen=True, slots=True)
class Caller:
    user: UserRecord
    key: KeyRecord | None  # set when an API key, not a login, made the call


def api_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("api", __name__, url_prefix="/api/v1")
    accounts, identity = services.accounts, services.identity

    async def caller(*, manages_keys: bool = False) -> Caller:
        header = request.headers.get("authorization") or ""
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationFailed(
                "send Authorization: Bearer <login token> (tokenroute login) or an sk-tr key"
            )
        if token.startswith(KEY_PREFIX):
            key = await accounts.authenticate(header)
            owner = await identity.user(key.user_id)
            if owner is None or not owner.active:
                raise AuthenticationFailed("this key's account is disabled")
            if manages_keys:
                raise PermissionDenied(
                    "managing keys needs a login token (tokenroute login), not an API key"
                )
            return Caller(owner, key)
        return Caller(await identity.user_of_token(token), None)

    @bp.get("/me")
    async def me() -> Response:
        who = await caller()
        user = who.user
        balance = await _balance(services, who)
        return _json(
            {
                "id": user.id,
                "display_name": user.display_name,
                "email": user.email,
                "logto_sub": user.subject or user.id,
                "balance_usd": format_usd(balance),
                "status": user.status,
            }
        )

    @bp.get("/balance")
    async def balance() -> Response:
        who = await caller()
        amount = await _balance(services, who)
        return _json({"balance_usd": format_usd(amount), "currency": "USD"})

    @bp.get("/me/keys")
    async def list_keys() -> Response:
        who = await caller(manages_keys=True)
        keys = await accounts.user_keys(who.user.id)
        return _json([_key_json(key, last_used) for key, last_used in keys])

    @bp.post("/me/keys")
    async def create_key() -> Response:
        who = await caller(manages_keys=True)
        body = await _body()
        name = _string(body, "name", required=True)
        credit = _usd(body, "credit_usd") if "credit_usd" in body else 0
        from_key = _string(body, "from_key") or None
        new = await accounts.create_user_key(who.user.id, name, credit=credit, from_key=from_key)
        return _json(_key_json(new.record, None) | {"raw": new.raw}, status=201)

    @bp.post("/me/keys/<key_id>/revoke")
    async def revoke_key(key_id: str) -> Response:
        who = await caller(manages_keys=True)
        return _json(_key_json(await accounts.revoke_user_key(who.user.id, key_id), None))

    @bp.post("/me/keys/<key_id>/transfer")
    async def transfer(key_id: str) -> Response:
        who = await caller(manages_keys=True)
        body = await _body()
        to_key = _string(body, "to_key", required=True)
        amount = _usd(body, "amount_usd")
        source, dest = await accounts.transfer(
            who.user.id, key_id, to_key, amount, actor=who.user.email
        )
        return _json(
            {
                "amount_usd": format_usd(amount),
                "from": _key_json(source, None),
                "to": _key_json(dest, None),
            }
        )

    @bp.get("/usage")
    async def usage() -> Response:
        who = await caller()
        days = _days(request.args.get("days", "30"))
        key_id = request.args.get("key") or None
        if who.key is not None:  # an API key sees its own usage only
            if key_id not in (None, who.key.id):
                raise PermissionDenied("an API key can read its own usage only")
            key_id = who.key.id
        elif key_id is not None:
            await _owned(services, who.user.id, key_id)
        summary = await accounts.usage(days, key_id=key_id, user_id=None if key_id else who.user.id)
        return _json(_usage_json(days, summary))

    @bp.get("/generation")
    async def generation() -> Response:
        who = await caller()
        request_id = request.args.get("id", "")
        if not request_id:
            raise BadRequest("id is required: a request id (x-request-id)", param="id")
        rows = await accounts.generation(
            request_id, user_id=who.user.id, key_id=who.key.id if who.key else None
        )
        return _json(_generation_json(rows))

    @bp.post("/topup")
    async def topup() -> Response:
        await caller()
        raise ServiceUnavailable(
            "payments are not set up on this gateway; ask its operator to grant credit "
            "(tokenroute admin grant)"
        )

    return bp


async def _balance(services: Services, who: Caller) -> int:
    """The key's own balance for a key; the sum over the user's active keys for a login."""
    if who.key is not None:
        return await services.accounts.key_balance(who.key.id)
    return await services.accounts.user_balance(who.user.id)


async def _owned(services: Services, user_id: str, key_id: str) -> None:
    keys = await services.accounts.user_keys(user_id)
    if not any(key.id == key_id for key, _ in keys):
        raise BadRequest(f"no key {key_id} of yours", param="key")


async def _body() -> dict[str, Any]:
    raw = await request.get_data()
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as exc:
        raise BadRequest("the body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _string(body: dict[str, Any], name: str, *, required: bool = False) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{name} must be a non-empty string", param=name)
    if len(value) > 200:
        raise BadRequest(f"{name} is longer than 200 characters", param=name)
    return value.strip()


def _usd(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadRequest(f'{name} must be a USD amount as a string, like "5.00"', param=name)
    try:
        amount = usd_to_units(value)
    except MoneyError as exc:
        raise BadRequest(f"{name}: {exc}", param=name) from exc
    if amount <= 0:
        raise BadRequest(f"{name} must be above 0", param=name)
    return amount


def _days(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 365:
        raise BadRequest(f"days must be a whole number from 1 to 365, got {text!r}", param="days")
    return int(text)


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def _key_json(key: KeyRecord, last_used: int | None) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "key_prefix": key.key_prefix,
        "balance_usd": format_usd(key.balance),
        "status": key.status,
        "created_at": _iso(key.created_at),
        "last_used_at": _iso(last_used),
    }


def _usage_json(days: int, summary: dict[str, Any]) -> dict[str, Any]:
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


def _generation_json(rows: list[dict[str, Any]]) -> dict[str, Any]:
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
        "created_at": _iso(last["created_at"]),
    }


def _json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, content_type=JSON)
