"""Integer money.

Amounts are integers of nano-USD (1 USD = 10**9 units): exact, fast to add, and
fine enough that a one-token request on the cheapest model still costs a whole
number of units. Floats never touch money; JSON shows USD as strings.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal, InvalidOperation

UNITS_PER_USD = 10**9
# Prices are held as pico-USD per token: USD per 1M tokens x 10**6.
PICO_PER_TOKEN_PER_USD_PER_MTOK = 10**6
PICO_PER_UNIT = 1000


class MoneyError(ValueError):
    """An amount that is not a valid USD figure."""


def usd_to_units(value: str | int | Decimal) -> int:
    """Parse a USD amount ("5", "5.00", Decimal) into units; more than 9 decimals is an error."""
    if isinstance(value, bool | float):
        raise MoneyError(f"amount must be a string or integer, not {type(value).__name__}")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise MoneyError(f"not a USD amount: {value!r}") from exc
    if not amount.is_finite():
        raise MoneyError(f"not a USD amount: {value!r}")
    units = amount * UNITS_PER_USD
    if units != units.to_integral_value():
        raise MoneyError(f"too many decimals in {value!r} (at most 9)")
    return int(units)


def format_usd(units: int, *, min_decimals: int = 2) -> str:
    """Render units as a USD string: "5.00", "0.000150", never scientific notation."""
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), UNITS_PER_USD)
    digits = f"{frac:09d}".rstrip("0")
    if len(digits) < min_decimals:
        digits = digits.ljust(min_decimals, "0")
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"


def rate_from_usd_per_mtok(price: Decimal) -> int:
    """USD per 1M tokens -> pico-USD per token, rounded up (at most 1e-12 USD a token)."""
    if price < 0:
        raise MoneyError(f"a price cannot be negative: {price}")
    return int((price * PICO_PER_TOKEN_PER_USD_PER_MTOK).to_integral_value(ROUND_CEILING))


def usd_per_mtok_from_rate(rate: int) -> str:
    """pico-USD per token -> USD per 1M tokens as a plain decimal string."""
    value = Decimal(rate) / PICO_PER_TOKEN_PER_USD_PER_MTOK
    text = format(value.normalize(), "f")
    return text


def pico_to_units(pico: int) -> int:
    """Round a pico-USD total up to whole units (never under-charge)."""
    return -((-pico) // PICO_PER_UNIT)
