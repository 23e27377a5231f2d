"""The management API `/api/v1`: a person's account, keys, balance and usage.

A login token (from the device flow) acts for its user; an `sk-tr` key acts for
itself alone (`me`, `balance`, `usage`, `topup`, scoped to that key) and cannot
manage keys (403). Money is a USD string, times ISO 8601 UTC; errors are in the
OpenAI-style envelope of the seeds.
"""

from __future__ import annotations

from quart import Blueprint, Response, request

from ..core.errors import (
    BadRequest,
    PermissionDenied,
)
from ..core.money import format_usd
from ..services import Caller, Services
from . import api_wire as wire


def api_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("api", __name__, url_prefix="/api/v1")
    accounts = services.accounts

    async def caller(*, manages_keys: bool = False) -> Caller:
        header = request.headers.get("authorization")
        return await services.callers.resolve(header, manages_keys=manages_keys)

    @bp.get("/me")
    async def me() -> Response:
        who = await caller()
        user = who.user
        balance = await services.callers.balance(who)
        return wire.json(
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
        amount = await services.callers.balance(who)
        return wire.json({"balance_usd": format_usd(amount), "currency": "USD"})

    @bp.get("/me/keys")
    async def list_keys() -> Response:
        who = await caller(manages_keys=True)
        keys = await accounts.user_keys(who.user.id)
        return wire.json([wire.key_json(key, last_used) for key, last_used in keys])

    @bp.post("/me/keys")
    async def create_key() -> Response:
        who = await caller(manages_keys=True)
        body = await wire.body()
        name = wire.string(body, "name", required=True)
        credit = wire.usd(body, "credit_usd") if "credit_usd" in body else 0
        from_key = wire.string(body, "from_key") or None
        new = await accounts.create_user_key(who.user.id, name, credit=credit, from_key=from_key)
        return wire.json(wire.key_json(new.record, None) | {"raw": new.raw}, status=201)

    @bp.post("/me/keys/<key_id>/revoke")
    async def revoke_key(key_id: str) -> Response:
        who = await caller(manages_keys=True)
        return wire.json(wire.key_json(await accounts.revoke_user_key(who.user.id, key_id), None))

    @bp.post("/me/keys/<key_id>/transfer")
    async def transfer(key_id: str) -> Response:
        who = await caller(manages_keys=True)
        body = await wire.body()
        to_key = wire.string(body, "to_key", required=True)
        amount = wire.usd(body, "amount_usd")
        source, dest = await accounts.transfer(
            who.user.id, key_id, to_key, amount, actor=who.user.email
        )
        return wire.json(
            {
                "amount_usd": format_usd(amount),
                "from": wire.key_json(source, None),
                "to": wire.key_json(dest, None),
            }
        )

    @bp.get("/usage")
    async def usage() -> Response:
        who = await caller()
        days = wire.days(request.args.get("days", "30"))
        key_id = request.args.get("key") or None
        if who.key is not None:  # an API key sees its own usage only
            if key_id not in (None, who.key.id):
                raise PermissionDenied("an API key can read its own usage only")
            key_id = who.key.id
        elif key_id is not None:
            await _owned(services, who.user.id, key_id)
        summary = await accounts.usage(days, key_id=key_id, user_id=None if key_id else who.user.id)
        return wire.json(wire.usage_json(days, summary))

    @bp.get("/generation")
    async def generation() -> Response:
        who = await caller()
        request_id = request.args.get("id", "")
        if not request_id:
            raise BadRequest("id is required: a request id (x-request-id)", param="id")
        rows = await accounts.generation(
            request_id, user_id=who.user.id, key_id=who.key.id if who.key else None
        )
        return wire.json(wire.generation_json(rows))

    @bp.post("/topup")
    async def topup() -> Response:
        who = await caller()
        body = await wire.body()
        checkout = await services.payments.topup(
            who.user, body.get("amount_usd"), key_id=wire.string(body, "key") or None, via=who.key
        )
        return wire.json(checkout)

    @bp.get("/me/payments")
    async def my_payments() -> Response:
        who = await caller()
        found = await services.payments.payments(user_id=who.user.id)
        if who.key is not None:
            found = [p for p in found if p.key_id == who.key.id]
        return wire.json([wire.payment_json(p) for p in found])

    @bp.post("/payments/stripe/webhook")
    async def stripe_webhook() -> Response:
        payload = await request.get_data()
        outcome = await services.payments.webhook(payload, request.headers.get("stripe-signature"))
        return wire.json({"received": True, "outcome": outcome})

    return bp


async def _owned(services: Services, user_id: str, key_id: str) -> None:
    keys = await services.accounts.user_keys(user_id)
    if not any(key.id == key_id for key, _ in keys):
        raise BadRequest(f"no key {key_id} of yours", param="key")
