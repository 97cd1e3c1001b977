"""An independent reference of the ledger for the property tests: what every command should do.

Written from DESIGN.md's ledger rules (integer fen, one half-up rounding at the line, moving average,
FEFO, refusals) and the documented behaviour of each document type. It imports nothing from
edge.ledger.money, stockbook or posting, so a mistake in either shows as a disagreement with the other.
Exact arithmetic uses fractions.Fraction and decimal ROUND_HALF_UP.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction
from typing import Any

from edge.ledger.commands import Line, PostDocument, ReverseDocument
from tests.edge.ledger.sample_store import ItemSpec

Key = tuple[str, str, str]  # sku, location, lot

TAXED = {"purchase_order", "receipt", "sale", "customer_return", "supplier_return"}
RETURN_REASONS = {
    "damaged_packaging": "damaged_packaging",
    "taste": "taste",
    "late_delivery": "late_delivery",
    "quality": "quality",
    "other": "other",
    "包装破损": "damaged_packaging",
    "口味不符": "taste",
    "物流超时": "late_delivery",
    "质量问题": "quality",
    "其他": "other",
}
WRITE_OFF_REASONS = {"expired", "damaged", "spoiled", "theft", "other"}
PAYMENTS = {"cash", "card", "bank", "wechat", "alipay"}
MAX_QTY = 10_000_000
MAX_PRICE_FEN = 1_000_000_000


def half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half away from zero, exactly (Fraction)."""
    exact = Fraction(numerator, denominator)
    magnitude = math.floor(abs(exact) + Fraction(1, 2))
    return magnitude if exact >= 0 else -magnitude


def vat_included(gross_fen: int, rate_bp: int) -> int:
    """VAT inside a tax-inclusive amount, gross * r / (1 + r), rounded once half-up (decimal)."""
    with localcontext() as ctx:
        ctx.prec = 80
        exact = Decimal(gross_fen) * Decimal(rate_bp) / Decimal(10000 + rate_bp)
        return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def moving_average_cost(value_fen: int, qty_out: int, qty_on_hand: int) -> int:
    """DESIGN.md: issue cost = round(value * qty_out / qty_on_hand); emptying takes the whole value."""
    if qty_out >= qty_on_hand:
        return value_fen
    return half_up(value_fen * qty_out, qty_on_hand)


@dataclass(frozen=True, slots=True)
class Move:
    line_no: int
    sku: str
    location: str
    lot: str
    qty: int
    value_fen: int


@dataclass(frozen=True, slots=True)
class ExpectedLine:
    line_no: int
    sku: str
    unit: str
    qty: int
    qty_base: int
    price_fen: int | None
    gross_fen: int
    tax_fen: int
    lot: str | None
    location: str


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str
    detail: dict[str, Any] = field(default_factory=dict)


class Refused(Exception):
    def __init__(self, code: str, **detail: Any) -> None:
        super().__init__(code)
        self.refusal = Refusal(code, detail)


@dataclass(frozen=True, slots=True)
class Expected:
    """What a command should do: a refusal, or the document it posts."""

    refusal: Refusal | None = None
    type: str = ""
    ref_id: int | None = None
    reverses_id: int | None = None
    lines: tuple[ExpectedLine, ...] = ()
    moves: tuple[Move, ...] = ()
    lot_expiry: Mapping[tuple[str, str], str | None] = field(default_factory=dict)


@dataclass(slots=True)
class Document:
    id: int
    type: str
    ref_id: int | None
    moves: tuple[Move, ...]
    reversed_by: int | None = None


class _Book:
    """Balances while one document is simulated: the reference's balances plus the document's own moves."""

    def __init__(self, ledger: ReferenceLedger, today: date) -> None:
        self.start = ledger.balances
        self.pending = dict(ledger.balances)
        self.lot_expiry = dict(ledger.lot_expiry)
        self.today = today.isoformat()
        self.moves: list[Move] = []

    def balance(self, key: Key) -> tuple[int, int]:
        return self.pending.get(key, (0, 0))

    def receive(self, line_no: int, key: Key, qty: int, value: int) -> None:
        q, v = self.balance(key)
        self.pending[key] = (q + qty, v + value)
        self.moves.append(Move(line_no, *key, qty, value))

    def issue(self, line_no: int, key: Key, qty: int, value: int | None = None) -> int:
        on_hand, on_value = self.balance(key)
        if qty > on_hand:
            raise Refused(
                "insufficient_stock",
                item=key[0],
                location=key[1],
                lot=key[2] or None,
                requested=qty,
                shortfall=qty - max(on_hand, 0),
            )
        if value is None:
            value = moving_average_cost(on_value, qty, on_hand) if on_hand > 0 else 0
        self.pending[key] = (on_hand - qty, on_value - value)
        self.moves.append(Move(line_no, *key, -qty, -value))
        return value

    def expired(self, sku: str, lot: str) -> bool:
        expiry = self.lot_expiry.get((sku, lot))
        return expiry is not None and expiry < self.today

    def lots(self, sku: str, location: str) -> list[tuple[str, str | None, int]]:
        """(lot, expiry, qty) with stock, first expiry first, lots without expiry last."""
        found = [
            (key[2], self.lot_expiry.get((sku, key[2])), q)
            for key, (q, _) in self.pending.items()
            if key[0] == sku and key[1] == location and q > 0
        ]
        return sorted(found, key=lambda s: (s[1] is None, s[1] or "", s[0]))

    def allocate(self, sku: str, location: str, qty: int, *, sellable_only: bool) -> list[tuple[str, int]]:
        lots = self.lots(sku, location)
        usable = [s for s in lots if not (sellable_only and self.expired(sku, s[0]))]
        available = sum(s[2] for s in usable)
        if available < qty:
            if sellable_only and available == 0 and len(usable) < len(lots):
                first_expired = next(s for s in lots if self.expired(sku, s[0]))
                raise Refused("lot_expired", item=sku, lot=first_expired[0])
            raise Refused("insufficient_stock", item=sku, location=location, lot=None, shortfall=qty - available)
        parts: list[tuple[str, int]] = []
        remaining = qty
        for lot, _, on_hand in usable:
            if remaining == 0:
                break
            take = min(on_hand, remaining)
            parts.append((lot, take))
            remaining -= take
        return parts

    def unit_value(self, key: Key, qty: int, item: ItemSpec) -> int:
        """Incoming value at the average cost of this balance, else of the item (as stored), else its net cost."""
        on_hand, on_value = self.balance(key)
        if on_hand > 0:
            return half_up(on_value * qty, on_hand)
        stocked = [(q, v) for k, (q, v) in self.start.items() if k[0] == key[0] and q > 0]
        total_qty = sum(q for q, _ in stocked)
        if total_qty > 0:
            return half_up(sum(v for _, v in stocked) * qty, total_qty)
        return (item.cost_fen - vat_included(item.cost_fen, item.vat_rate_bp)) * qty


class ReferenceLedger:
    """The ledger as it should be, kept beside the real one and advanced only when both agree."""

    def __init__(
        self,
        items: Iterable[ItemSpec],
        locations: Mapping[str, str],
        suppliers: Iterable[str],
        stores: Iterable[str],
    ) -> None:
        self.items = {item.sku: item for item in items}
        self.barcodes = {code: (item.sku, unit) for item in self.items.values() for code, unit in item.barcodes.items()}
        self.locations = dict(locations)  # code -> kind
        self.suppliers = set(suppliers)
        self.stores = set(stores)
        self.balances: dict[Key, tuple[int, int]] = {}
        self.lot_expiry: dict[tuple[str, str], str | None] = {}
        self.documents: dict[int, Document] = {}

    # --- outcome of a command -----------------------------------------------------------------

    def expect(self, command: PostDocument | ReverseDocument, today: date) -> Expected:
        try:
            if isinstance(command, ReverseDocument):
                return self._reverse(command, today)
            return self._document(command, today)
        except Refused as refused:
            return Expected(refusal=refused.refusal)

    def apply(self, document_id: int, expected: Expected) -> None:
        """Advance the reference by a document the ledger posted as expected."""
        for m in expected.moves:
            key = (m.sku, m.location, m.lot)
            q, v = self.balances.get(key, (0, 0))
            if (q + m.qty, v + m.value_fen) == (0, 0):
                self.balances.pop(key, None)
            else:
                self.balances[key] = (q + m.qty, v + m.value_fen)
        self.lot_expiry = dict(expected.lot_expiry)
        self.documents[document_id] = Document(document_id, expected.type, expected.ref_id, expected.moves)
        if expected.reverses_id is not None:
            self.documents[expected.reverses_id].reversed_by = document_id

    # --- documents ----------------------------------------------------------------------------

    def _document(self, cmd: PostDocument, today: date) -> Expected:
        doc_type = str(cmd.type)
        self._check_command(cmd, doc_type)
        self._check_reason(cmd, doc_type)
        self._check_counterparty(cmd, doc_type)
        if cmd.payment is not None and cmd.payment not in PAYMENTS:
            raise Refused("invalid_command")
        if cmd.ref_id is not None and cmd.ref_id not in self.documents:
            raise Refused("unknown_document", document=cmd.ref_id)
        for code in (cmd.location, cmd.to_location):
            if code is not None:
                self._location(code)
        lines = self._resolve(cmd, doc_type)
        book = _Book(self, today)
        handler = getattr(self, f"_{doc_type}")
        handler(cmd, lines, book, today)
        return Expected(
            type=doc_type,
            ref_id=cmd.ref_id,
            lines=tuple(lines),
            moves=tuple(book.moves),
            lot_expiry=book.lot_expiry,
        )

    def _check_command(self, cmd: PostDocument, doc_type: str) -> None:
        if not cmd.key or len(cmd.key) > 300 or doc_type == "reversal" or not cmd.lines or len(cmd.lines) > 1000:
            raise Refused("invalid_command")
        for text in (cmd.reason_text, cmd.note, cmd.counterparty, cmd.payment, cmd.actor, cmd.device):
            if text is not None and len(text) > 500:
                raise Refused("invalid_command")
        minimum = 0 if doc_type == "stocktake" else 1
        for line in cmd.lines:
            if not minimum <= line.qty <= MAX_QTY:
                raise Refused("invalid_command", field="qty")
            if line.price_fen is not None and not 0 <= line.price_fen <= MAX_PRICE_FEN:
                raise Refused("invalid_command", field="price_fen")
            if not 1 <= len(line.code) <= 64 or (line.lot is not None and not 1 <= len(line.lot) <= 64):
                raise Refused("invalid_command")

    def _check_reason(self, cmd: PostDocument, doc_type: str) -> None:
        if doc_type == "customer_return":
            code = RETURN_REASONS.get(cmd.reason or "")
        elif doc_type == "write_off":
            code = cmd.reason if cmd.reason in WRITE_OFF_REASONS else None
        else:
            return
        if code is None:
            raise Refused("invalid_command", field="reason")
        if code == "other" and not (cmd.reason_text or "").strip():
            raise Refused("invalid_command", field="reason_text")

    def _check_counterparty(self, cmd: PostDocument, doc_type: str) -> None:
        if cmd.counterparty is None:
            if doc_type == "purchase_order":
                raise Refused("invalid_command", field="counterparty")
            return
        if doc_type in ("purchase_order", "receipt", "supplier_return") and cmd.counterparty not in self.suppliers:
            raise Refused("invalid_command", field="counterparty")
        if doc_type in ("transfer_out", "transfer_in") and cmd.counterparty not in self.stores:
            raise Refused("invalid_command", field="counterparty")

    def _location(self, code: str, *, allow_transit: bool = False) -> str:
        kind = self.locations.get(code)
        if kind is None:
            raise Refused("unknown_location", location=code)
        if kind == "transit" and not allow_transit:
            raise Refused("invalid_command", location=code)
        return code

    def _resolve(self, cmd: PostDocument, doc_type: str) -> list[ExpectedLine]:
        if doc_type == "transfer_in":
            default_location = cmd.to_location or cmd.location or "floor"
        else:
            default_location = cmd.location or "floor"
        lines = []
        for i, line in enumerate(cmd.lines, start=1):
            if line.code in self.barcodes:
                sku, code_unit = self.barcodes[line.code]
            elif line.code in self.items:
                sku = line.code
                code_unit = self.items[sku].base_unit
            else:
                raise Refused("unknown_item", item=line.code)
            item = self.items[sku]
            unit = line.unit or code_unit
            factors = {item.base_unit: 1, **item.units}
            if unit not in factors:
                raise Refused("unknown_unit", item=sku, unit=unit)
            qty_base = line.qty * factors[unit]
            if qty_base > MAX_QTY * 1000:
                raise Refused("invalid_command")
            price = line.price_fen
            if price is None and doc_type in ("sale", "customer_return"):
                price = item.price_fen * factors[unit]
            elif price is None and doc_type in ("purchase_order", "receipt", "supplier_return"):
                price = item.cost_fen * factors[unit]
            gross = line.qty * price if price is not None else 0
            tax = vat_included(gross, item.vat_rate_bp) if doc_type in TAXED else 0
            lines.append(
                ExpectedLine(
                    i, sku, unit, line.qty, qty_base, price, gross, tax, line.lot, line.location or default_location
                )
            )
        return lines

    def _referenced(self, ref_id: int | None, expected_type: str) -> Document | None:
        if ref_id is None:
            return None
        document = self.documents.get(ref_id)
        if document is None:
            raise Refused("unknown_document", document=ref_id)
        if document.type != expected_type or document.reversed_by is not None:
            raise Refused("invalid_command")
        return document

    def _receipt_lot(self, book: _Book, line: ExpectedLine, given: Line, today: date) -> str:
        item = self.items[line.sku]
        if given.lot is None and given.expiry is None and item.shelf_life_days is None:
            return ""
        if given.expiry is not None:
            expiry: str | None = given.expiry.isoformat()
        elif item.shelf_life_days is not None:
            expiry = (today + timedelta(days=item.shelf_life_days)).isoformat()
        else:
            expiry = None
        lot = given.lot or (expiry or today.isoformat()).replace("-", "")
        recorded = book.lot_expiry.setdefault((line.sku, lot), expiry)
        if given.expiry is not None and recorded != given.expiry.isoformat():
            raise Refused("invalid_command", lot=lot)
        return lot

    def _issue_line(self, book: _Book, line: ExpectedLine, location: str, *, sellable_only: bool) -> list[Move]:
        if line.lot is not None:
            if sellable_only and book.expired(line.sku, line.lot):
                raise Refused("lot_expired", item=line.sku, lot=line.lot)
            parts = [(line.lot, line.qty_base)]
        else:
            parts = book.allocate(line.sku, location, line.qty_base, sellable_only=sellable_only)
        for lot, qty in parts:
            book.issue(line.line_no, (line.sku, location, lot), qty)
        return book.moves[-len(parts) :] if parts else []

    def _purchase_order(self, cmd: PostDocument, lines: list[ExpectedLine], book: _Book, today: date) -> None:
        for line in lines:
            self._location(line.location)

    def _receipt(self, cmd: PostDocument, lines: list[ExpectedLine], book: _Book, today: date) -> None:
        self._referenced(cmd.ref_id, "purchase_order")
        for line, given in zip(lines, cmd.lines, strict=True):
            location = self._location(line.location)
            lot = self._receipt_lot(book, line, given, today)
            book.receive(line.line_no, (line.sku, location, lot), line.qty_base, line.gross_fen - line.tax_fen)

    def _outbound(self, lines: list[ExpectedLine], book: _Book, *, sellable_only: bool) -> None:
        for line in lines:
            location = self._location(line.location)
            self._issue_line(book, line, location, sellable_only=sellable_only)

    def _sale(self, cmd: PostDocument, lines: list[ExpectedLine], book: _Book, today: date) -> None:
        self._outbound(lines, book, sellable_only=True)

    def _write_off(self, cmd: PostDocument, lines: list[ExpectedLine], book: _Book, today: date) -> None:
        self._outbound(lines, book, sellable_only=False)

    def _supplier_return(self, cmd: PostDocument, lines: list[ExpectedLine], book: _Book, today: date) -> None:
        self._outbound(lines, book, sellable_only=False)

    def _transfer_out(self, cmd: PostDocument, lines: list[ExpectedLine], book: _Book, today: date) -> None:
        for line in lines:
            location = self._location(line.location)
            for issued in self._issue_line(book, line, location, sellable_only=True):
                book.receive(line.line_no, (line.sku, "transit", issued.lot), -issued.qty, -issued.value_fen)

    def _transfer_in(self, cmd: PostDocument, lines: list[ExpectedLine], book: _Book, today: date) -> None:
        origin = self._referenced(cmd.ref_id, "transfer_out")
        for line, given in zip(lines, cmd.lines, strict=True):
            destination = self._location(line.location)
            if origin is not None:
                for issued in self._issue_line(book, line, "transit", sellable_only=False):
                    book.receive(line.line_no, (line.sku, destination, issued.lot), -issued.qty, -issued.value_fen)
                continue
            lot = self._receipt_lot(book, line, given, today) if (given.lot or given.expiry) else ""
            key = (line.sku, destination, lot)
            if given.price_fen is not None:
                value = given.qty * given.price_fen
            else:
                value = book.unit_value(key, line.qty_base, self.items[line.sku])
            book.receive(line.line_no, key, line.qty_base, value)

    def _stocktake(self, cmd: PostDocument, lines: list[ExpectedLine], book: _Book, today: date) -> None:
        seen: set[tuple[str, str, str | None]] = set()
        for line in lines:
            location = self._location(line.location)
            if (line.sku, location, line.lot) in seen:
                raise Refused("invalid_command", line=line.line_no)
            seen.add((line.sku, location, line.lot))
            if line.lot is not None:
                counted_lots = [line.lot]
                book_qty = book.balance((line.sku, location, line.lot))[0]
            else:
                stock = book.lots(line.sku, location)
                counted_lots = [s[0] for s in stock]
                book_qty = sum(s[2] for s in stock)
            diff = line.qty_base - book_qty
            if diff > 0:
                lot = line.lot if line.lot is not None else (counted_lots[-1] if counted_lots else "")
                key = (line.sku, location, lot)
                book.receive(line.line_no, key, diff, book.unit_value(key, diff, self.items[line.sku]))
            elif diff < 0 and line.lot is not None:
                book.issue(line.line_no, (line.sku, location, line.lot), -diff)
            elif diff < 0:
                for lot, qty in book.allocate(line.sku, location, -diff, sellable_only=False):
                    book.issue(line.line_no, (line.sku, location, lot), qty)

    def _customer_return(self, cmd: PostDocument, lines: list[ExpectedLine], book: _Book, today: date) -> None:
        sale = self._referenced(cmd.ref_id, "sale")
        returned_here: dict[str, tuple[int, int]] = {}
        for line in lines:
            location = self._location(line.location)
            if sale is None:
                key = (line.sku, location, line.lot or "")
                book.receive(
                    line.line_no, key, line.qty_base, book.unit_value(key, line.qty_base, self.items[line.sku])
                )
                continue
            sold = [m for m in sale.moves if m.sku == line.sku]
            sold_qty = -sum(m.qty for m in sold)
            sold_value = -sum(m.value_fen for m in sold)
            standing = [
                m
                for d in self.documents.values()
                if d.type == "customer_return" and d.ref_id == sale.id and d.reversed_by is None
                for m in d.moves
                if m.sku == line.sku
            ]
            here_qty, here_value = returned_here.get(line.sku, (0, 0))
            returned_qty = sum(m.qty for m in standing) + here_qty
            returned_value = sum(m.value_fen for m in standing) + here_value
            if line.qty_base > sold_qty - returned_qty:
                raise Refused("invalid_command", line=line.line_no, item=line.sku)
            # The cost comes back at the sale's cost; the return of all that is left takes all that is left.
            value = moving_average_cost(sold_value - returned_value, line.qty_base, sold_qty - returned_qty)
            returned_here[line.sku] = (here_qty + line.qty_base, here_value + value)
            lot = line.lot or min(m.lot for m in sold)
            book.receive(line.line_no, (line.sku, location, lot), line.qty_base, value)

    # --- reversal -----------------------------------------------------------------------------

    def _reverse(self, cmd: ReverseDocument, today: date) -> Expected:
        if not cmd.key or len(cmd.key) > 300 or (cmd.reason_text is not None and len(cmd.reason_text) > 500):
            raise Refused("invalid_command")
        original = self.documents.get(cmd.document_id)
        if original is None:
            raise Refused("unknown_document", document=cmd.document_id)
        if original.type == "reversal":
            raise Refused("not_reversible", document=cmd.document_id)
        if original.reversed_by is not None:
            raise Refused("already_reversed", document=cmd.document_id, reversed_by=original.reversed_by)
        if original.type != "purchase_order" and any(
            d.ref_id == original.id and d.reversed_by is None for d in self.documents.values()
        ):
            raise Refused("not_reversible", document=cmd.document_id)
        book = _Book(self, today)
        # What went out comes back first, so that what came in is always there to take back.
        for m in sorted(original.moves, key=lambda m: m.qty > 0):
            key = (m.sku, m.location, m.lot)
            if m.qty < 0:
                book.receive(m.line_no, key, -m.qty, -m.value_fen)
                continue
            on_hand, on_value = book.balance(key)
            keep_original = m.qty < on_hand and on_value - m.value_fen >= 0
            book.issue(m.line_no, key, m.qty, m.value_fen if keep_original else None)
        return Expected(
            type="reversal",
            reverses_id=original.id,
            moves=tuple(book.moves),
            lot_expiry=book.lot_expiry,
        )
