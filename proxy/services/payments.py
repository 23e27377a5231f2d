"""PaymentService: top-ups through Stripe Checkout, credited exactly once.

A person (or an agent, handing the URL to its person) asks for a top-up; a pending row
is written, then Stripe is asked for a Checkout Session. Stripe's signed webhook says
when it is paid; the credit, the event's record and the ledger row are one transaction,
and the webhook is answered only after it committed, so a retry can never credit twice
and a crash never loses one. Refunds and disputes take the credit back (to zero at most;
the rest is recorded as owed). Reconciliation credits paid sessions whose webhook never
came, under the same rule.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..core.config import Settings
from ..core.errors import BadRequest, ServiceUnavailable
from ..core.money import MoneyError, format_usd, usd_to_units
from ..payments.stripe_checkout import StripeCheckout
from ..store import KeyRecord, Store, UserRecord
from ..store import accounts as acc
from ..store import payments as pay
from ..store.payments import Effect, PaymentRecord

log = logging.getLogger("tokenroute.payments")
NANO_PER_CENT = 10_000_000
OFF = ("payments are not set up on this gateway; ask its operator to grant credit "
       "(tokenroute admin grant)")  # fmt: skip


class PaymentService:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        base_url: Callable[[], str],
        on_credit: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        self._settings = settings.payments
        self._base_url = base_url
        self._on_credit = on_credit
        self._checkout = StripeCheckout(self._settings) if self._settings.enabled else None

    @property
    def enabled(self) -> bool:
        return self._checkout is not None

    async def aclose(self) -> None:
        if self._checkout is not None:
            await self._checkout.aclose()

    async def topup(
        self, user: UserRecord, amount_usd: Any, *, key_id: str | None, via: KeyRecord | None
    ) -> dict[str, object]:
        """A Checkout URL for a person to pay; the key is credited when Stripe says paid."""
        checkout = self._require()
        amount = self._amount(amount_usd)
        key = await self._key(user, key_id, via)
        fee = amount * self._settings.fee_percent / 100
        credit = amount - int(fee.to_integral_value(rounding="ROUND_CEILING"))
        payment = await self._store.write(
            lambda c: pay.add_pending(c, key.id, user.id, amount, credit, self._settings.currency)
        )
        base = self._base_url()
        try:
            session = await checkout.create_session(
                payment_id=payment.id,
                cents=amount // NANO_PER_CENT,
                currency=self._settings.currency,
                metadata={"payment_id": payment.id, "key_id": key.id, "user_id": user.id},
                email=user.email if "@" in user.email else None,
                success_url=self._settings.success_url
                or f"{base}/payments/done?payment={payment.id}",
                cancel_url=self._settings.cancel_url or f"{base}/payments/cancelled",
                description=f"tokenroute credit for key {key.name}",
            )
        except BaseException:
            await self._store.write(lambda c: pay.set_failed(c, payment.id))
            raise
        await self._store.write(
            lambda c: pay.attach_session(c, payment.id, session.id, session.url, session.expires_at)
        )
        return {
            "checkout_url": session.url,
            "session_id": session.id,
            "amount_usd": format_usd(amount),
            "expires_at": session.expires_at,
            "credit_usd": format_usd(credit),
            "key_id": key.id,
            "payment_id": payment.id,
        }

    async def webhook(self, payload: bytes, signature: str | None) -> str:
        """Handle one signed Stripe event; what it did. Returns only after it committed."""
        event = self._require().verify(payload, signature)
        event_id, kind = str(event.get("id")), str(event.get("type"))
        thing: dict[str, Any] = (event.get("data") or {}).get("object") or {}
        job: Callable[[Any], Effect | None] | None = None
        if kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
            if thing.get("payment_status") == "paid":
                job = lambda c: pay.credit_session(  # noqa: E731
                    c, event_id, kind, thing["id"], thing.get("client_reference_id"),
                    thing.get("payment_intent"))  # fmt: skip
        elif kind in ("checkout.session.expired", "checkout.session.async_payment_failed"):
            status = "expired" if kind.endswith("expired") else "failed"
            job = lambda c: pay.end_session(c, event_id, kind, thing["id"], status)  # noqa: E731
        elif kind == "charge.refunded" and thing.get("payment_intent"):
            back = int(thing.get("amount_refunded") or 0) * NANO_PER_CENT
            job = lambda c: pay.claw_back(  # noqa: E731
                c, event_id, kind, "refund", thing["payment_intent"], back, True)  # fmt: skip
        elif kind == "charge.dispute.created" and thing.get("payment_intent"):
            back = int(thing.get("amount") or 0) * NANO_PER_CENT
            job = lambda c: pay.claw_back(  # noqa: E731
                c, event_id, kind, "dispute", thing["payment_intent"], back, False)  # fmt: skip
        if job is None:
            return "ignored"
        effect = await self._store.write(job)
        await self._after(effect, kind)
        return "handled"

    async def reconcile(self, since_days: int) -> list[dict[str, object]]:
        """Credit every paid session of the last days whose webhook never came."""
        checkout = self._require()
        if not 1 <= since_days <= 90:
            raise BadRequest("--since must be from 1 to 90 days", param="since")
        sessions = await checkout.completed_sessions(int(time.time()) - since_days * 86400)
        credited = []
        for session in sessions:
            if session.get("payment_status") != "paid":
                continue
            effect = await self._store.write(lambda c, s=session: pay.credit_session(
                c, f"reconcile:{s['id']}", "reconcile", s["id"], s.get("client_reference_id"),
                s.get("payment_intent")))  # fmt: skip
            if effect and effect.key_id:
                await self._after(effect, "reconcile")
                credited.append({"session_id": session["id"], "key_id": effect.key_id,
                                 "credit_usd": format_usd(effect.amount)})  # fmt: skip
        return credited

    async def payments(self, *, user_id: str | None = None, limit: int = 100
                       ) -> list[PaymentRecord]:  # fmt: skip
        return await self._store.read(  # type: ignore[no-any-return]
            lambda c: pay.payments_of(c, user_id=user_id, limit=limit)
        )

    async def payment(self, payment_id: str) -> PaymentRecord | None:
        return await self._store.read(pay.payment, payment_id)  # type: ignore[no-any-return]

    # -- internals ---------------------------------------------------------------------------
    def _require(self) -> StripeCheckout:
        if self._checkout is None:
            raise ServiceUnavailable(OFF)
        return self._checkout

    def _amount(self, given: Any) -> int:
        low, high = self._settings.min_usd, self._settings.max_usd
        range_text = f"from ${format_usd(usd_to_units(low))} to ${format_usd(usd_to_units(high))}"
        if isinstance(given, bool) or not isinstance(given, (str, int)):
            raise BadRequest(f'amount_usd must be a USD amount like "5", {range_text}',
                             param="amount_usd")  # fmt: skip
        try:
            amount = usd_to_units(given)
        except MoneyError as exc:
            raise BadRequest(f"amount_usd: {exc}", param="amount_usd") from exc
        if not usd_to_units(low) <= amount <= usd_to_units(high):
            raise BadRequest(f"amount_usd must be {range_text}", param="amount_usd")
        if amount % NANO_PER_CENT:
            raise BadRequest("amount_usd must be whole cents", param="amount_usd")
        return amount

    async def _key(self, user: UserRecord, key_id: str | None, via: KeyRecord | None
                   ) -> KeyRecord:  # fmt: skip
        if via is not None:
            if key_id not in (None, via.id):
                raise BadRequest("an API key can top up itself only", param="key")
            return via
        keys = [k for k, _ in await self._store.read(acc.keys_of_user, user.id) if k.active]
        if key_id is not None:
            chosen = next((k for k in keys if k.id == key_id), None)
            if chosen is None:
                raise BadRequest(f"no active key {key_id} of yours", param="key")
            return chosen
        if not keys:
            raise BadRequest("you have no active key to credit: tokenroute keys create --name "
                             "NAME", param="key")  # fmt: skip
        return max(keys, key=lambda k: (k.created_at, k.id))

    async def _after(self, effect: Effect | None, kind: str) -> None:
        if effect is None or effect.key_id is None:
            return
        if effect.owed:
            log.warning("%s: key %s could give back only part of it; owed %s USD", kind,
                        effect.key_id, format_usd(effect.owed))  # fmt: skip
        if self._on_credit is not None:
            await self._on_credit(effect.key_id)
