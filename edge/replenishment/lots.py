"""Stock that expires before it can be sold (临期库存): lots on hand consumed first-expiry-first-out by the forecast.

A lot with `days_left` days to its expiry can be sold on days 0..days_left (a lot is sellable on its expiry date;
edge.ledger.stockbook refuses it the day after). What the forecast demand of those days does not take of it,
after the lots that expire before it, is counted as expiring. A lot already past its expiry is expiring whole;
a lot that outlives the horizon (or has no finite expiry) is taken as sold.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def expiring_quantity(
    demand: np.ndarray,  # (n, H) float64 expected daily demand
    lots_days_left: np.ndarray,  # (m,) float64 days to expiry of each lot
    lots_qty: np.ndarray,  # (m,) float64
    lots_row: np.ndarray,  # (m,) int64 row of each lot, sorted by row then days left
) -> np.ndarray:
    """Per row (n,): the quantity on hand in lots that will expire unsold."""
    n, horizon = demand.shape
    out = np.zeros(n, dtype=np.float64)
    cumulative = np.zeros(horizon + 1, dtype=np.float64)
    current = -1
    consumed = 0.0
    for j in range(lots_qty.shape[0]):
        row = lots_row[j]
        if row < 0 or row >= n:
            continue
        if row != current:
            current = row
            consumed = 0.0
            for h in range(horizon):
                cumulative[h + 1] = cumulative[h] + max(demand[row, h], 0.0)
        qty = max(lots_qty[j], 0.0)
        left = lots_days_left[j]
        if left < 0:
            out[row] += qty
            continue
        # A lot that outlives the horizon (or never expires: inf, NaN) is taken as sold.
        sold = min(qty, max(cumulative[int(left) + 1] - consumed, 0.0)) if left < horizon else qty
        consumed += sold
        out[row] += qty - sold
    return out


def expiring_quantity_reference(
    demand: np.ndarray, lots_days_left: np.ndarray, lots_qty: np.ndarray, lots_row: np.ndarray
) -> np.ndarray:
    """Plain Python twin of `expiring_quantity` (the tests compare the two)."""
    n, horizon = demand.shape
    out = np.zeros(n, dtype=np.float64)
    consumed: dict[int, float] = {}
    for left, qty, row in zip(lots_days_left.tolist(), lots_qty.tolist(), lots_row.tolist(), strict=True):
        if not 0 <= row < n:
            continue
        qty = max(qty, 0.0)
        if left < 0:
            out[row] += qty
            continue
        if not left < horizon:
            sold = qty
        else:
            days = int(left) + 1
            available = float(np.maximum(demand[row, :days], 0.0).sum()) - consumed.get(row, 0.0)
            sold = min(qty, max(available, 0.0))
        consumed[row] = consumed.get(row, 0.0) + sold
        out[row] += qty - sold
    return out
