"""Three-way match (三单匹配): purchase order, goods receipt(s) and invoice agree, line by line.

Pure: `match_invoice(invoice, facts, policy, arrived_at=...)` looks only at plain values (no SQL, no clock);
edge.finance.ap loads the facts from the database in a few bulk queries and acts on the result. Each
disagreement is a `Reason` with a stable code and a Chinese and an English sentence that carries the
numbers, so the purchaser reads what is wrong without opening three documents.

Per invoice line:
- the item: the line's `sku` (or a barcode), else its name without the 数电票 "*category*" prefix;
- the VAT rate of the line equals the item's;
- the receipts: lines of receipts against the supplier's POs (or the PO / receipts the invoice names) for
  that item, oldest first, each less what earlier invoices already cleared; the invoice quantity may exceed
  what is left by at most `qty_tolerance` base units (else: short delivery, 发票数量多于实收);
- the order: it may not exceed what is left to invoice on the POs it clears (else: 发票数量多于订单);
- the price: the expected line gross is the quantity times the effective PO price (per unit including VAT:
  the latest price revision from a price agreement, else the agreement the PO was created under, else the PO
  line's price), rounded half-up once;
  its VAT is taken out with the item's rate; the invoice amount and tax may differ from the expected net and
  VAT by at most `price_tolerance_fen` and `tax_tolerance_fen`;
- the time: the invoice arrives at most `window_hours` after the receipts it clears were posted.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from edge.finance.errors import InvalidInvoice
from edge.finance.invoices import Invoice, InvoiceLine
from edge.ledger.money import div_round_half_up, format_yuan, tax_included

_CATEGORY_PREFIX = re.compile(r"^\*[^*]*\*")
_SPACE = re.compile(r"\s+")


@lru_cache(maxsize=65536)
def normalize_item_name(name: str) -> str:
    """The key an invoice's item name is matched by: "*饮料*可口可乐 330ML" and "可口可乐330ml" agree."""
    text = unicodedata.normalize("NFKC", name).strip()
    text = _CATEGORY_PREFIX.sub("", text)
    return _SPACE.sub("", text).casefold()


# --- facts and policy ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MatchPolicy:
    """Tolerances (settings.match_*): quantity in base units, amount and tax per line in fen, window in hours."""

    qty_tolerance: int = 0
    price_tolerance_fen: int = 100
    tax_tolerance_fen: int = 10
    window_hours: int = 72


@dataclass(frozen=True, slots=True)
class ItemFact:
    sku: str
    name: str
    vat_rate_bp: int
    base_unit: str
    units: Mapping[str, int]  # unit -> base units in it (the base unit included)


@dataclass(frozen=True, slots=True)
class POLine:
    """A purchase order line with its effective price: `price_fen` per `factor` base units, including VAT."""

    po_id: int
    line_no: int
    supplier_id: str
    sku: str
    qty_base: int
    price_fen: int
    factor: int
    revised: bool = False  # the price comes from a price agreement's revision, not the PO line
    # The agreed price per base unit (incl. VAT) when the price comes from a price agreement: by a revision, or
    # because the PO was created under the agreement (then `price_fen` is it times `factor`, `revised` False).
    agreed_price_fen: int | None = None


@dataclass(frozen=True, slots=True)
class ReceiptLine:
    """A receipt line against a PO, with what invoices already cleared of it."""

    receipt_id: int
    line_no: int
    po_id: int
    sku: str
    qty_base: int
    net_fen: int  # the line's value excluding VAT: what the receipt booked to 220202 (暂估)
    posted_at: datetime
    invoiced_qty: int = 0
    invoiced_net_fen: int = 0


@dataclass(frozen=True, slots=True)
class MatchFacts:
    """What the match looks at, for one invoice or many (the bulk path loads them once for all).

    Build it with `MatchFacts.build`, which indexes the plain records: receipt lines are kept by supplier and
    item, oldest first, with only what is left to invoice of them.
    """

    suppliers: Mapping[str, str]  # credit code -> supplier id
    items: Mapping[str, ItemFact]  # sku -> item
    item_names: Mapping[str, tuple[str, ...]]  # normalized name -> skus
    barcodes: Mapping[str, str]  # barcode -> sku
    po_lines: Mapping[tuple[str, str], tuple[POLine, ...]]  # (supplier id, sku) -> PO lines, oldest PO first
    # (supplier id, sku) -> PO id -> (its first line for the item, the quantity it orders of the item)
    po_index: Mapping[tuple[str, str], Mapping[int, tuple[POLine, int]]]
    open_receipts: Mapping[tuple[str, str], tuple[ReceiptLine, ...]]  # (supplier id, sku) -> lines with qty left
    receipts_by_po: Mapping[tuple[int, str], tuple[ReceiptLine, ...]]  # (PO id, sku) -> lines with qty left
    open_qty: Mapping[tuple[str, str], int]  # (supplier id, sku) -> qty left to invoice on those lines
    po_invoiced: Mapping[tuple[int, str], int]  # (PO id, sku) -> qty already invoiced against that PO
    receipts: Mapping[int, int | None]  # receipt id -> its PO id (the receipts invoices may name)

    @staticmethod
    def build(
        suppliers: Mapping[str, str],
        items: Iterable[ItemFact],
        barcodes: Mapping[str, str],
        po_lines: Iterable[POLine],
        receipt_lines: Iterable[ReceiptLine],
        receipts: Mapping[int, int | None] | None = None,
    ) -> MatchFacts:
        by_sku = {item.sku: item for item in items}
        names: dict[str, list[str]] = {}
        for item in by_sku.values():
            names.setdefault(normalize_item_name(item.name), []).append(item.sku)
        pos: dict[tuple[str, str], list[POLine]] = {}
        index: dict[tuple[str, str], dict[int, tuple[POLine, int]]] = {}
        supplier_of: dict[tuple[int, str], str] = {}
        for po in sorted(po_lines, key=lambda p: (p.po_id, p.line_no)):
            key = (po.supplier_id, po.sku)
            pos.setdefault(key, []).append(po)
            by_po = index.setdefault(key, {})
            first, ordered = by_po.get(po.po_id, (po, 0))
            by_po[po.po_id] = (first, ordered + po.qty_base)
            supplier_of[(po.po_id, po.sku)] = po.supplier_id
        open_lines: dict[tuple[str, str], list[ReceiptLine]] = {}
        by_po_lines: dict[tuple[int, str], list[ReceiptLine]] = {}
        open_qty: dict[tuple[str, str], int] = {}
        invoiced: dict[tuple[int, str], int] = {}
        for rec in sorted(receipt_lines, key=lambda r: (r.posted_at, r.receipt_id, r.line_no)):
            supplier = supplier_of.get((rec.po_id, rec.sku))
            if supplier is None:  # an item the PO does not order: no PO line to match it with
                continue
            invoiced[(rec.po_id, rec.sku)] = invoiced.get((rec.po_id, rec.sku), 0) + rec.invoiced_qty
            left = rec.qty_base - rec.invoiced_qty
            if left > 0:
                pair = (supplier, rec.sku)
                open_lines.setdefault(pair, []).append(rec)
                by_po_lines.setdefault((rec.po_id, rec.sku), []).append(rec)
                open_qty[pair] = open_qty.get(pair, 0) + left
        return MatchFacts(
            suppliers=dict(suppliers),
            items=by_sku,
            item_names={k: tuple(v) for k, v in names.items()},
            barcodes=dict(barcodes),
            po_lines={k: tuple(v) for k, v in pos.items()},
            po_index=index,
            open_receipts={k: tuple(v) for k, v in open_lines.items()},
            receipts_by_po={k: tuple(v) for k, v in by_po_lines.items()},
            open_qty=open_qty,
            po_invoiced=invoiced,
            receipts=dict(receipts or {}),
        )


_NOTHING = (0, 0)


class _Taken:
    """What matched invoices already took of the receipt lines (`base_*`), and what the invoice being matched
    takes (`line`, `key`, `po`); `commit` adds the latter to the former when that invoice matches."""

    __slots__ = ("base_key", "base_line", "base_po", "filled", "key", "line", "po", "skip")

    def __init__(self) -> None:
        self.base_line: dict[tuple[int, int], tuple[int, int]] = {}  # (receipt, line) -> (qty, net)
        self.base_key: dict[tuple[str, str], int] = {}  # (supplier, sku) -> qty
        self.base_po: dict[tuple[int, str], int] = {}  # (PO, sku) -> qty
        # (supplier, sku) -> index of a fully invoiced receipt line -> an index after it (to skip them quickly)
        self.skip: dict[tuple[str, str], dict[int, int]] = {}
        self.line: dict[tuple[int, int], tuple[int, int]] = {}
        self.key: dict[tuple[str, str], int] = {}
        self.po: dict[tuple[int, str], int] = {}
        self.filled: list[tuple[tuple[str, str], int]] = []  # open_receipts lines the current invoice takes all of

    def begin(self) -> None:
        self.line, self.key, self.po, self.filled = {}, {}, {}, []

    def next_open(self, key: tuple[str, str], index: int) -> int:
        """The first receipt line at or after `index` not known to be fully invoiced (path-compressed)."""
        jumps = self.skip.get(key)
        if not jumps or index not in jumps:
            return index
        root = index
        while root in jumps:
            root = jumps[root]
        while index in jumps and jumps[index] != root:
            jumps[index], index = root, jumps[index]
        return root

    def commit(self) -> None:
        base_line = self.base_line
        for k, (qty, net) in self.line.items():
            q, n = base_line.get(k, _NOTHING)
            base_line[k] = (q + qty, n + net)
        for k2, qty in self.po.items():
            self.base_po[k2] = self.base_po.get(k2, 0) + qty
        for k3, qty in self.key.items():
            self.base_key[k3] = self.base_key.get(k3, 0) + qty
        # Receipt lines now fully invoiced are skipped by the matches after this one.
        for pair, index in self.filled:
            self.skip.setdefault(pair, {})[index] = index + 1
        self.begin()


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reason:
    """Why an invoice does not match: a stable code, a sentence in Chinese and English, and the numbers."""

    code: str
    message: str
    message_en: str
    line_no: int | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "line_no": self.line_no,
            "message": self.message,
            "message_en": self.message_en,
            "detail": dict(self.detail),
        }


REASON_CODES: dict[str, tuple[str, str]] = {
    "unknown_supplier": ("未知供应商", "unknown supplier"),
    "unknown_item": ("未知商品", "unknown item"),
    "unknown_unit": ("未知计量单位", "unknown unit"),
    "rate_mismatch": ("税率不符", "tax rate mismatch"),
    "no_po": ("无采购订单", "no purchase order"),
    "unknown_receipt": ("入库单无效", "unknown receipt"),
    "short_delivery": ("发票数量多于实收", "short delivery"),
    "over_order": ("发票数量多于订单", "invoiced more than ordered"),
    "price_difference": ("价差", "price difference"),
    "tax_difference": ("税差", "tax difference"),
    "late_invoice": ("发票超时", "late invoice"),
    "credit_for_posted_invoice": ("原发票已入账", "credit note for a posted invoice"),
}


@dataclass(frozen=True, slots=True)
class Clearance:
    """Receipt quantity (and its estimated value) an invoice line clears, so it is never invoiced twice."""

    invoice_line_no: int
    receipt_id: int
    receipt_line_no: int
    po_id: int
    qty_base: int
    net_fen: int


@dataclass(frozen=True, slots=True)
class LineMatch:
    line_no: int
    sku: str | None
    qty_base: int | None
    received_qty: int  # received and not yet invoiced, across the receipts considered
    expected_net_fen: int | None
    expected_tax_fen: int | None
    amount_fen: int
    tax_fen: int


@dataclass(frozen=True, slots=True)
class MatchResult:
    supplier_id: str | None
    reasons: tuple[Reason, ...]
    lines: tuple[LineMatch, ...]
    clearances: tuple[Clearance, ...]
    net_fen: int
    tax_fen: int

    @property
    def ok(self) -> bool:
        return not self.reasons

    @property
    def estimate_fen(self) -> int:
        """The receipts' net value this invoice clears from 暂估 (220202)."""
        return sum(c.net_fen for c in self.clearances)

    @property
    def first_receipt_id(self) -> int | None:
        return self.clearances[0].receipt_id if self.clearances else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "supplier_id": self.supplier_id,
            "reasons": [r.to_dict() for r in self.reasons],
            "estimate_fen": self.estimate_fen,
            "net_fen": self.net_fen,
            "tax_fen": self.tax_fen,
            "lines": [
                {
                    "line_no": m.line_no,
                    "sku": m.sku,
                    "qty_base": m.qty_base,
                    "received_qty": m.received_qty,
                    "expected_net_fen": m.expected_net_fen,
                    "expected_tax_fen": m.expected_tax_fen,
                    "amount_fen": m.amount_fen,
                    "tax_fen": m.tax_fen,
                }
                for m in self.lines
            ],
            "clearances": [
                {
                    "invoice_line_no": c.invoice_line_no,
                    "receipt_id": c.receipt_id,
                    "receipt_line_no": c.receipt_line_no,
                    "po_id": c.po_id,
                    "qty_base": c.qty_base,
                    "net_fen": c.net_fen,
                }
                for c in self.clearances
            ],
        }


# --- reasons in words ---------------------------------------------------------------------------


def _pct(bp: int) -> str:
    return f"{bp // 100}%" if bp % 100 == 0 else f"{bp / 100}%"


def reason_unknown_supplier(name: str, credit_code: str) -> Reason:
    return Reason(
        "unknown_supplier",
        f"未知供应商: 销售方 {name} ({credit_code}) 不在供应商档案中",
        f"unknown supplier: seller {name} ({credit_code}) is not in the supplier records",
        detail={"seller_name": name, "seller_credit_code": credit_code},
    )


def reason_credit_for_posted(original_no: str, status: str) -> Reason:
    return Reason(
        "credit_for_posted_invoice",
        f"原发票 {original_no} 已入账 ({status})，红字发票须人工确认后入账",
        f"the original invoice {original_no} is already booked ({status}); the credit note needs a person's decision",
        detail={"original_invoice_no": original_no, "original_status": status},
    )


def _line_reason(code: str, line_no: int, zh: str, en: str, **detail: Any) -> Reason:
    return Reason(code, f"第 {line_no} 行: {zh}", f"line {line_no}: {en}", line_no, detail)


# --- the match ----------------------------------------------------------------------------------


def match_invoice(invoice: Invoice, facts: MatchFacts, policy: MatchPolicy, *, arrived_at: datetime) -> MatchResult:
    """Match one invoice (credit notes already netted into it) against the facts; see the module docstring."""
    return _match(invoice, facts, policy, arrived_at, _Taken())


def match_invoices(
    invoices: Sequence[tuple[Invoice, datetime]], facts: MatchFacts, policy: MatchPolicy
) -> list[MatchResult]:
    """Match many invoices in order against one set of facts: what a matching invoice clears is not there for
    the ones after it (the bulk path of the benchmark)."""
    taken = _Taken()
    results = []
    for invoice, arrived_at in invoices:
        taken.begin()
        result = _match(invoice, facts, policy, arrived_at, taken)
        if result.ok:
            taken.commit()
        results.append(result)
    return results


def _resolve_sku(line: InvoiceLine, facts: MatchFacts) -> tuple[str | None, Reason | None]:
    if line.sku is not None:
        sku = line.sku if line.sku in facts.items else facts.barcodes.get(line.sku)
        if sku is None:
            return None, _line_reason(
                "unknown_item",
                line.line_no,
                f"未知商品: 商品编码 {line.sku} ({line.item_name}) 不在商品档案中",
                f"unknown item: sku {line.sku} ({line.item_name}) is not in the item records",
                sku=line.sku,
                item_name=line.item_name,
            )
        return sku, None
    candidates = facts.item_names.get(normalize_item_name(line.item_name), ())
    if len(candidates) == 1:
        return candidates[0], None
    if not candidates:
        return None, _line_reason(
            "unknown_item",
            line.line_no,
            f"未知商品: {line.item_name} 与商品档案中的名称都不符",
            f"unknown item: {line.item_name} matches no item name",
            item_name=line.item_name,
        )
    return None, _line_reason(
        "unknown_item",
        line.line_no,
        f"无法确定商品: {line.item_name} 对应多个商品 ({', '.join(candidates)})，请填写商品编码",
        f"ambiguous item: {line.item_name} matches several items ({', '.join(candidates)}); give the sku",
        item_name=line.item_name,
        candidates=list(candidates),
    )


def _allowed(invoice: Invoice, facts: MatchFacts, reasons: list[Reason]) -> tuple[set[int] | None, set[int] | None]:
    """The POs and receipts the invoice may clear: those it names, else (None) any of the supplier's."""
    allowed_pos: set[int] | None = None
    allowed_receipts: set[int] | None = None
    if invoice.receipt_ids:
        allowed_receipts, allowed_pos = set(), set()
        for receipt_id in invoice.receipt_ids:
            po = facts.receipts.get(receipt_id)
            if po is None:
                reasons.append(
                    Reason(
                        "unknown_receipt",
                        f"入库单 {receipt_id} 不存在、已冲销或不是采购订单下的入库单",
                        f"receipt {receipt_id} does not exist, was reversed, or is not against a purchase order",
                        detail={"receipt_id": receipt_id},
                    )
                )
                continue
            allowed_receipts.add(receipt_id)
            allowed_pos.add(po)
    if invoice.po_id is not None:
        allowed_pos = {invoice.po_id} if allowed_pos is None else allowed_pos & {invoice.po_id}
    return allowed_pos, allowed_receipts


def _match(
    invoice: Invoice, facts: MatchFacts, policy: MatchPolicy, arrived_at: datetime, taken: _Taken
) -> MatchResult:
    reasons: list[Reason] = []
    supplier_id = facts.suppliers.get(invoice.seller_credit_code)
    if supplier_id is None:
        reasons.append(reason_unknown_supplier(invoice.seller_name, invoice.seller_credit_code))
    allowed_pos, allowed_receipts = _allowed(invoice, facts, reasons)
    clearances: list[Clearance] = []
    lines: list[LineMatch] = []
    earliest_receipt: datetime | None = None
    for line in invoice.lines:
        sku, problem = _resolve_sku(line, facts)
        if problem is not None:
            reasons.append(problem)
            lines.append(LineMatch(line.line_no, sku, None, 0, None, None, line.amount_fen, line.tax_fen))
            continue
        assert sku is not None
        item = facts.items[sku]
        factor = 1
        if line.unit is not None and line.unit != item.base_unit:
            unit_factor = item.units.get(line.unit)
            if unit_factor is None:
                reasons.append(
                    _line_reason(
                        "unknown_unit",
                        line.line_no,
                        f"商品 {sku} 没有计量单位 {line.unit} (基本单位 {item.base_unit})",
                        f"item {sku} has no unit {line.unit} (base unit {item.base_unit})",
                        sku=sku,
                        unit=line.unit,
                    )
                )
                lines.append(LineMatch(line.line_no, sku, None, 0, None, None, line.amount_fen, line.tax_fen))
                continue
            factor = unit_factor
        qty = line.qty * factor
        if line.tax_rate_bp != item.vat_rate_bp:
            reasons.append(
                _line_reason(
                    "rate_mismatch",
                    line.line_no,
                    f"税率不符: 发票 {_pct(line.tax_rate_bp)}，商品 {sku} 为 {_pct(item.vat_rate_bp)}",
                    f"rate mismatch: invoice {_pct(line.tax_rate_bp)}, item {sku} is {_pct(item.vat_rate_bp)}",
                    sku=sku,
                    invoice_rate_bp=line.tax_rate_bp,
                    item_rate_bp=item.vat_rate_bp,
                )
            )
        key = (supplier_id or "", sku)
        index = facts.po_index.get(key, {})
        po_by_id = index if allowed_pos is None else {p: index[p] for p in sorted(allowed_pos) if p in index}
        if supplier_id is None or not po_by_id:
            if supplier_id is not None:
                reasons.append(
                    _line_reason(
                        "no_po",
                        line.line_no,
                        f"无采购订单: 供应商 {supplier_id} 没有商品 {sku} 的采购订单"
                        + (f" (发票指定订单 {invoice.po_id})" if invoice.po_id is not None else ""),
                        f"no PO: supplier {supplier_id} has no purchase order for item {sku}"
                        + (f" (the invoice names PO {invoice.po_id})" if invoice.po_id is not None else ""),
                        sku=sku,
                        po_id=invoice.po_id,
                    )
                )
            lines.append(LineMatch(line.line_no, sku, qty, 0, None, None, line.amount_fen, line.tax_fen))
            continue
        # Allocate the invoice quantity to the receipts, oldest first; price each part at its PO's price.
        filtered = allowed_pos is not None or allowed_receipts is not None
        if filtered:
            receipts: Sequence[ReceiptLine] = [r for p in po_by_id for r in facts.receipts_by_po.get((p, sku), ())]
            if len(po_by_id) > 1:
                receipts = sorted(receipts, key=lambda r: (r.posted_at, r.receipt_id, r.line_no))
            received, start = 0, 0
        else:
            receipts = facts.open_receipts.get(key, ())
            received = facts.open_qty.get(key, 0) - taken.base_key.get(key, 0) - taken.key.get(key, 0)
            start = 0
        wanted = qty
        numerator, denominator = 0, 1
        cleared_pos: dict[int, int] = {}
        at = start
        while at < len(receipts):
            if not filtered:
                at = taken.next_open(key, at)
                if at >= len(receipts) or wanted <= 0:
                    break
            r = receipts[at]
            at += 1
            if allowed_receipts is not None and r.receipt_id not in allowed_receipts:
                continue
            line_key = (r.receipt_id, r.line_no)
            base_qty, base_net = taken.base_line.get(line_key, _NOTHING)
            here_qty, here_net = taken.line.get(line_key, _NOTHING)
            left_qty = r.qty_base - r.invoiced_qty - base_qty - here_qty
            if left_qty <= 0:
                if not filtered and not here_qty:  # taken by an invoice matched before: skip it from now on
                    taken.skip.setdefault(key, {})[at - 1] = at
                continue
            if filtered:
                received += left_qty
            if wanted <= 0:
                continue
            left_net = r.net_fen - r.invoiced_net_fen - base_net - here_net
            take = wanted if wanted < left_qty else left_qty
            wanted -= take
            if take == left_qty:
                net = left_net
                if not filtered:
                    taken.filled.append((key, at - 1))
            else:
                net = div_round_half_up(left_net * take, left_qty)
            clearances.append(Clearance(line.line_no, r.receipt_id, r.line_no, r.po_id, take, net))
            taken.line[line_key] = (here_qty + take, here_net + net)
            taken.key[key] = taken.key.get(key, 0) + take
            po_key = (r.po_id, sku)
            taken.po[po_key] = taken.po.get(po_key, 0) + take
            cleared_pos[r.po_id] = cleared_pos.get(r.po_id, 0) + take
            po = po_by_id[r.po_id][0]
            numerator, denominator = numerator * po.factor + take * po.price_fen * denominator, denominator * po.factor
            if earliest_receipt is None or r.posted_at < earliest_receipt:
                earliest_receipt = r.posted_at
        if wanted > 0:
            # Not received (yet): priced at the PO the last part came from, or the oldest PO.
            po = po_by_id[next(reversed(cleared_pos))][0] if cleared_pos else next(iter(po_by_id.values()))[0]
            numerator = numerator * po.factor + wanted * po.price_fen * denominator
            denominator *= po.factor
        gross = div_round_half_up(numerator, denominator)
        expected_tax = tax_included(gross, item.vat_rate_bp)
        expected_net = gross - expected_tax
        lines.append(
            LineMatch(line.line_no, sku, qty, received, expected_net, expected_tax, line.amount_fen, line.tax_fen)
        )
        if qty > received + policy.qty_tolerance:
            reasons.append(
                _line_reason(
                    "short_delivery",
                    line.line_no,
                    f"发票数量多于实收: 商品 {sku} 发票 {qty}，实收未开票 {received}，多 {qty - received}",
                    f"short delivery: item {sku} invoiced {qty}, received and not yet invoiced {received}, "
                    f"{qty - received} more",
                    sku=sku,
                    invoiced=qty,
                    received=received,
                    difference=qty - received,
                )
            )
        elif cleared_pos:
            ordered_left = 0
            for po_id in cleared_pos:
                po_key = (po_id, sku)
                already = (
                    facts.po_invoiced.get(po_key, 0)
                    + taken.base_po.get(po_key, 0)
                    + taken.po.get(po_key, 0)
                    - cleared_pos[po_id]
                )
                ordered_left += po_by_id[po_id][1] - already
            if qty > ordered_left + policy.qty_tolerance:
                reasons.append(
                    _line_reason(
                        "over_order",
                        line.line_no,
                        f"发票数量多于订单: 商品 {sku} 发票 {qty}，订单未开票 {ordered_left}",
                        f"invoiced more than ordered: item {sku} invoiced {qty}, left on the order {ordered_left}",
                        sku=sku,
                        invoiced=qty,
                        ordered=ordered_left,
                    )
                )
        price_diff = line.amount_fen - expected_net
        if abs(price_diff) > policy.price_tolerance_fen:
            # Which price the expectation rests on: one agreed price for every part, else the order price.
            priced = [po_by_id[p][0] for p in cleared_pos]
            if not priced:  # nothing received: priced at the oldest PO, as above
                priced.append(next(iter(po_by_id.values()))[0])
            agreed = {p.agreed_price_fen for p in priced}
            agreed_fen = agreed.pop() if len(agreed) == 1 else None
            basis, basis_en = "按订单价", "at the order price"
            if agreed_fen is not None:
                basis = f"按协议价 {format_yuan(agreed_fen)} 元"
                basis_en = f"at the agreed price {format_yuan(agreed_fen)}"
            reasons.append(
                _line_reason(
                    "price_difference",
                    line.line_no,
                    f"价差 {price_diff} 分: 商品 {sku} 发票金额 {format_yuan(line.amount_fen)} 元，"
                    f"{basis}应为 {format_yuan(expected_net)} 元 (不含税)",
                    f"price difference of {price_diff} fen: item {sku} invoice amount {format_yuan(line.amount_fen)}, "
                    f"expected {format_yuan(expected_net)} {basis_en} (excl. VAT)",
                    sku=sku,
                    difference_fen=price_diff,
                    invoice_fen=line.amount_fen,
                    expected_fen=expected_net,
                    tolerance_fen=policy.price_tolerance_fen,
                    agreed_price_fen=agreed_fen,
                )
            )
        tax_diff = line.tax_fen - expected_tax
        if abs(tax_diff) > policy.tax_tolerance_fen:
            reasons.append(
                _line_reason(
                    "tax_difference",
                    line.line_no,
                    f"税差 {tax_diff} 分: 商品 {sku} 发票税额 {format_yuan(line.tax_fen)} 元，"
                    f"应为 {format_yuan(expected_tax)} 元",
                    f"tax difference of {tax_diff} fen: item {sku} invoice tax {format_yuan(line.tax_fen)}, "
                    f"expected {format_yuan(expected_tax)}",
                    sku=sku,
                    difference_fen=tax_diff,
                    invoice_fen=line.tax_fen,
                    expected_fen=expected_tax,
                    tolerance_fen=policy.tax_tolerance_fen,
                )
            )
    if earliest_receipt is not None:
        hours = (arrived_at - earliest_receipt).total_seconds() / 3600
        if hours > policy.window_hours:
            reasons.append(
                Reason(
                    "late_invoice",
                    f"发票超时: 收货后 {int(hours)} 小时才到，超过 {policy.window_hours} 小时",
                    f"late invoice: arrived {int(hours)} hours after the receipt, more than {policy.window_hours}",
                    detail={
                        "hours": int(hours),
                        "window_hours": policy.window_hours,
                        "receipt_posted_at": earliest_receipt.isoformat(),
                        "arrived_at": arrived_at.isoformat(),
                    },
                )
            )
    return MatchResult(
        supplier_id=supplier_id,
        reasons=tuple(reasons),
        lines=tuple(lines),
        clearances=tuple(clearances),
        net_fen=invoice.net_fen,
        tax_fen=invoice.tax_fen,
    )


# --- credit notes -------------------------------------------------------------------------------


def line_item(line: InvoiceLine, facts: MatchFacts) -> str | None:
    """The item an invoice or credit note line names (by sku, barcode or name, as the match finds it), or None
    when it names none or several."""
    sku, _problem = _resolve_sku(line, facts)
    return sku


@dataclass(frozen=True, slots=True)
class ReturnLine:
    """A supplier return line (退供应商单) with its net value (excl. VAT) not yet cleared by a credit note: the
    return booked that value to 220202 red-letter, a debit waiting for the supplier's credit note."""

    return_id: int
    line_no: int
    sku: str
    open_net_fen: int


@dataclass(frozen=True, slots=True)
class ReturnClearance:
    """Return value a credit note line clears, so the same return value is never credited twice."""

    credit_line_no: int
    return_id: int
    return_line_no: int
    net_fen: int


def clear_returns(
    credit: Invoice,
    items: Mapping[int, str | None],
    open_returns: Sequence[ReturnLine],
    limit_fen: int | None = None,
) -> tuple[ReturnClearance, ...]:
    """What a credit note clears of its supplier's open returns: its `estimate` (冲回暂估) is their sum.

    Each credit line's net (its amount, negative on the credit note) clears the open value of the supplier's
    returns of the line's item (`items`: credit line no -> sku; of any item when the line names none), oldest
    return first (`open_returns` in that order); the lines naming an item go first. What a line credits beyond
    the open return value is a pure price credit (it goes to cost, 5401); a return credited for less than its
    value keeps the rest open for a later credit note. `limit_fen` caps the whole (a credit note netted into
    its invoice clears returns only with what it credits beyond correcting that invoice).
    """
    left = {(r.return_id, r.line_no): r.open_net_fen for r in open_returns}
    cleared: list[ReturnClearance] = []
    budget = -credit.net_fen if limit_fen is None else min(limit_fen, -credit.net_fen)
    for line in sorted(credit.lines, key=lambda x: (items.get(x.line_no) is None, x.line_no)):
        wanted = min(-line.amount_fen, budget)
        sku = items.get(line.line_no)
        for r in open_returns:
            if wanted <= 0:
                break
            if sku is not None and r.sku != sku:
                continue
            key = (r.return_id, r.line_no)
            available = left[key]
            if available <= 0:
                continue
            take = min(wanted, available)
            left[key] = available - take
            wanted -= take
            budget -= take
            cleared.append(ReturnClearance(line.line_no, r.return_id, r.line_no, take))
    return tuple(cleared)


def _line_key(line: InvoiceLine) -> str:
    return f"sku:{line.sku}" if line.sku else f"name:{normalize_item_name(line.item_name)}"


def net_credit_notes(invoice: Invoice, credit_notes: Sequence[Invoice]) -> Invoice:
    """The invoice with its credit notes (红字发票) netted into its lines, for the match and the AP voucher.

    Each credit line is netted into the first line of the invoice for the same item (by sku, else by name).
    A credit for an item not on the invoice, or for more than the invoice line, is refused.
    """
    if not credit_notes:
        return invoice
    lines = {line.line_no: line for line in invoice.lines}
    by_key: dict[str, int] = {}
    for line in invoice.lines:
        by_key.setdefault(_line_key(line), line.line_no)
        by_key.setdefault(f"name:{normalize_item_name(line.item_name)}", line.line_no)
    for note in credit_notes:
        for credit in note.lines:
            target = by_key.get(_line_key(credit)) or by_key.get(f"name:{normalize_item_name(credit.item_name)}")
            if target is None:
                raise InvalidInvoice(
                    f"红字发票 {note.invoice_no} 第 {credit.line_no} 行的项目 {credit.item_name} 不在原发票 "
                    f"{invoice.invoice_no} 上",
                    f"credit note {note.invoice_no} line {credit.line_no}: {credit.item_name} is not on the original "
                    f"invoice {invoice.invoice_no}",
                    invoice_no=note.invoice_no,
                    line=credit.line_no,
                    field="item_name",
                )
            base = lines[target]
            if credit.tax_rate_bp != base.tax_rate_bp:
                raise InvalidInvoice(
                    f"红字发票 {note.invoice_no} 第 {credit.line_no} 行税率与原发票第 {target} 行不同",
                    f"credit note {note.invoice_no} line {credit.line_no}: the tax rate differs from the original's "
                    f"line {target}",
                    invoice_no=note.invoice_no,
                    line=credit.line_no,
                    field="tax_rate",
                )
            qty = base.qty + credit.qty * _unit_ratio(credit, base)
            amount = base.amount_fen + credit.amount_fen
            tax = base.tax_fen + credit.tax_fen
            if qty < 0 or amount < 0 or tax < 0:
                raise InvalidInvoice(
                    f"红字发票 {note.invoice_no} 第 {credit.line_no} 行冲减超过原发票第 {target} 行",
                    f"credit note {note.invoice_no} line {credit.line_no} credits more than "
                    f"the original's line {target}",
                    invoice_no=note.invoice_no,
                    line=credit.line_no,
                    field="amount",
                )
            lines[target] = InvoiceLine(
                line_no=base.line_no,
                item_name=base.item_name,
                qty=qty,
                amount_fen=amount,
                tax_rate_bp=base.tax_rate_bp,
                tax_fen=tax,
                unit_price=base.unit_price,
                sku=base.sku,
                unit=base.unit,
            )
    kept = tuple(line for line in lines.values() if line.qty or line.amount_fen or line.tax_fen)
    return Invoice(
        invoice_no=invoice.invoice_no,
        issue_date=invoice.issue_date,
        seller_name=invoice.seller_name,
        seller_credit_code=invoice.seller_credit_code,
        buyer_name=invoice.buyer_name,
        buyer_credit_code=invoice.buyer_credit_code,
        lines=kept,
        po_id=invoice.po_id,
        receipt_ids=invoice.receipt_ids,
    )


def _unit_ratio(credit: InvoiceLine, base: InvoiceLine) -> int:
    # Credit lines are in the original line's unit; a different unit on a credit note is refused upstream.
    if (credit.unit or None) != (base.unit or None) and credit.unit is not None and base.unit is not None:
        raise InvalidInvoice(
            f"红字发票第 {credit.line_no} 行单位 {credit.unit} 与原发票 ({base.unit}) 不同",
            f"credit note line {credit.line_no}: unit {credit.unit} differs from the original's {base.unit}",
            line=credit.line_no,
            field="unit",
        )
    return 1
