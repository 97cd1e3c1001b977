"""Money is the books: a role without `amounts:read` (the clerk) reads documents and purchase orders with every
amount withheld (each `*_fen` field null), and no voucher. Quantities, items, lots and dates stay. (Stock rows keep
their `value_fen`: it is part of their contract since the first API; the page shows it only with stock:valuation.)"""

from __future__ import annotations

from typing import TypeVar

from edge.security.roles import has_permission
from edge.security.users import User

AMOUNTS = "amounts:read"
T = TypeVar("T")


def withhold_amounts(value: T) -> T:
    """`value` with every `*_fen` field, at any depth, set to None."""
    if isinstance(value, dict):
        return {k: None if k.endswith("_fen") else withhold_amounts(v) for k, v in value.items()}  # type: ignore[return-value]
    if isinstance(value, list):
        return [withhold_amounts(v) for v in value]  # type: ignore[return-value]
    return value


def as_seen_by(user: User, value: T) -> T:
    """`value` as `user` may read it: unchanged for roles that see amounts, amounts withheld otherwise."""
    return value if has_permission(user.role, AMOUNTS) else withhold_amounts(value)
