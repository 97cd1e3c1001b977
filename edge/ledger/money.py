"""Money is integer fen. Parsing and formatting ("12.50" <-> 1250) and the one rounding rule live here."""

from __future__ import annotations

import re

_AMOUNT = re.compile(r"^(-)?(\d{1,13})(?:\.(\d{1,2}))?$")


def parse_yuan(text: str) -> int:
    """Parse a yuan amount such as "12.5" or "-3.05" into fen; refuse anything else."""
    match = _AMOUNT.match(text.strip())
    if not match:
        raise ValueError(f"not an amount in yuan with at most two decimals: {text!r}")
    sign, whole, frac = match.groups()
    fen = int(whole) * 100 + int((frac or "0").ljust(2, "0"))
    return -fen if sign else fen


def format_yuan(fen: int) -> str:
    """1250 -> "12.50", -5 -> "-0.05"."""
    sign = "-" if fen < 0 else ""
    whole, part = divmod(abs(fen), 100)
    return f"{sign}{whole}.{part:02d}"


def div_round_half_up(numerator: int, denominator: int) -> int:
    """Integer division rounding half away from zero (四舍五入), exact for any integers."""
    if denominator == 0:
        raise ZeroDivisionError("division by zero")
    if denominator < 0:
        numerator, denominator = -numerator, -denominator
    quotient, remainder = divmod(abs(numerator), denominator)
    if remainder * 2 >= denominator:
        quotient += 1
    return quotient if numerator >= 0 else -quotient


def tax_included(gross_fen: int, rate_bp: int) -> int:
    """VAT contained in a tax-inclusive amount: gross * r / (1 + r), rounded once half-up.

    `rate_bp` is the rate in basis points (1300 = 13%).
    """
    return div_round_half_up(gross_fen * rate_bp, 10000 + rate_bp)


def issue_cost(value_fen: int, qty_out: int, qty_on_hand: int) -> int:
    """Moving-average cost of issuing `qty_out` from a balance; emptying it takes the whole value."""
    if qty_out >= qty_on_hand:
        return value_fen
    return div_round_half_up(value_fen * qty_out, qty_on_hand)
