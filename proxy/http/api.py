"""The management API `/api/v1`: a person's account, keys, balance and usage.

A login token (from the device flow) acts for its user; an `sk-tr` key acts for
itself alone (`me`, `balance`, `usage`, `topup`, scoped to that key) and cannot
manage keys (403). Money is a USD string, times ISO 8601 UTC; errors are in the
OpenAI-style envelope of the seeds.
"""

from __future__ import annotations

from quart import Blueprint, Response, request

from ..core.errors import BadRequest
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
        return wire.json(wire.me_json(who.user, await services.callers.balance(who)))

    @bp.get("/balance")
    async def balance() -> Response:
        who = await caller()
        return wire.json(wire.balance_json(await services.callers.balance(who)))

    @bp.get("/me/keys")
    async def list_keys() -> Response:
        who = await caller(manages_keys=True)
        keys = await accounts.user_keys(who.user.id)
        return wire.json([wire.key_json(key, last_used) for key, last_used in keys])

    @bp.post("/me/keys")
    async def create_key() -> Response:
        who = await caller(manages_keys=True)
        name, credit, from_key = wire.new_key_fields(await wire.body())
        new = await accounts.create_user_key(who.user.id, name, credit=credit, from_key=from_key)
        return wire.json(wire.new_key_json(new), status=201)

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
        summary = await services.callers.usage(who, days, request.args.get("key") or None)
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
