"""Balances as seen while a document is being posted: the database plus this document's own moves.

A document's lines can touch the same balance several times; the book keeps the pending quantities
and values so that every issue is costed against what is really on hand at that point.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import date

from edge.ledger.errors import InsufficientStock, LotExpired
from edge.ledger.money import div_round_half_up, issue_cost, tax_included

BalanceKey = tuple[str, str, str]  # sku, location, lot


@dataclass(frozen=True, slots=True)
class Move:
    line_no: int
    sku: str
    location: str
    lot: str
    qty: int  # signed base units
    value_fen: int  # signed


@dataclass(frozen=True, slots=True)
class LotStock:
    lot: str
    expiry: str | None
    qty: int


class StockBook:
    """Pending balances for one posting; see the module docstring."""

    def __init__(self, conn: sqlite3.Connection, *, business_date: date, allow_negative: bool = False) -> None:
        self._conn = conn
        self._today = business_date.isoformat()
        self._allow_negative = allow_negative
        self._balances: dict[BalanceKey, list[int]] = {}
        self.moves: list[Move] = []

    def balance(self, sku: str, location: str, lot: str) -> tuple[int, int]:
        key = (sku, location, lot)
        if key not in self._balances:
            row = self._conn.execute(
                "SELECT qty, value_fen FROM balances WHERE sku = ? AND location = ? AND lot = ?", key
            ).fetchone()
            self._balances[key] = [int(row[0]), int(row[1])] if row else [0, 0]
        qty, value = self._balances[key]
        return qty, value

    def lots(self, sku: str, location: str) -> list[LotStock]:
        """Lots of an item on hand at a location, first expiry first (no expiry last)."""
        rows = self._conn.execute(
            "SELECT b.lot, l.expiry, b.qty, b.value_fen FROM balances b"
            " LEFT JOIN lots l ON l.sku = b.sku AND l.lot = b.lot WHERE b.sku = ? AND b.location = ?",
            (sku, location),
        ).fetchall()
        expiries = {row[0]: row[1] for row in rows}
        for row in rows:
            self._balances.setdefault((sku, location, row[0]), [int(row[2]), int(row[3])])
        for s, loc, lot in self._balances:
            if s == sku and loc == location and lot not in expiries:
                expiries[lot] = self._lot_expiry(sku, lot)
        found = [LotStock(lot, expiry, self.balance(sku, location, lot)[0]) for lot, expiry in expiries.items()]
        found = [lot for lot in found if lot.qty > 0]
        found.sort(key=lambda s: (s.expiry is None, s.expiry or "", s.lot))
        return found

    def _lot_expiry(self, sku: str, lot: str) -> str | None:
        row = self._conn.execute("SELECT expiry FROM lots WHERE sku = ? AND lot = ?", (sku, lot)).fetchone()
        return row[0] if row else None

    def is_expired(self, expiry: str | None) -> bool:
        return expiry is not None and expiry < self._today

    def receive(self, line_no: int, sku: str, location: str, lot: str, qty: int, value: int) -> None:
        """Put `qty` with `value` into a balance."""
        balance = self.balance(sku, location, lot)
        self._balances[(sku, location, lot)] = [balance[0] + qty, balance[1] + value]
        self.moves.append(Move(line_no, sku, location, lot, qty, value))

    def issue(self, line_no: int, sku: str, location: str, lot: str, qty: int, value: int | None = None) -> int:
        """Take `qty` out of a balance at moving-average cost (or at `value`); return the value taken."""
        on_hand, on_value = self.balance(sku, location, lot)
        if qty > on_hand and not self._allow_negative:
            raise InsufficientStock(sku, location, qty, max(on_hand, 0), lot or None)
        if value is None:
            value = issue_cost(on_value, qty, on_hand) if on_hand > 0 else 0
        self._balances[(sku, location, lot)] = [on_hand - qty, on_value - value]
        self.moves.append(Move(line_no, sku, location, lot, -qty, -value))
        return value

    def allocate(self, sku: str, location: str, qty: int, *, sellable_only: bool) -> list[tuple[str, int]]:
        """Split `qty` over lots first-expiry-first-out; expired lots are skipped when `sellable_only`."""
        lots = self.lots(sku, location)
        usable = [s for s in lots if not (sellable_only and self.is_expired(s.expiry))]
        available = sum(s.qty for s in usable)
        if available < qty:
            if self._allow_negative:
                # Take what there is, the rest from the last lot (or the no-lot balance) into negative.
                short = [(s.lot, s.qty) for s in usable]
                short.append((usable[-1].lot if usable else "", qty - available))
                return _merge(short)
            if sellable_only and len(usable) < len(lots) and available == 0:
                expired = next(s for s in lots if self.is_expired(s.expiry))
                raise LotExpired(sku, expired.lot, expired.expiry or "")
            raise InsufficientStock(sku, location, qty, available)
        parts: list[tuple[str, int]] = []
        remaining = qty
        for stock in usable:
            if remaining == 0:
                break
            take = min(stock.qty, remaining)
            parts.append((stock.lot, take))
            remaining -= take
        return parts

    def check_lot_sellable(self, sku: str, lot: str) -> None:
        expiry = self._lot_expiry(sku, lot)
        if self.is_expired(expiry):
            raise LotExpired(sku, lot, expiry or "")

    def unit_value(self, sku: str, location: str, lot: str, qty: int, fallback_cost_fen: int, vat_bp: int) -> int:
        """Value of `qty` coming in at the current average cost: this balance, the item, or its cost price."""
        on_hand, on_value = self.balance(sku, location, lot)
        if on_hand > 0:
            return div_round_half_up(on_value * qty, on_hand)
        row = self._conn.execute(
            "SELECT COALESCE(SUM(qty), 0), COALESCE(SUM(value_fen), 0) FROM balances WHERE sku = ? AND qty > 0",
            (sku,),
        ).fetchone()
        if row[0] > 0:
            return div_round_half_up(int(row[1]) * qty, int(row[0]))
        net = fallback_cost_fen - tax_included(fallback_cost_fen, vat_bp)
        return net * qty

    def touched(self) -> list[BalanceKey]:
        return list(self._balances)


def _merge(parts: list[tuple[str, int]]) -> list[tuple[str, int]]:
    merged: dict[str, int] = {}
    for lot, qty in parts:
        merged[lot] = merged.get(lot, 0) + qty
    return [(lot, qty) for lot, qty in merged.items() if qty > 0]
