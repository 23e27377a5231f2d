"""Stripe through its own library: one `StripeClient` made at start-up, async calls on trio.

The only module that imports `stripe`. Amounts go to Stripe in cents; what comes back is
turned into plain values (`Session`, events as dicts) so nothing else sees Stripe's types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stripe

from ..core.config_payments import PaymentSettings
from ..core.errors import BadRequest, Fault, UpstreamUnavailable

TOLERANCE = 300  # seconds a webhook signature stays valid (Stripe's default)


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    url: str
    expires_at: int | None


class StripeCheckout:
    def __init__(self, settings: PaymentSettings) -> None:
        assert settings.secret_key is not None and settings.webhook_secret is not None
        self._webhook_secret = settings.webhook_secret
        self._http = stripe.HTTPXClient()
        self._client = stripe.StripeClient(
            settings.secret_key,
            base_addresses={"api": settings.api_base},
            http_client=self._http,
            max_network_retries=2,
        )

    async def aclose(self) -> None:
        await self._http.close_async()

    async def create_session(
        self,
        *,
        payment_id: str,
        cents: int,
        currency: str,
        metadata: dict[str, str],
        email: str | None,
        success_url: str,
        cancel_url: str,
        description: str,
    ) -> Session:
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [{
                "quantity": 1,
                "price_data": {"currency": currency, "unit_amount": cents,
                               "product_data": {"name": description}},
            }],
            "success_url": success_url,
            "cancel_url": cancel_url,
            "client_reference_id": payment_id,
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
        }  # fmt: skip
        if email:
            params["customer_email"] = email
        try:
            created = await self._client.v1.checkout.sessions.create_async(
                params, options={"idempotency_key": payment_id}
            )
        except stripe.StripeError as exc:
            raise UpstreamUnavailable(
                "the payment provider did not open a checkout; try again shortly",
                fault=Fault.ACCOUNT,
                detail=f"stripe: {exc.user_message or exc} ({exc.__cause__ or exc.__context__!r})",
            ) from exc
        return Session(created.id, str(created.url), created.expires_at)

    async def completed_sessions(self, since: int) -> list[dict[str, Any]]:
        """Completed sessions created since a unix time, newest first, as dicts."""
        found: list[dict[str, Any]] = []
        params: dict[str, Any] = {"created": {"gte": since}, "status": "complete", "limit": 100}
        try:
            page = await self._client.v1.checkout.sessions.list_async(params)
            async for session in page.auto_paging_iter():
                found.append(session.to_dict())
        except stripe.StripeError as exc:
            raise UpstreamUnavailable(
                "the payment provider could not be asked for its sessions",
                fault=Fault.ACCOUNT,
                detail=f"stripe: {exc}",
            ) from exc
        return found

    def verify(self, payload: bytes, signature: str | None) -> dict[str, Any]:
        """The event, if Stripe signed exactly these bytes within the tolerance; else 400."""
        if not signature:
            raise BadRequest("the Stripe-Signature header is missing")
        try:
            event = self._client.construct_event(
                payload, signature, self._webhook_secret, tolerance=TOLERANCE
            )
        except stripe.SignatureVerificationError as exc:
            raise BadRequest("the webhook signature does not verify") from exc
        except ValueError as exc:
            raise BadRequest("the webhook body is not a Stripe event") from exc
        return event.to_dict()  # type: ignore[no-any-return]
