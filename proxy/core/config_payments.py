"""Payments: Stripe's keys from the environment, `[payments]` from the config file.

Payments are off while `STRIPE_SECRET_KEY` is unset; top-ups then answer 503 and the
operator grants credit by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .config_identity import parse_url
from .config_values import parse_decimal
from .errors import ConfigError

STRIPE_API = "https://api.stripe.com"


@dataclass(frozen=True)
class PaymentSettings:
    secret_key: str | None = field(default=None, repr=False)  # a secret: never logged
    webhook_secret: str | None = field(default=None, repr=False)
    api_base: str = STRIPE_API  # stripe-mock or a test's fake
    min_usd: Decimal = Decimal(5)
    max_usd: Decimal = Decimal(500)
    currency: str = "usd"
    success_url: str | None = None  # None: the gateway's own page
    cancel_url: str | None = None
    fee_percent: Decimal = Decimal(0)  # kept by the operator; the key gets the rest

    @property
    def enabled(self) -> bool:
        return self.secret_key is not None


_KEYS = {"min_usd", "max_usd", "currency", "success_url", "cancel_url", "fee_percent"}


def parse_payments(table: Mapping[str, Any], environ: Mapping[str, str]) -> PaymentSettings:
    unknown = set(table) - _KEYS
    if unknown:
        raise ConfigError(f"config [payments]: unknown setting {sorted(unknown)[0]!r}")
    values: dict[str, Any] = {}
    for name in ("min_usd", "max_usd", "fee_percent"):
        if name in table:
            values[name] = parse_decimal(f"[payments] {name}", table[name])
    low, high = values.get("min_usd", Decimal(5)), values.get("max_usd", Decimal(500))
    if not Decimal("0.5") <= low <= high:
        raise ConfigError("[payments]: min_usd must be at least 0.50 and at most max_usd")
    if not Decimal(0) <= values.get("fee_percent", Decimal(0)) < 100:
        raise ConfigError("[payments] fee_percent: expected 0 to under 100")
    if "currency" in table:
        currency = str(table["currency"]).lower()
        if currency != "usd":
            raise ConfigError("[payments] currency: balances are in USD; only usd is supported")
        values["currency"] = currency
    for name in ("success_url", "cancel_url"):
        if name in table:
            values[name] = parse_url(f"[payments] {name}", table[name])
    secret = environ.get("STRIPE_SECRET_KEY") or None
    hook = environ.get("STRIPE_WEBHOOK_SECRET") or None
    if secret and not hook:
        raise ConfigError("STRIPE_WEBHOOK_SECRET: required with STRIPE_SECRET_KEY (payments "
                          "are credited from Stripe's signed webhooks)")  # fmt: skip
    if environ.get("STRIPE_API_BASE"):
        values["api_base"] = parse_url("STRIPE_API_BASE", environ["STRIPE_API_BASE"])
    return PaymentSettings(secret_key=secret, webhook_secret=hook, **values)
