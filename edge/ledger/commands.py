"""Typed commands that change the ledger, and the result each returns.

Every command carries an idempotency key; posting the same key again returns the first result.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date
from enum import StrEnum
from typing import Any


class DocType(StrEnum):
    """Document types (单据类型)."""

    PURCHASE_ORDER = "purchase_order"  # 采购订单: no stock effect
    RECEIPT = "receipt"  # 采购入库单
    SALE = "sale"  # 销售单
    CUSTOMER_RETURN = "customer_return"  # 顾客退货单
    SUPPLIER_RETURN = "supplier_return"  # 退供应商单
    TRANSFER_OUT = "transfer_out"  # 调拨出库单
    TRANSFER_IN = "transfer_in"  # 调拨入库单
    STOCKTAKE = "stocktake"  # 盘点单
    WRITE_OFF = "write_off"  # 报损单
    GIFT_OUT = "gift_out"  # 赠品/样品发放单 (视同销售)
    SAMPLE_IN = "sample_in"  # 样品入库单 (samples received free)
    REVERSAL = "reversal"  # 冲销单
    # Finance entries (财务单据): a voucher by rule, no stock effect; posted with PostEntry.
    PURCHASE_INVOICE = "purchase_invoice"  # 进项发票入账 (three-way match)
    CREDIT_NOTE = "credit_note"  # 红字发票 (supplier's credit)
    SUPPLIER_PAYMENT = "supplier_payment"  # 供应商付款
    LOSS_APPROVAL = "loss_approval"  # 损溢审批 (1901 -> 5711 / 5301)
    # Posted by the sync system only (SettleTransfer), once the receiving store has received: docs/transfers.md.
    TRANSFER_SETTLE = "transfer_settle"  # 调拨结算: shipped goods leave transit, differences to 1901


DOC_TYPE_NAMES: dict[DocType, tuple[str, str]] = {
    DocType.PURCHASE_ORDER: ("采购订单", "purchase order"),
    DocType.RECEIPT: ("采购入库单", "goods receipt"),
    DocType.SALE: ("销售单", "sale"),
    DocType.CUSTOMER_RETURN: ("顾客退货单", "customer return"),
    DocType.SUPPLIER_RETURN: ("退供应商单", "supplier return"),
    DocType.TRANSFER_OUT: ("调拨出库单", "transfer out"),
    DocType.TRANSFER_IN: ("调拨入库单", "transfer in"),
    DocType.STOCKTAKE: ("盘点单", "stocktake"),
    DocType.WRITE_OFF: ("报损单", "write-off"),
    DocType.GIFT_OUT: ("赠品样品发放单", "gifts and free samples given out"),
    DocType.SAMPLE_IN: ("样品入库单", "samples received"),
    DocType.REVERSAL: ("冲销单", "reversal"),
    DocType.PURCHASE_INVOICE: ("进项发票", "purchase invoice"),
    DocType.CREDIT_NOTE: ("红字发票", "credit note"),
    DocType.SUPPLIER_PAYMENT: ("供应商付款", "supplier payment"),
    DocType.LOSS_APPROVAL: ("损溢审批", "loss approval"),
    DocType.TRANSFER_SETTLE: ("调拨结算单", "transfer settlement"),
}

# Finance entries: posted with PostEntry by the finance layer, never through the stock document routes.
ENTRY_TYPES: tuple[DocType, ...] = (
    DocType.PURCHASE_INVOICE,
    DocType.CREDIT_NOTE,
    DocType.SUPPLIER_PAYMENT,
    DocType.LOSS_APPROVAL,
)

# Stock document types a client may post directly (a reversal is posted through ReverseDocument).
# A transfer settlement is posted through SettleTransfer by the sync system, never directly.
SYSTEM_TYPES: tuple[DocType, ...] = (DocType.TRANSFER_SETTLE,)
POSTABLE_TYPES: tuple[DocType, ...] = tuple(
    t for t in DocType if t is not DocType.REVERSAL and t not in ENTRY_TYPES and t not in SYSTEM_TYPES
)


class ReturnReason(StrEnum):
    """Customer return reasons (退货原因)."""

    DAMAGED_PACKAGING = "damaged_packaging"  # 包装破损
    TASTE = "taste"  # 口味不符
    LATE_DELIVERY = "late_delivery"  # 物流超时
    QUALITY = "quality"  # 质量问题
    OTHER = "other"  # 其他 (needs reason_text)


class WriteOffReason(StrEnum):
    """Write-off reasons (报损原因)."""

    EXPIRED = "expired"  # 过期
    DAMAGED = "damaged"  # 损坏
    SPOILED = "spoiled"  # 变质
    THEFT = "theft"  # 被盗丢失
    NATURAL_DISASTER = "natural_disaster"  # 自然灾害
    REASONABLE_LOSS = "reasonable_loss"  # 合理损耗
    COUNT_DIFFERENCE = "count_difference"  # 盘点差异
    OTHER = "other"  # 其他 (needs reason_text)


REASON_NAMES: dict[str, tuple[str, str]] = {
    ReturnReason.DAMAGED_PACKAGING: ("包装破损", "damaged packaging"),
    ReturnReason.TASTE: ("口味不符", "taste not as expected"),
    ReturnReason.LATE_DELIVERY: ("物流超时", "late delivery"),
    ReturnReason.QUALITY: ("质量问题", "quality problem"),
    ReturnReason.OTHER: ("其他", "other"),
    WriteOffReason.EXPIRED: ("过期", "expired"),
    WriteOffReason.DAMAGED: ("损坏", "damaged"),
    WriteOffReason.SPOILED: ("变质", "spoiled"),
    WriteOffReason.THEFT: ("被盗丢失", "theft or loss"),
    WriteOffReason.NATURAL_DISASTER: ("自然灾害", "natural disaster"),
    WriteOffReason.REASONABLE_LOSS: ("合理损耗", "reasonable loss"),
    WriteOffReason.COUNT_DIFFERENCE: ("盘点差异", "counting difference"),
}

# Devices may send the Chinese label instead of the code.
RETURN_REASON_ALIASES: dict[str, ReturnReason] = {
    "包装破损": ReturnReason.DAMAGED_PACKAGING,
    "口味不符": ReturnReason.TASTE,
    "物流超时": ReturnReason.LATE_DELIVERY,
    "质量问题": ReturnReason.QUALITY,
    "其他": ReturnReason.OTHER,
}


@dataclass(frozen=True, slots=True, repr=False)
class Line:
    """One line of a document as a client sends it.

    `code` is a SKU or any of its barcodes; a barcode may imply a unit (a case barcode means cases).
    `qty` is in `unit` (or the barcode's unit, or the base unit). For a stocktake it is the counted
    quantity. `price_fen` is the unit price including VAT; for receipts it is the purchase price,
    for sales and returns the selling price (defaults to the item's price). `amount_fen` is the line
    total as charged (the amount printed on a scale label, 金额): when set it is the line's gross
    instead of price × qty.
    """

    code: str
    qty: int
    price_fen: int | None = None
    unit: str | None = None
    lot: str | None = None
    expiry: date | None = None
    location: str | None = None
    amount_fen: int | None = None

    def __repr__(self) -> str:
        # A command's fingerprint is the hash of its repr (posting._fingerprint), and fingerprints of commands
        # already posted are stored: a line without amount_fen must repr exactly as before that field existed.
        shown = (f for f in fields(self) if not (f.name == "amount_fen" and self.amount_fen is None))
        return f"{type(self).__qualname__}({', '.join(f'{f.name}={getattr(self, f.name)!r}' for f in shown)})"


@dataclass(frozen=True, slots=True)
class PostDocument:
    """Post one document of `type` (any of POSTABLE_TYPES)."""

    key: str
    type: DocType
    lines: tuple[Line, ...]
    location: str | None = None  # default location of the lines (source for outbound)
    to_location: str | None = None  # destination, for transfers
    counterparty: str | None = None  # supplier id or store id
    ref_id: int | None = None  # purchase order for a receipt, sale for a return, transfer_out for transfer_in
    reason: str | None = None  # ReturnReason or WriteOffReason code
    reason_text: str | None = None
    note: str | None = None
    payment: str | None = None  # for sales and returns: cash, card, wechat, alipay
    actor: str = "system"
    device: str | None = None
    external_ref: str | None = None  # another system's document, e.g. transfer:<from_store>:<doc_no>

    def __repr__(self) -> str:
        # Fingerprints of commands already posted are stored (see Line.__repr__): leave external_ref out when unset.
        shown = (f for f in fields(self) if not (f.name == "external_ref" and self.external_ref is None))
        return f"{type(self).__qualname__}({', '.join(f'{f.name}={getattr(self, f.name)!r}' for f in shown)})"


@dataclass(frozen=True, slots=True)
class SettledPart:
    """What the receiving store received of one shipped item and lot (all lines of it together), in base units."""

    sku: str
    lot: str
    received_qty: int


@dataclass(frozen=True, slots=True)
class SettleTransfer:
    """Settle a transfer out (调拨结算) once the receiving store has received it: the shipped goods leave this
    store's transit location and the difference on receipt (at this store's cost) goes to 1901."""

    key: str
    transfer_out_id: int
    received: tuple[SettledPart, ...]
    external_ref: str | None = None  # the receiving store's transfer_in, transfer_in:<store>:<doc_no>
    note: str | None = None
    actor: str = "sync"
    device: str | None = None


@dataclass(frozen=True, slots=True)
class ReverseDocument:
    """Reverse a posted document by a reversing document (冲销), never by changing it."""

    key: str
    document_id: int
    reason_text: str | None = None
    actor: str = "system"
    device: str | None = None


@dataclass(frozen=True, slots=True)
class PostEntry:
    """Post a finance entry (one of ENTRY_TYPES): a document with no lines or moves whose voucher the rule
    table makes from `amounts` (named, in fen) and `facts` (conditions choosing the rule variant)."""

    key: str
    type: DocType
    amounts: tuple[tuple[str, int], ...]
    counterparty: str | None = None  # supplier id: AP per supplier is by this
    ref_id: int | None = None  # the document this entry settles (a receipt, a write-off, ...)
    facts: tuple[tuple[str, str], ...] = ()
    note: str | None = None
    payment: str | None = None  # payment method of a supplier payment (bank by default)
    tax_trusted: bool = False  # the voucher is marked tax-trusted (a full three-way match)
    actor: str = "system"
    device: str | None = None


Command = PostDocument | ReverseDocument | PostEntry | SettleTransfer


@dataclass(frozen=True, slots=True)
class StockChange:
    """On hand of one item after a posting, by location (for the retained stock topic)."""

    sku: str
    on_hand: dict[str, int]


@dataclass(frozen=True, slots=True)
class PostResult:
    """What a command returned the first time it was posted; a replay returns the same."""

    key: str
    ok: bool
    code: str
    message: str
    message_en: str
    document_id: int | None = None
    doc_no: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    replayed: bool = False
    stock: tuple[StockChange, ...] = ()  # on hand after the posting, for the items it touched

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "ok": self.ok,
            "code": self.code,
            "message": self.message,
            "message_en": self.message_en,
            "document_id": self.document_id,
            "doc_no": self.doc_no,
            "detail": self.detail,
        }
