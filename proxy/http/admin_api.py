"""`/api/v1/admin/...`: the partner-backend API, behind `X-Internal-Secret`.

404 when the gateway has no internal secret, 401 without the right one (compared in
constant time). Every change is audited by `AdminService`.
"""

from __future__ import annotations

from quart import Blueprint, Response, request

from ..core.errors import BadRequest
from ..core.money import format_usd
from ..services import Services
from . import api_wire as wire

LEDGER_LIMIT = 100


def admin_api_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("admin_api", __name__, url_prefix="/api/v1/admin")
    admin = services.admin

    @bp.before_request
    async def internal_secret_only() -> None:
        admin.check(request.headers.get("x-internal-secret"))

    def address() -> str:
        return request.remote_addr or "unknown"

    @bp.get("/users")
    async def find_user() -> Response:
        email = request.args.get("email")
        if not email:
            raise BadRequest("email is required: GET /api/v1/admin/users?email=...", param="email")
        return wire.json(wire.user_json(await admin.user(email=email)))

    @bp.post("/users")
    async def create_user() -> Response:
        body = await wire.body()
        user = await admin.create_user(
            wire.string(body, "email", required=True),
            wire.string(body, "name"),
            _flag(body, "admin"),
            address(),
        )
        return wire.json(wire.user_json(user), status=201)

    @bp.get("/users/<user_id>")
    async def get_user(user_id: str) -> Response:
        return wire.json(wire.user_json(await admin.user(user_id=user_id)))

    @bp.post("/users/<user_id>/disable")
    async def disable(user_id: str) -> Response:
        user = await admin.set_user_status(user_id, "disabled", address())
        return wire.json(wire.user_json(user))

    @bp.post("/users/<user_id>/enable")
    async def enable(user_id: str) -> Response:
        user = await admin.set_user_status(user_id, "active", address())
        return wire.json(wire.user_json(user))

    @bp.post("/users/<user_id>/keys")
    async def create_key(user_id: str) -> Response:
        body = await wire.body()
        credit = wire.usd(body, "credit_usd") if "credit_usd" in body else 0
        new = await admin.create_key(
            user_id, wire.string(body, "name", required=True), credit, address()
        )
        return wire.json(wire.key_json(new.record, None) | {"raw": new.raw}, status=201)

    @bp.post("/keys/<key_id>/credit")
    async def credit(key_id: str) -> Response:
        body = await wire.body()
        amount = wire.usd(body, "amount_usd", allow_negative=True)
        done = await admin.credit(key_id, amount, wire.string(body, "note") or None, address())
        return wire.json(
            {
                "key_id": done.key_id,
                "kind": done.kind,
                "amount_usd": format_usd(done.amount),
                "balance_usd": format_usd(done.balance),
            }
        )

    @bp.get("/keys/<key_id>/ledger")
    async def ledger(key_id: str) -> Response:
        limit = _limit(request.args.get("limit", str(LEDGER_LIMIT)))
        rows = await admin.ledger(key_id, limit)
        return wire.json([wire.ledger_json(row) for row in rows])

    @bp.get("/usage")
    async def usage() -> Response:
        days = wire.days(request.args.get("days", "30"))
        summary = await admin.usage(
            days, user_id=request.args.get("user"), key_id=request.args.get("key")
        )
        return wire.json(wire.usage_json(days, summary))

    @bp.get("/audit")
    async def audit() -> Response:
        rows = await admin.audit_log(_limit(request.args.get("limit", str(LEDGER_LIMIT))))
        return wire.json([{**row, "created_at": wire.iso(row["created_at"])} for row in rows])  # type: ignore[arg-type]

    return bp


def _flag(body: dict[str, object], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest(f"{name} must be true or false", param=name)
    return value


def _limit(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise BadRequest("limit must be a whole number from 1 to 1000", param="limit")
    return int(text)
