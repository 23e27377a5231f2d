"""A fake Stripe API for Checkout: sessions created and listed in Stripe's shapes, requests
recorded; and webhook events signed the way Stripe signs them."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from itertools import count
from typing import Any

import trio
from quart import jsonify, request
from quart_trio import QuartTrio

from .serving import FakeServer

SECRET_KEY = "sk_test_fake_0123456789"
WEBHOOK_SECRET = "whsec_test_fake_0123456789"


def sign(payload: bytes, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    """The Stripe-Signature header for these exact bytes."""
    timestamp = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def event(kind: str, thing: dict[str, Any], event_id: str) -> bytes:
    body = {"id": event_id, "object": "event", "type": kind, "api_version": "2024-06-20",
            "created": int(time.time()), "livemode": False, "pending_webhooks": 1,
            "data": {"object": thing}}  # fmt: skip
    return json.dumps(body).encode()


class FakeStripe(FakeServer):
    def __init__(self) -> None:
        self._shutdown = trio.Event()
        self.sessions: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []  # every call: method, path, form, headers
        self._ids = count(1)
        self._by_idempotency: dict[str, str] = {}

    def pay(self, session_id: str) -> dict[str, Any]:
        """The person paid: the session completes (as Stripe then reports it)."""
        session = self.sessions[session_id]
        session.update(status="complete", payment_status="paid",
                       payment_intent=f"pi_{session_id[3:]}")  # fmt: skip
        return session

    def app(self) -> QuartTrio:
        app = QuartTrio("fake-stripe")

        @app.before_request
        async def record() -> Any:
            form = await request.form
            self.requests.append({"method": request.method, "path": request.path,
                                  "form": dict(form), "args": dict(request.args),
                                  "headers": dict(request.headers)})  # fmt: skip
            if request.headers.get("authorization") != f"Bearer {SECRET_KEY}":
                return jsonify({"error": {"type": "invalid_request_error",
                                          "message": "Invalid API Key provided"}}), 401  # fmt: skip
            return None

        @app.post("/v1/checkout/sessions")
        async def create() -> Any:
            form = await request.form
            key = request.headers.get("idempotency-key", "")
            if key in self._by_idempotency:
                return jsonify(self.sessions[self._by_idempotency[key]])
            session_id = f"cs_test_{next(self._ids):06d}"
            metadata = {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")}
            session = {
                "id": session_id, "object": "checkout.session", "mode": form.get("mode"),
                "url": f"https://checkout.stripe.test/c/pay/{session_id}",
                "expires_at": int(time.time()) + 86400, "status": "open",
                "payment_status": "unpaid", "payment_intent": None,
                "client_reference_id": form.get("client_reference_id"), "metadata": metadata,
                "amount_total": int(form.get("line_items[0][price_data][unit_amount]", 0)),
                "currency": form.get("line_items[0][price_data][currency]"),
                "created": int(time.time()),
                "success_url": form.get("success_url"), "cancel_url": form.get("cancel_url"),
            }  # fmt: skip
            self.sessions[session_id] = session
            self._by_idempotency[key] = session_id
            return jsonify(session)

        @app.get("/v1/checkout/sessions")
        async def listing() -> Any:
            status = request.args.get("status")
            found = [s for s in self.sessions.values() if status in (None, s["status"])]
            return jsonify({"object": "list", "url": "/v1/checkout/sessions",
                            "has_more": False, "data": list(reversed(found))})  # fmt: skip

        return app
