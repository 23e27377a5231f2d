"""Where Stripe Checkout sends a person back: paid (the credit arrives within seconds) or not."""

from __future__ import annotations

from quart import Blueprint, Response, render_template_string, request

from ..core.money import format_usd
from ..services import Services
from .device import PAGE_HEADERS

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>tokenroute</title>
<style>:root{color-scheme:light dark;font-family:system-ui,sans-serif}
body{max-width:30rem;margin:4rem auto;padding:0 1rem;line-height:1.5}</style></head><body>
<h1>{{ title }}</h1>{% for line in lines %}<p>{{ line }}</p>{% endfor %}</body></html>"""


def payment_pages_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("payment_pages", __name__)

    async def page(title: str, *lines: str) -> Response:
        html = await render_template_string(PAGE, title=title, lines=lines)
        return Response(html, content_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    @bp.get("/payments/done")
    async def done() -> Response:
        payment_id = request.args.get("payment", "")[:80]
        payment = await services.payments.payment(payment_id) if payment_id else None
        if payment is None:
            return await page("Thank you", "Your credit will appear on your key within seconds.")
        balance = await services.accounts.key_balance(payment.key_id)
        state = ("It is on your key now." if payment.credited_at
                 else "It will appear on your key within seconds.")  # fmt: skip
        return await page(
            "Thank you",
            f"You paid ${format_usd(payment.amount)}; ${format_usd(payment.credit)} of credit. "
            + state,
            f"The key's balance: ${format_usd(balance)}.",
        )

    @bp.get("/payments/cancelled")
    async def cancelled() -> Response:
        return await page("Not paid", "Nothing was charged. Run `tokenroute topup` again "
                          "whenever you like.")  # fmt: skip

    return bp
