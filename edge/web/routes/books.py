"""Books (账簿): trial balance, general ledger, AP ageing, valuation, the books check and the voucher export;
see docs/books.md. Amounts are fen; a balance is a side (借 / 贷 / 平) and a non-negative amount."""

from collections.abc import Iterator
from dataclasses import asdict
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from edge.finance import books
from edge.finance.export import MEDIA_TYPES, export_vouchers
from edge.web.deps import Deps, Reader, require
from edge.web.errors import error_responses

router = APIRouter(prefix="/api/v1", tags=["books"], responses=error_responses(401, 403, 422, 500))

Side = Literal["借", "贷", "平"]
PeriodQuery = Annotated[str, Query(max_length=20, description="accounting period YYYY-MM, e.g. 2026-11 / 会计期间")]
CHUNK = 64 * 1024


class TrialBalanceRowOut(BaseModel):
    code: str
    name: str
    name_en: str
    kind: str
    level: int = Field(description="1 for first-level accounts (一级科目)")
    parent: str | None
    leaf: bool = Field(description="only leaf accounts take postings; parents are the sum of the accounts under them")
    normal_side: Side = Field(description="the side the account's balance normally sits on (余额方向)")
    opening_side: Side
    opening_debit_fen: int
    opening_credit_fen: int
    debit_fen: int = Field(description="debits of the period (red-letter lines count negative)")
    credit_fen: int
    closing_side: Side
    closing_debit_fen: int
    closing_credit_fen: int


class TrialBalanceTotalsOut(BaseModel):
    opening_debit_fen: int
    opening_credit_fen: int
    debit_fen: int
    credit_fen: int
    closing_debit_fen: int
    closing_credit_fen: int


class TrialBalanceOut(BaseModel):
    period: str
    first_day: date
    last_day: date
    rows: list[TrialBalanceRowOut]
    totals: TrialBalanceTotalsOut = Field(description="over the first-level accounts")
    balanced: bool


class LedgerLineOut(BaseModel):
    date: date
    voucher_id: int
    voucher_no: str
    line_no: int
    account: str
    memo: str
    voucher_memo: str
    document_id: int
    doc_no: str
    doc_type: str
    counterparty: str | None
    debit_fen: int
    credit_fen: int
    balance_side: Side = Field(description="running balance after this line")
    balance_fen: int


class GeneralLedgerOut(BaseModel):
    account: str
    name: str
    name_en: str
    kind: str
    normal_side: Side
    accounts: list[str] = Field(description="the account and the accounts under it, whose lines are listed")
    period: str
    first_day: date
    last_day: date
    opening_side: Side
    opening_fen: int
    lines: list[LedgerLineOut]
    debit_fen: int
    credit_fen: int
    closing_side: Side
    closing_fen: int


class OpenInvoiceOut(BaseModel):
    document_id: int
    doc_no: str
    doc_type: str
    date: date
    amount_fen: int
    open_fen: int
    age_days: int
    bucket: str


class SupplierAgeingOut(BaseModel):
    supplier: str | None
    name: str
    balance_fen: int = Field(description="amount owed (credit balance); negative when paid more than invoiced")
    buckets: dict[str, int] = Field(description="open amounts by age in days: 0-30, 31-60, 61-90, 90+")
    unapplied_fen: int = Field(description="payments and credit notes not matched to any invoice")
    open_invoices: list[OpenInvoiceOut]


class ApAgeingOut(BaseModel):
    as_of: date
    account: str
    bucket_labels: list[str]
    suppliers: list[SupplierAgeingOut]
    total_fen: int
    buckets: dict[str, int]
    unapplied_fen: int
    gl_balance_fen: int = Field(description="credit balance of the account in the general ledger on as_of")
    agrees: bool


class ValuationRowOut(BaseModel):
    sku: str
    name: str
    base_unit: str
    location: str
    qty: int
    value_fen: int
    unit_cost_fen: int | None


class BooksValuationOut(BaseModel):
    rows: list[ValuationRowOut]
    by_location: dict[str, int]
    total_fen: int
    stock_fen: int = Field(description="stock outside the transit location")
    transit_fen: int
    inventory_account: str
    inventory_gl_fen: int
    transit_account: str
    transit_gl_fen: int
    received_from_other_stores_fen: int = Field(
        description="booked to 1402 here by transfers in from other stores' transit; 1402 nets company-wide"
    )
    settled_to_other_stores_fen: int = Field(
        description="left in 1402 here by settled transfers out: what the receiving stores received (1402 nets)"
    )
    agrees: bool


class CheckProblemOut(BaseModel):
    code: str
    message: str
    message_en: str
    detail: dict[str, Any]


class BooksCheckOut(BaseModel):
    ok: bool
    problems: list[CheckProblemOut]
    figures: dict[str, int]
    checked: dict[str, int]


@router.get(
    "/books/trial-balance",
    response_model=TrialBalanceOut,
    dependencies=[require("books:read")],
    summary="Trial balance / 科目余额表",
)
def books_trial_balance(
    reader: Reader,
    period: PeriodQuery,
    include_empty: Annotated[bool, Query(description="also list accounts with nothing to show")] = False,
) -> dict[str, Any]:
    """Opening balance, debits and credits of the period and closing balance per account; parents are rolled
    up from the accounts under them; the totals over the first-level accounts balance."""
    return asdict(books.trial_balance(reader, period, include_empty=include_empty))


@router.get(
    "/books/general-ledger",
    response_model=GeneralLedgerOut,
    dependencies=[require("books:read")],
    summary="General ledger of an account / 明细账",
)
def books_general_ledger(
    reader: Reader,
    account: Annotated[str, Query(max_length=20, description="account code, e.g. 1405 / 科目代码")],
    period: PeriodQuery,
) -> dict[str, Any]:
    """Every voucher line of the account (and the accounts under it) in the period with the running balance."""
    return asdict(books.general_ledger(reader, account, period))


@router.get(
    "/books/ap-ageing",
    response_model=ApAgeingOut,
    dependencies=[require("books:read")],
    summary="Accounts payable ageing by supplier / 应付账款账龄",
)
def books_ap_ageing(
    reader: Reader,
    deps: Deps,
    as_of: Annotated[date | None, Query(description="YYYY-MM-DD; today (the store's date) when left out")] = None,
) -> dict[str, Any]:
    """The payable (220201) per supplier, aged by the dates of the invoices still open (FIFO)."""
    day = as_of or deps.today()
    return asdict(books.ap_ageing(reader, day))


@router.get(
    "/books/valuation",
    response_model=BooksValuationOut,
    dependencies=[require("books:read")],
    summary="Stock valuation by item and location / 存货余额表",
)
def books_valuation(reader: Reader) -> dict[str, Any]:
    """Stock at moving-average cost by item and location, with the check against 1405 and 1402."""
    return asdict(books.stock_valuation(reader))


@router.get(
    "/books/check",
    response_model=BooksCheckOut,
    dependencies=[require("books:read")],
    summary="Books check / 账账、账实核对",
)
def books_check(reader: Reader) -> dict[str, Any]:
    """Every voucher balances, only leaves carry postings, 1405 and 1402 equal the stock they stand for."""
    return asdict(books.books_check(reader))


def _chunks(content: bytes) -> Iterator[bytes]:
    for start in range(0, len(content), CHUNK):
        yield content[start : start + CHUNK]


@router.get(
    "/books/export",
    dependencies=[require("books:export")],
    summary="Export the vouchers of a period / 凭证导出 (Kingdee KIS, Yonyou)",
    response_class=StreamingResponse,
    responses={200: {"content": {media: {} for media in MEDIA_TYPES.values()}, "description": "the file"}},
)
def books_export(
    reader: Reader,
    period: PeriodQuery,
    layout: Annotated[Literal["kingdee", "yonyou"], Query(description="金蝶 KIS or 用友 import layout")],
    format: Annotated[Literal["csv", "xlsx"], Query(description="file format")],
    encoding: Annotated[
        Literal["utf-8-sig", "gbk"], Query(description="CSV only: UTF-8 with BOM (default) or GBK for older tools")
    ] = "utf-8-sig",
) -> StreamingResponse:
    """The vouchers of the period as a download in the chosen import layout; see docs/books.md."""
    exported = export_vouchers(reader, period, layout, format, encoding)
    return StreamingResponse(
        _chunks(exported.content),
        media_type=exported.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{exported.filename}"',
            "Content-Length": str(len(exported.content)),
            "X-Voucher-Count": str(exported.vouchers),
            "X-Line-Count": str(exported.lines),
        },
    )
