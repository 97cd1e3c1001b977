"""Advance shipping notices (发货通知, ASN): a supplier announces what it ships against one of its purchase orders.

`record_asn` validates an ASN against the PO and the item master and stores it (or a new revision of it);
every problem is collected with its line number and reported at once as one `AsnRejected`. Pure over a
connection: the caller owns the transaction (the writer) and passes the time.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any, NamedTuple

from edge.devices.barcodes import gs1_check_digit, is_valid_gtin
from edge.ledger.errors import DomainError, LedgerError
from edge.ledger.masterdata import ItemRef, resolve_item

MAX_ASN_LINES = 1000
MAX_QTY = 10_000_000
MAX_PRICE_FEN = 1_000_000_000
MAX_NOTE = 500
ASN_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
LOT = re.compile(r"^[A-Za-z0-9._/-]{1,64}$")


class AsnState(StrEnum):
    """Where an ASN stands on the box."""

    OPEN = "open"  # announced; nothing received against it yet (a new revision may replace it)
    RECEIVED = "received"  # a receipt was posted against it; it can no longer change


class RecordOutcome(StrEnum):
    """What one `record_asn` call did."""

    CREATED = "created"
    UNCHANGED = "unchanged"  # the same ASN id with the same content: nothing written
    REVISED = "revised"  # the same ASN id with other content, while nothing was received: a new revision
    STORED = "stored"  # read back by get_asn / list_asns


@dataclass(frozen=True, slots=True)
class AsnLine:
    """One line as the supplier sends it. `code` is a SKU, a barcode or a GTIN-14; `qty` is in `unit` (default:
    the barcode's unit, else the item's base unit); `expiry` is the lot's best-before / use-by date."""

    code: str
    qty: int
    unit: str | None = None
    lot: str | None = None
    expiry: date | None = None
    price_fen: int | None = None  # unit price incl. VAT per `unit`, informational (the PO's price books)


@dataclass(frozen=True, slots=True)
class AsnInput:
    """An ASN as the supplier sends it: its own id, the PO (document id on the box), ship date and lines."""

    asn_id: str
    po_id: int
    ship_date: date
    lines: tuple[AsnLine, ...]
    note: str | None = None


class AsnProblem(NamedTuple):
    """One reason an ASN is refused. `line` is the 1-based line number, or None for the ASN as a whole."""

    line: int | None
    code: str
    message: str
    message_en: str


@dataclass(frozen=True, slots=True)
class AsnRecordLine:
    """A stored ASN line, resolved to the item; `qty_base` in the item's base unit."""

    line_no: int
    code: str
    sku: str
    unit: str
    qty: int
    qty_base: int
    lot: str | None
    expiry: date | None
    price_fen: int | None


@dataclass(frozen=True, slots=True)
class Difference:
    """What a receipt found against what was expected (PO / ASN / delivery note), by item and lot.

    kind: `short` (fewer than expected), `over` (more), `wrong_lot` (a lot that was not announced), `expired`
    (expiry before the receipt's business date), `not_on_po` (an item the PO does not order).
    """

    kind: str
    sku: str
    expected_base: int
    received_base: int
    lot: str | None = None
    expiry: date | None = None
    line_no: int | None = None  # expected line (ASN / note), when the difference is about one

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "sku": self.sku,
            "expected": self.expected_base,
            "received": self.received_base,
            "lot": self.lot,
            "expiry": self.expiry.isoformat() if self.expiry else None,
            "line_no": self.line_no,
        }


@dataclass(frozen=True, slots=True)
class AsnRecord:
    """An ASN as stored on the box (latest revision), with what became of it."""

    supplier: str
    asn_id: str
    revision: int
    po_id: int
    po_no: str
    ship_date: date
    state: AsnState
    lines: tuple[AsnRecordLine, ...]
    note: str | None
    recorded_at: datetime
    outcome: RecordOutcome = RecordOutcome.STORED
    receipt_ids: tuple[int, ...] = ()
    differences: tuple[Difference, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "supplier": self.supplier,
            "asn_id": self.asn_id,
            "revision": self.revision,
            "po_id": self.po_id,
            "po_no": self.po_no,
            "ship_date": self.ship_date.isoformat(),
            "state": self.state.value,
            "note": self.note,
            "recorded_at": self.recorded_at.isoformat(),
            "outcome": self.outcome.value,
            "receipt_ids": list(self.receipt_ids),
            "lines": [
                {
                    "line_no": line.line_no,
                    "code": line.code,
                    "sku": line.sku,
                    "unit": line.unit,
                    "qty": line.qty,
                    "qty_base": line.qty_base,
                    "lot": line.lot,
                    "expiry": line.expiry.isoformat() if line.expiry else None,
                    "price_fen": line.price_fen,
                }
                for line in self.lines
            ],
            "differences": [d.to_dict() for d in self.differences],
        }


class AsnError(DomainError):
    """Base of the refusals about ASNs."""

    code = "asn_error"


class AsnRejected(AsnError):
    """An ASN refused for one or more reasons, all listed in `problems` (line, code, message, message_en)."""

    code = "asn_rejected"
    status = 422

    def __init__(self, problems: Sequence[AsnProblem]) -> None:
        self.problems: tuple[AsnProblem, ...] = tuple(AsnProblem(*p) for p in problems)
        first = self.problems[0] if self.problems else AsnProblem(None, "invalid_asn", "发货通知无效", "invalid ASN")
        more = len(self.problems) - 1
        zh = (f"第 {first.line} 行: " if first.line else "") + first.message
        en = (f"line {first.line}: " if first.line else "") + first.message_en
        super().__init__(
            f"发货通知被拒绝: {zh}" + (f" (另有 {more} 个问题)" if more > 0 else ""),
            f"ASN refused: {en}" + (f" (and {more} more problems)" if more > 0 else ""),
            problems=[p._asdict() for p in self.problems],
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problems,))


class AsnAlreadyReceived(AsnRejected):
    """Other content under an ASN id that goods were already received against: it cannot be revised."""

    code = "asn_already_received"
    status = 409


class UnknownAsn(AsnError):
    code = "unknown_asn"
    status = 404

    def __init__(self, asn_id: str) -> None:
        super().__init__(f"发货通知不存在: {asn_id}", f"no such ASN: {asn_id}", asn_id=asn_id)


# --- purchase orders as the ASN sees them ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PoItem:
    """One item of a purchase order (its lines of the same item summed), in base units."""

    sku: str
    name: str
    base_unit: str
    ordered_base: int
    received_base: int  # by posted, unreversed receipts with ref_id = the PO
    announced_base: int  # by other open ASNs of the PO
    price_fen: int | None  # the PO's unit price incl. VAT per base unit (first line's, for reference)

    @property
    def remaining_base(self) -> int:
        return max(0, self.ordered_base - self.received_base - self.announced_base)


@dataclass(frozen=True, slots=True)
class OpenPurchaseOrder:
    """A supplier's purchase order that still waits for goods."""

    po_id: int
    po_no: str
    supplier: str
    business_date: date
    items: tuple[PoItem, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "po_id": self.po_id,
            "po_no": self.po_no,
            "supplier": self.supplier,
            "business_date": self.business_date.isoformat(),
            "items": [
                {
                    "sku": i.sku,
                    "name": i.name,
                    "base_unit": i.base_unit,
                    "ordered": i.ordered_base,
                    "received": i.received_base,
                    "announced": i.announced_base,
                    "remaining": i.remaining_base,
                    "price_fen": i.price_fen,
                }
                for i in self.items
            ],
        }


def po_items(conn: sqlite3.Connection, po_id: int, *, except_asn: tuple[str, str] | None = None) -> dict[str, PoItem]:
    """The PO's items by SKU with what was received and what other open ASNs announce (all in base units)."""
    supplier, asn_id = except_asn or ("", "")
    rows = conn.execute(
        "WITH ordered AS (SELECT l.sku, SUM(l.qty_base) AS qty, MIN(l.line_no) AS first_line"
        "  FROM document_lines l WHERE l.document_id = :po GROUP BY l.sku),"
        " received AS (SELECT l.sku, SUM(l.qty_base) AS qty FROM documents d"
        "  JOIN document_lines l ON l.document_id = d.id"
        "  WHERE d.type = 'receipt' AND d.ref_id = :po"
        "  AND NOT EXISTS (SELECT 1 FROM documents r WHERE r.reverses_id = d.id) GROUP BY l.sku),"
        " announced AS (SELECT al.sku, SUM(al.qty_base) AS qty FROM asns a"
        "  JOIN asn_lines al ON al.supplier = a.supplier AND al.asn_id = a.asn_id"
        "  WHERE a.po_id = :po AND a.state = 'open' AND NOT (a.supplier = :sup AND a.asn_id = :asn)"
        "  GROUP BY al.sku)"
        " SELECT o.sku, i.name, i.base_unit, o.qty, COALESCE(r.qty, 0), COALESCE(a.qty, 0),"
        "  (SELECT CASE WHEN pl.price_fen IS NULL THEN NULL ELSE pl.price_fen * pl.qty / pl.qty_base END"
        "   FROM document_lines pl WHERE pl.document_id = :po AND pl.line_no = o.first_line)"
        " FROM ordered o JOIN items i ON i.sku = o.sku"
        " LEFT JOIN received r ON r.sku = o.sku LEFT JOIN announced a ON a.sku = o.sku ORDER BY o.first_line",
        {"po": po_id, "sup": supplier, "asn": asn_id},
    ).fetchall()
    return {row[0]: PoItem(row[0], row[1], row[2], int(row[3]), int(row[4]), int(row[5]), row[6]) for row in rows}


def open_purchase_orders(conn: sqlite3.Connection, supplier: str) -> list[OpenPurchaseOrder]:
    """The supplier's purchase orders that are not reversed and not fully received, oldest first."""
    result = []
    for row in conn.execute(
        "SELECT id, doc_no, business_date FROM documents d WHERE type = 'purchase_order' AND counterparty = ?"
        " AND NOT EXISTS (SELECT 1 FROM documents r WHERE r.reverses_id = d.id) ORDER BY id",
        (supplier,),
    ).fetchall():
        items = po_items(conn, int(row[0]))
        if any(i.ordered_base > i.received_base for i in items.values()):
            result.append(
                OpenPurchaseOrder(int(row[0]), row[1], supplier, date.fromisoformat(row[2]), tuple(items.values()))
            )
    return result


# --- recording ---------------------------------------------------------------------------------


def record_asn(conn: sqlite3.Connection, supplier: str, asn: AsnInput, now: datetime) -> AsnRecord:
    """Validate and store `asn` from `supplier`; see the module docstring.

    The same ASN id with the same content returns the stored record (outcome `unchanged`, nothing written);
    other content is a new revision while nothing was received against it, else `AsnAlreadyReceived`.
    Raises `AsnRejected` with every problem found.
    """
    problems: list[AsnProblem] = []
    fingerprint = asn_fingerprint(asn)
    if not isinstance(asn.asn_id, str) or not ASN_ID.match(asn.asn_id):
        raise AsnRejected(
            [
                AsnProblem(
                    None,
                    "invalid_asn_id",
                    "发货通知编号无效 (字母、数字、. _ -，1 至 64 字符)",
                    "invalid ASN id: letters, digits, . _ - (1 to 64 characters)",
                )
            ]
        )
    if conn.execute("SELECT 1 FROM suppliers WHERE id = ? AND active = 1", (supplier,)).fetchone() is None:
        raise AsnRejected(
            [AsnProblem(None, "unknown_supplier", f"未知供应商: {supplier}", f"unknown supplier: {supplier}")]
        )
    stored = conn.execute(
        "SELECT revision, state, fingerprint FROM asns WHERE supplier = ? AND asn_id = ?", (supplier, asn.asn_id)
    ).fetchone()
    if stored is not None and stored["fingerprint"] == fingerprint:
        record = get_asn(conn, asn.asn_id, supplier=supplier)
        assert record is not None
        return _with_outcome(record, RecordOutcome.UNCHANGED)
    if stored is not None and stored["state"] != AsnState.OPEN:
        raise AsnAlreadyReceived(
            [
                AsnProblem(
                    None,
                    "asn_already_received",
                    f"发货通知 {asn.asn_id} 已收货，不能修改；请用新的发货通知编号",
                    f"goods were already received against ASN {asn.asn_id}; it cannot change, send a new ASN id",
                )
            ]
        )
    po = _purchase_order(conn, supplier, asn.po_id, problems)
    if not isinstance(asn.ship_date, date) or isinstance(asn.ship_date, datetime):
        problems.append(AsnProblem(None, "invalid_ship_date", "发货日期无效", "invalid ship date"))
    if asn.note is not None and (not isinstance(asn.note, str) or len(asn.note) > MAX_NOTE):
        problems.append(
            AsnProblem(
                None, "invalid_note", f"备注过长 (最多 {MAX_NOTE} 字)", f"note longer than {MAX_NOTE} characters"
            )
        )
    if not asn.lines:
        problems.append(AsnProblem(None, "no_lines", "发货通知至少需要一行", "an ASN needs at least one line"))
    elif len(asn.lines) > MAX_ASN_LINES:
        problems.append(
            AsnProblem(
                None, "too_many_lines", f"发货通知最多 {MAX_ASN_LINES} 行", f"an ASN has at most {MAX_ASN_LINES} lines"
            )
        )
        raise AsnRejected(problems)
    items = po_items(conn, asn.po_id, except_asn=(supplier, asn.asn_id)) if po is not None else {}
    resolved = _resolve_lines(conn, asn, items if po is not None else None, problems)
    if problems:
        raise AsnRejected(sorted(problems, key=lambda p: p.line or 0))
    ts = now.isoformat()
    if stored is None:
        revision, outcome = 1, RecordOutcome.CREATED
        conn.execute(
            "INSERT INTO asns (supplier, asn_id, revision, po_id, ship_date, state, note, fingerprint, created_at,"
            " recorded_at) VALUES (?, ?, 1, ?, ?, 'open', ?, ?, ?, ?)",
            (supplier, asn.asn_id, asn.po_id, asn.ship_date.isoformat(), asn.note, fingerprint, ts, ts),
        )
    else:
        revision, outcome = int(stored["revision"]) + 1, RecordOutcome.REVISED
        conn.execute(
            "UPDATE asns SET revision = ?, po_id = ?, ship_date = ?, note = ?, fingerprint = ?, recorded_at = ?"
            " WHERE supplier = ? AND asn_id = ?",
            (revision, asn.po_id, asn.ship_date.isoformat(), asn.note, fingerprint, ts, supplier, asn.asn_id),
        )
        conn.execute("DELETE FROM asn_lines WHERE supplier = ? AND asn_id = ?", (supplier, asn.asn_id))
    conn.executemany(
        "INSERT INTO asn_lines (supplier, asn_id, line_no, code, sku, unit, qty, qty_base, lot, expiry, price_fen)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                supplier,
                asn.asn_id,
                line.line_no,
                line.code,
                line.sku,
                line.unit,
                line.qty,
                line.qty_base,
                line.lot,
                line.expiry.isoformat() if line.expiry else None,
                line.price_fen,
            )
            for line in resolved
        ],
    )
    conn.execute(
        "INSERT INTO asn_revisions (supplier, asn_id, revision, fingerprint, body, recorded_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (supplier, asn.asn_id, revision, fingerprint, _canonical(asn), ts),
    )
    record = get_asn(conn, asn.asn_id, supplier=supplier)
    assert record is not None
    return _with_outcome(record, outcome)


def asn_fingerprint(asn: AsnInput) -> str:
    """sha256 of the ASN's content as sent (what makes a resend the same ASN or a new revision)."""
    return hashlib.sha256(_canonical(asn).encode()).hexdigest()


def _canonical(asn: AsnInput) -> str:
    def iso(value: object) -> object:
        return value.isoformat() if isinstance(value, date) else value

    body = {
        "asn_id": asn.asn_id,
        "po_id": asn.po_id,
        "ship_date": iso(asn.ship_date),
        "note": asn.note,
        "lines": [[ln.code, ln.qty, ln.unit, ln.lot, iso(ln.expiry), ln.price_fen] for ln in asn.lines],
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str)


def _with_outcome(record: AsnRecord, outcome: RecordOutcome) -> AsnRecord:
    return AsnRecord(
        supplier=record.supplier,
        asn_id=record.asn_id,
        revision=record.revision,
        po_id=record.po_id,
        po_no=record.po_no,
        ship_date=record.ship_date,
        state=record.state,
        lines=record.lines,
        note=record.note,
        recorded_at=record.recorded_at,
        outcome=outcome,
        receipt_ids=record.receipt_ids,
        differences=record.differences,
    )


def _purchase_order(
    conn: sqlite3.Connection, supplier: str, po_id: object, problems: list[AsnProblem]
) -> sqlite3.Row | None:
    """The supplier's PO, or None with a problem. Another supplier's PO reads as unknown (it is none of theirs)."""
    row = None
    if isinstance(po_id, int) and not isinstance(po_id, bool) and 0 < po_id < 2**63:
        row = conn.execute(
            "SELECT id, doc_no, counterparty FROM documents WHERE id = ? AND type = 'purchase_order'", (po_id,)
        ).fetchone()
    if row is None or row["counterparty"] != supplier:
        problems.append(
            AsnProblem(None, "unknown_purchase_order", f"采购订单不存在: {po_id}", f"no such purchase order: {po_id}")
        )
        return None
    if conn.execute("SELECT 1 FROM documents WHERE reverses_id = ?", (po_id,)).fetchone() is not None:
        problems.append(
            AsnProblem(
                None,
                "purchase_order_closed",
                f"采购订单 {row['doc_no']} 已冲销",
                f"purchase order {row['doc_no']} was reversed",
            )
        )
        return None
    found: sqlite3.Row = row
    return found


def resolve_code(conn: sqlite3.Connection, code: str, unit: str | None = None) -> ItemRef:
    """An item by SKU, barcode, or GTIN-14 (a GTIN-14 with a leading 0 is the EAN-13 after it)."""
    try:
        return resolve_item(conn, code, unit)
    except LedgerError:
        if len(code) == 14 and code.isdigit() and code.startswith("0"):
            return resolve_item(conn, code[1:], unit)
        raise


def _resolve_lines(
    conn: sqlite3.Connection,
    asn: AsnInput,
    items: dict[str, PoItem] | None,
    problems: list[AsnProblem],
) -> list[AsnRecordLine]:
    resolved: list[AsnRecordLine] = []
    flags = _item_flags(conn, asn.lines)
    for no, line in enumerate(asn.lines, start=1):
        before = len(problems)
        _check_line(no, line, problems)
        if len(problems) > before:
            continue
        try:
            item = resolve_code(conn, line.code, line.unit)
        except LedgerError as err:
            problems.append(AsnProblem(no, err.code, err.message, err.message_en))
            continue
        lot_tracked, shelf_life = flags.get(item.sku, (False, None))
        if (lot_tracked or shelf_life is not None) and not line.lot:
            problems.append(
                AsnProblem(
                    no,
                    "missing_lot",
                    f"商品 {item.sku} ({item.name}) 须填写批号",
                    f"item {item.sku} ({item.name}) needs a lot number",
                )
            )
        if shelf_life is not None and line.expiry is None:
            problems.append(
                AsnProblem(
                    no,
                    "missing_expiry",
                    f"食品 {item.sku} ({item.name}) 须填写有效期",
                    f"food item {item.sku} ({item.name}) needs an expiry date",
                )
            )
        if line.expiry is not None and isinstance(asn.ship_date, date) and line.expiry < asn.ship_date:
            problems.append(
                AsnProblem(
                    no,
                    "expired",
                    f"商品 {item.sku} 批次 {line.lot or ''} 有效期 {line.expiry} 早于发货日期",
                    f"item {item.sku} lot {line.lot or ''} expires {line.expiry}, before the ship date",
                )
            )
        if items is not None and item.sku not in items:
            problems.append(
                AsnProblem(
                    no,
                    "not_on_po",
                    f"商品 {item.sku} ({item.name}) 不在采购订单上",
                    f"item {item.sku} ({item.name}) is not on the purchase order",
                )
            )
        resolved.append(
            AsnRecordLine(
                no,
                line.code,
                item.sku,
                item.unit,
                line.qty,
                line.qty * item.factor,
                line.lot,
                line.expiry,
                line.price_fen,
            )
        )
    if items is not None:
        totals: dict[str, int] = {}
        for rec in resolved:
            if rec.sku not in items:
                continue
            totals[rec.sku] = totals.get(rec.sku, 0) + rec.qty_base
            po_item = items[rec.sku]
            if totals[rec.sku] > po_item.remaining_base >= totals[rec.sku] - rec.qty_base:
                problems.append(
                    AsnProblem(
                        rec.line_no,
                        "over_po_remaining",
                        f"商品 {rec.sku} 发货 {totals[rec.sku]} {po_item.base_unit} 超过采购订单未到数量"
                        f" {po_item.remaining_base} (订购 {po_item.ordered_base}，已收 {po_item.received_base}，"
                        f"其他发货通知 {po_item.announced_base})",
                        f"item {rec.sku}: {totals[rec.sku]} {po_item.base_unit} shipped exceeds the"
                        f" {po_item.remaining_base} still open on the purchase order (ordered {po_item.ordered_base},"
                        f" received {po_item.received_base}, announced by other ASNs {po_item.announced_base})",
                    )
                )
    return resolved


def _check_line(no: int, line: AsnLine, problems: list[AsnProblem]) -> None:
    if not isinstance(line.code, str) or not 1 <= len(line.code) <= 64:
        problems.append(
            AsnProblem(no, "invalid_code", "商品编码无效 (1 至 64 字符)", "invalid item code (1 to 64 characters)")
        )
    elif _is_misread_gtin(line.code):
        # As every scanned code is read (edge.devices.barcodes): digits of a GTIN's length are a GTIN, checked.
        expected = gs1_check_digit(line.code[:-1])
        problems.append(
            AsnProblem(
                no,
                "invalid_code",
                f"条码 {line.code} 校验位错误 (应为 {expected})",
                f"barcode {line.code} has a wrong check digit (expected {expected})",
            )
        )
    if not isinstance(line.qty, int) or isinstance(line.qty, bool) or not 1 <= line.qty <= MAX_QTY:
        problems.append(
            AsnProblem(
                no,
                "invalid_qty",
                f"数量无效: {line.qty!r} (应为 1 至 {MAX_QTY} 的整数)",
                f"invalid quantity: {line.qty!r} (a whole number from 1 to {MAX_QTY})",
            )
        )
    if line.unit is not None and (not isinstance(line.unit, str) or not 1 <= len(line.unit) <= 32):
        problems.append(
            AsnProblem(no, "invalid_unit", "计量单位无效 (1 至 32 字符)", "invalid unit (1 to 32 characters)")
        )
    if line.lot is not None and (not isinstance(line.lot, str) or not LOT.match(line.lot)):
        problems.append(
            AsnProblem(
                no,
                "invalid_lot",
                "批号无效 (字母、数字、. _ / -，1 至 64 字符)",
                "invalid lot: letters, digits, . _ / - (1 to 64 characters)",
            )
        )
    if line.expiry is not None and (not isinstance(line.expiry, date) or isinstance(line.expiry, datetime)):
        problems.append(AsnProblem(no, "invalid_expiry", "有效期无效", "invalid expiry date"))
    if line.price_fen is not None and (
        not isinstance(line.price_fen, int)
        or isinstance(line.price_fen, bool)
        or not 0 <= line.price_fen <= MAX_PRICE_FEN
    ):
        problems.append(
            AsnProblem(
                no,
                "invalid_price",
                f"单价无效: {line.price_fen!r} (应为 0 至 {MAX_PRICE_FEN} 分)",
                f"invalid price: {line.price_fen!r} (0 to {MAX_PRICE_FEN} fen)",
            )
        )


def _is_misread_gtin(code: str) -> bool:
    return len(code) in (8, 12, 13, 14) and code.isascii() and code.isdigit() and not is_valid_gtin(code)


def _item_flags(conn: sqlite3.Connection, lines: Iterable[AsnLine]) -> dict[str, tuple[bool, int | None]]:
    """(lot_tracked, shelf_life_days) of the lines' items, in one query (codes may be SKUs or barcodes)."""
    codes = sorted(
        {ln.code for ln in lines if isinstance(ln.code, str)}
        | {ln.code[1:] for ln in lines if isinstance(ln.code, str) and len(ln.code) == 14 and ln.code.startswith("0")}
    )
    rows = conn.execute(
        "SELECT i.sku, i.lot_tracked, i.shelf_life_days FROM items i WHERE i.sku IN (SELECT value FROM json_each(:c))"
        " OR i.sku IN (SELECT b.sku FROM barcodes b WHERE b.code IN (SELECT value FROM json_each(:c)))",
        {"c": json.dumps(codes)},
    ).fetchall()
    return {row[0]: (bool(row[1]), row[2]) for row in rows}


# --- reading -----------------------------------------------------------------------------------


def get_asn(conn: sqlite3.Connection, asn_id: str, *, supplier: str | None = None) -> AsnRecord | None:
    """The ASN `asn_id` (of `supplier` when given; ASN ids are the suppliers' own, so they may collide)."""
    records = list_asns(conn, supplier=supplier, asn_id=asn_id, limit=1)
    return records[0] if records else None


def list_asns(
    conn: sqlite3.Connection,
    *,
    supplier: str | None = None,
    po_id: int | None = None,
    state: AsnState | str | None = None,
    asn_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[AsnRecord]:
    """ASNs, newest first, filtered by supplier, PO, state and id."""
    where, params = [], []
    for column, value in (("a.supplier", supplier), ("a.po_id", po_id), ("a.state", state), ("a.asn_id", asn_id)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    rows = conn.execute(
        "SELECT a.*, d.doc_no FROM asns a JOIN documents d ON d.id = a.po_id"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + " ORDER BY a.recorded_at DESC, a.asn_id LIMIT ? OFFSET ?",
        (*params, limit, offset),
    ).fetchall()
    if not rows:
        return []
    keys = json.dumps([[r["supplier"], r["asn_id"]] for r in rows])
    lines: dict[tuple[str, str], list[AsnRecordLine]] = {}
    for ln in conn.execute(
        "SELECT * FROM asn_lines WHERE (supplier, asn_id) IN"
        " (SELECT value ->> 0, value ->> 1 FROM json_each(?)) ORDER BY supplier, asn_id, line_no",
        (keys,),
    ):
        lines.setdefault((ln["supplier"], ln["asn_id"]), []).append(
            AsnRecordLine(
                int(ln["line_no"]),
                ln["code"],
                ln["sku"],
                ln["unit"],
                int(ln["qty"]),
                int(ln["qty_base"]),
                ln["lot"],
                date.fromisoformat(ln["expiry"]) if ln["expiry"] else None,
                ln["price_fen"],
            )
        )
    return [
        AsnRecord(
            supplier=r["supplier"],
            asn_id=r["asn_id"],
            revision=int(r["revision"]),
            po_id=int(r["po_id"]),
            po_no=r["doc_no"],
            ship_date=date.fromisoformat(r["ship_date"]),
            state=AsnState(r["state"]),
            lines=tuple(lines.get((r["supplier"], r["asn_id"]), ())),
            note=r["note"],
            recorded_at=datetime.fromisoformat(r["recorded_at"]),
            receipt_ids=tuple(json.loads(r["receipt_ids"] or "[]")),
            differences=tuple(_difference(d) for d in json.loads(r["differences"] or "[]")),
        )
        for r in rows
    ]


def _difference(d: dict[str, Any]) -> Difference:
    return Difference(
        kind=d["kind"],
        sku=d["sku"],
        expected_base=int(d["expected"]),
        received_base=int(d["received"]),
        lot=d.get("lot"),
        expiry=date.fromisoformat(d["expiry"]) if d.get("expiry") else None,
        line_no=d.get("line_no"),
    )


def mark_received(
    conn: sqlite3.Connection,
    supplier: str,
    asn_id: str,
    receipt_id: int,
    differences: Sequence[Difference],
) -> None:
    """Record that a receipt was posted against the ASN (it can no longer be revised) and what differed."""
    row = conn.execute("SELECT receipt_ids FROM asns WHERE supplier = ? AND asn_id = ?", (supplier, asn_id)).fetchone()
    if row is None:
        return
    ids = [*json.loads(row[0] or "[]"), receipt_id]
    conn.execute(
        "UPDATE asns SET state = 'received', receipt_ids = ?, differences = ? WHERE supplier = ? AND asn_id = ?",
        (json.dumps(ids), json.dumps([d.to_dict() for d in differences], ensure_ascii=False), supplier, asn_id),
    )
