"""Pydantic models of the HTTP API: request bodies and responses, at the edge only.

Responses mirror the plain dicts of edge.ledger.queries; requests are turned into ledger commands by
the routes. Money is integer fen and quantities integer units everywhere; JSON numbers with a
fraction are refused rather than rounded.
"""

import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict

from edge.ledger.commands import DocType, ReturnReason, WriteOffReason
from edge.ledger.posting import MAX_LINES, MAX_PRICE_FEN, MAX_QTY, MAX_TEXT
from edge.security.roles import Role

MAX_DOCUMENT_ID = 2**63 - 1
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def text_without_nul(value: str) -> str:
    """Valid Unicode text without NUL (no database downstream stores it: PostgreSQL at HQ refuses NUL in text)."""
    return _encodable(value)


def _encodable(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("contains characters that are not valid Unicode text") from exc
    if "\x00" in value:  # no database downstream stores it (PostgreSQL at HQ refuses NUL in text)
        raise ValueError("contains a NUL character")
    return value


def _iso_date(value: object) -> object:
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        return date.fromisoformat(value)
    if isinstance(value, date):
        return value
    raise ValueError("expected a date as YYYY-MM-DD")


IsoDate = Annotated[date, BeforeValidator(_iso_date)]
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT), AfterValidator(_encodable)]
Code = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_encodable)]
MasterCode = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
DocumentId = Annotated[int, Field(ge=1, le=MAX_DOCUMENT_ID)]


class ErrorOut(BaseModel):
    """Every error: a stable code, a Chinese and an English message, and the facts behind it."""

    code: str = Field(examples=["insufficient_stock"])
    message: str = Field(examples=["库存不足: 商品 6901234567892 在 floor 需要 5, 可用 2, 缺 3"])
    message_en: str = Field(examples=["insufficient stock: item 6901234567892 at floor needs 5, available 2"])
    detail: dict[str, Any] = Field(
        default_factory=dict, examples=[{"item": "6901234567892", "location": "floor", "shortfall": 3}]
    )


# --- auth -------------------------------------------------------------------------------------


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds until the token expires")
    role: Role


class MeOut(BaseModel):
    username: str
    role: Role
    display_name: str
    permissions: list[str]


# --- master data ------------------------------------------------------------------------------


class ItemOut(BaseModel):
    sku: str
    name: str
    name_en: str | None
    category: str | None
    base_unit: str
    storage_class: Literal["ambient", "chilled", "frozen"]
    shelf_life_days: int | None
    vat_rate_bp: int = Field(description="VAT rate in basis points: 1300 = 13%")
    price_fen: int = Field(description="selling price per base unit, VAT included")
    cost_fen: int = Field(description="standard purchase price per base unit, VAT included")
    lot_tracked: bool
    active: bool
    on_hand_total: int | None = Field(
        None, description="with `with_stock=true`: on hand over all locations, base units"
    )


class BarcodeOut(BaseModel):
    code: str
    unit: str


class ItemDetailOut(ItemOut):
    units: dict[str, int] = Field(description="unit -> base units in it, e.g. {'piece': 1, 'case': 24}")
    barcodes: list[BarcodeOut]
    on_hand: dict[str, int] = Field(description="location -> quantity on hand in base units")


class BarcodeLookupOut(BaseModel):
    barcode: str
    unit: str
    factor: int = Field(description="base units in one `unit`")
    sku: str
    name: str
    name_en: str | None
    base_unit: str
    price_fen: int


class LocationOut(BaseModel):
    code: str
    name: str
    name_en: str
    kind: Literal["floor", "backroom", "cold", "freezer", "transit", "other"]
    storage_class: Literal["ambient", "chilled", "frozen"]


class SupplierOut(BaseModel):
    id: str
    name: str
    credit_code: str | None
    contact: str | None
    phone: str | None
    active: bool


class StoreOut(BaseModel):
    id: str
    name: str
    is_local: bool
    address: str | None


# --- documents --------------------------------------------------------------------------------


class DocumentOut(BaseModel):
    id: int
    doc_no: str
    type: DocType
    command_key: str
    posted_at: str
    business_date: date
    actor: str
    device: str | None
    location: str | None
    to_location: str | None
    counterparty: str | None
    ref_id: int | None
    reverses_id: int | None
    reason: str | None
    reason_text: str | None
    note: str | None
    payment: str | None
    gross_fen: int | None = Field(description="null for roles without amounts:read (the clerk)")
    tax_fen: int | None
    cost_fen: int | None


class DocumentLineOut(BaseModel):
    line_no: int
    sku: str
    code: str
    unit: str
    qty: int
    qty_base: int
    price_fen: int | None
    gross_fen: int | None = Field(description="null for roles without amounts:read")
    tax_fen: int | None
    vat_rate_bp: int
    lot: str | None
    expiry: date | None
    location: str | None


class DocumentMoveOut(BaseModel):
    id: int
    line_no: int
    sku: str
    location: str
    lot: str
    qty: int
    value_fen: int | None = Field(description="null for roles without amounts:read")


class VoucherLineOut(BaseModel):
    line_no: int
    account: str
    account_name: str
    debit_fen: int
    credit_fen: int
    memo: str | None


class VoucherOut(BaseModel):
    id: int
    voucher_no: str
    document_id: int
    date: date
    memo: str
    rule_version: str = Field(description="the voucher rule version that produced it (docs/finance.md)")
    tax_trusted: bool = Field(description="an AP voucher posted by a full three-way match (docs/three-way-match.md)")
    lines: list[VoucherLineOut]


class DocumentDetailOut(DocumentOut):
    lines: list[DocumentLineOut]
    moves: list[DocumentMoveOut]
    voucher: VoucherOut | None = Field(description="null when there is none or the caller may not read vouchers")
    reversed_by: int | None


class PostedOut(BaseModel):
    document_id: int
    doc_no: str
    message: str
    message_en: str
    document: DocumentDetailOut


# --- stock and books --------------------------------------------------------------------------


class StockRowOut(BaseModel):
    sku: str
    location: str
    lot: str = Field(description="'' for stock without a lot")
    qty: int
    value_fen: int
    expiry: date | None = None


class ValuationOut(BaseModel):
    value_fen: int
    by_location: dict[str, int]


class MoveOut(BaseModel):
    id: int
    document_id: int
    line_no: int
    sku: str
    location: str
    lot: str
    qty: int
    value_fen: int
    ts: str


class VerifyOut(BaseModel):
    """The ledger check; every list is empty and `ok` is true when the ledger is right."""

    model_config = ConfigDict(extra="allow")

    ok: bool
    checked: dict[str, int]
    balances: list[dict[str, Any]]
    invariants: list[dict[str, Any]]
    vouchers: list[dict[str, Any]]
    missing_vouchers: list[dict[str, Any]]
    outbox: list[dict[str, Any]]
    inventory_account: list[dict[str, Any]]
    audit: list[dict[str, Any]]


class HealthOut(BaseModel):
    """`status` is ok, degraded (a part reports false) or unavailable (the database does not answer)."""

    model_config = ConfigDict(extra="allow")

    status: Literal["ok", "degraded", "unavailable"]
    time: str
    database: bool


# --- requests ---------------------------------------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LineIn(_In):
    code: Code = Field(description="SKU or any of its barcodes; a case barcode means cases")
    qty: int = Field(ge=1, le=MAX_QTY, description="quantity in `unit` (or the barcode's unit, or the base unit)")
    price_fen: int | None = Field(None, ge=0, le=MAX_PRICE_FEN, description="unit price in fen, VAT included")
    unit: Code | None = None
    lot: Code | None = None
    expiry: IsoDate | None = Field(None, description="ISO date (YYYY-MM-DD), for lots received")
    location: MasterCode | None = Field(None, description="overrides the document's location for this line")


class CountLineIn(LineIn):
    qty: int = Field(ge=0, le=MAX_QTY, description="counted quantity in `unit`")


class DocumentIn(_In):
    lines: list[LineIn] = Field(min_length=1, max_length=MAX_LINES)
    location: MasterCode | None = Field(None, description="location of the lines; the sales floor by default")
    note: Text | None = None


class PurchaseOrderIn(DocumentIn):
    """采购订单: no stock effect."""

    counterparty: MasterCode = Field(description="supplier id")


class ReceiptIn(DocumentIn):
    """采购入库单: goods received, against a purchase order or free."""

    counterparty: MasterCode | None = Field(None, description="supplier id")
    ref_id: DocumentId | None = Field(None, description="the purchase order received against")


class SaleIn(DocumentIn):
    """销售单."""

    payment: Code | None = Field(None, description="cash (default), card, bank, wechat or alipay")


class CustomerReturnIn(DocumentIn):
    """顾客退货单, with a structured reason."""

    reason: Annotated[ReturnReason, Strict(False)] | Literal["包装破损", "口味不符", "物流超时", "质量问题", "其他"] = (
        Field(description="return reason code, or its Chinese label")
    )
    reason_text: Text | None = Field(None, description="required when reason is other (其他)")
    ref_id: DocumentId | None = Field(None, description="the sale returned against")
    payment: Code | None = None


class SupplierReturnIn(DocumentIn):
    """退供应商单."""

    counterparty: MasterCode | None = Field(None, description="supplier id")
    reason_text: Text | None = None


class TransferOutIn(DocumentIn):
    """调拨出库单: from `location` into transit."""

    counterparty: MasterCode | None = Field(None, description="destination store id")
    to_location: MasterCode | None = Field(None, description="destination location at the other store")


class TransferInIn(DocumentIn):
    """调拨入库单: from transit (against a transfer out) or from another store."""

    counterparty: MasterCode | None = Field(None, description="origin store id")
    ref_id: DocumentId | None = Field(None, description="the transfer out received")
    to_location: MasterCode | None = Field(None, description="receiving location (else `location`)")


class StocktakeIn(DocumentIn):
    """盘点单: counted quantities; the differences post as gains and losses."""

    lines: list[CountLineIn] = Field(min_length=1, max_length=MAX_LINES)  # type: ignore[assignment]


class WriteOffIn(DocumentIn):
    """报损单."""

    reason: WriteOffReason = Field(strict=False)
    reason_text: Text | None = Field(None, description="required when reason is other")


class GiftOutIn(DocumentIn):
    """赠品/样品发放单: goods given away (视同销售: output VAT on the deemed sale at the selling price)."""

    reason_text: Text | None = Field(None, description="what the gift or sample was for (promotion, tasting, ...)")


class SampleInIn(DocumentIn):
    """样品入库单: samples received free of charge, valued at `price_fen` (else the item's cost)."""

    counterparty: MasterCode | None = Field(None, description="supplier id")


class ReverseIn(_In):
    reason_text: Text | None = None


DOCUMENT_BODIES: dict[DocType, type[DocumentIn]] = {
    DocType.PURCHASE_ORDER: PurchaseOrderIn,
    DocType.RECEIPT: ReceiptIn,
    DocType.SALE: SaleIn,
    DocType.CUSTOMER_RETURN: CustomerReturnIn,
    DocType.SUPPLIER_RETURN: SupplierReturnIn,
    DocType.TRANSFER_OUT: TransferOutIn,
    DocType.TRANSFER_IN: TransferInIn,
    DocType.STOCKTAKE: StocktakeIn,
    DocType.WRITE_OFF: WriteOffIn,
    DocType.GIFT_OUT: GiftOutIn,
    DocType.SAMPLE_IN: SampleInIn,
}
