"""Purchase invoices (进项发票) and three-way match (三单匹配); see docs/three-way-match.md.

Invoices come in as JSON (`POST /api/v1/invoices`) or as a file (`POST /api/v1/invoices/import`: CSV, XLSX or
the 数电票 XML), are matched against their POs and receipts at once, and either post the AP entry
(tax-trusted) or wait in the exception queue for a purchaser: accept the difference (then another user
approves), ask for a credit note, reject, or recheck.
"""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Path, Query, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from edge.config import Settings
from edge.finance import ap
from edge.finance.errors import ImportTooLarge
from edge.finance.invoices import (
    MAX_IMPORT_BYTES,
    MAX_LINES,
    MAX_RECEIPT_IDS,
    InvoiceSource,
    invoice_from_mapping,
    parse_invoice_file,
)
from edge.finance.matching import MatchPolicy
from edge.security.users import User
from edge.web.deps import IDEMPOTENCY_KEY_PARAMETER, Deps, Reader, idempotency_key, require
from edge.web.errors import error_responses

API_KEY_PREFIX = "api:"
REPLAY_HEADER = "Idempotent-Replayed"
MAX_ID = 2**63 - 1

router = APIRouter(prefix="/api/v1", tags=["invoices"], responses=error_responses(401, 403, 500))

IdempotencyKey = Annotated[str, Depends(idempotency_key)]
InvoiceId = Annotated[int, Path(ge=1, le=MAX_ID, description="the invoice's id (not its 20-digit number)")]
ExceptionId = Annotated[int, Path(ge=1, le=MAX_ID, description="the exception's id")]
WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: {
        "description": "Entered and matched. A replay of the same Idempotency-Key answers the same body again.",
        "headers": {
            REPLAY_HEADER: {
                "description": "`true` when this is the stored answer to an earlier request with the same key",
                "schema": {"type": "string", "enum": ["true"]},
            }
        },
    },
    **error_responses(400, 404, 409, 413, 422, 503),
}
InvoiceStatus = Literal[
    "matched",
    "exception",
    "pending_approval",
    "awaiting_credit_note",
    "accepted",
    "credited",
    "rejected",
    "cancelled",
    "netted",
    "posted",
]


# --- bodies -------------------------------------------------------------------------------------


class InvoiceLineIn(BaseModel):
    """One invoice line. Amounts are yuan as text, exactly as printed: "1130.00"."""

    model_config = ConfigDict(extra="forbid")

    item_name: str = Field(min_length=1, max_length=200, examples=["*饮料*可乐 330ml"], description="项目名称")
    sku: str | None = Field(None, max_length=64, description="the item's SKU or barcode, when known")
    unit: str | None = Field(None, max_length=20, description="单位: a unit of the item (base unit when omitted)")
    qty: int = Field(ge=-10_000_000, le=10_000_000, description="数量, whole units (negative on a credit note)")
    unit_price: str | None = Field(None, max_length=40, description="单价 excl. VAT as printed (informational)")
    amount: str = Field(max_length=40, examples=["96.00"], description="金额, excl. VAT, yuan as text")
    tax_rate: str | int = Field(examples=["13%"], description='税率: "13%", "0.13", "9%", "6%", "3%", "0", "免税"')
    tax: str = Field(max_length=40, examples=["12.48"], description="税额, yuan as text")


class InvoiceIn(BaseModel):
    """A purchase invoice (数电票); a credit note (红字发票) names `original_invoice_no` and has negative lines."""

    model_config = ConfigDict(extra="forbid")

    invoice_no: str = Field(max_length=64, examples=["24312000000012345678"], description="发票号码, 20 digits")
    issue_date: str = Field(max_length=40, examples=["2024-06-02"], description="开票日期")
    seller_name: str = Field(max_length=200, description="销售方名称")
    seller_credit_code: str = Field(max_length=64, description="销售方统一社会信用代码/纳税人识别号")
    buyer_name: str = Field(max_length=200, description="购买方名称")
    buyer_credit_code: str = Field(max_length=64, description="购买方统一社会信用代码/纳税人识别号")
    po_id: int | None = Field(None, ge=1, le=MAX_ID, description="the purchase order (document id) it bills")
    receipt_ids: list[int] = Field(default_factory=list, max_length=MAX_RECEIPT_IDS, description="receipts it bills")
    original_invoice_no: str | None = Field(None, max_length=64, description="a credit note's original invoice")
    lines: list[InvoiceLineIn] = Field(min_length=1, max_length=MAX_LINES)


class ResolutionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(None, max_length=500, description="why (kept with the exception and in the audit)")


# --- responses ----------------------------------------------------------------------------------


class InvoiceLineOut(BaseModel):
    line_no: int
    item_name: str
    sku: str | None
    unit: str | None
    qty: int
    unit_price: str | None
    amount_fen: int
    amount: str
    tax_rate_bp: int = Field(description="1300 = 13%")
    tax_fen: int
    tax: str
    matched_sku: str | None = Field(description="the item the match found for this line")


class ReasonOut(BaseModel):
    code: str = Field(examples=["price_difference"])
    line_no: int | None
    message: str = Field(examples=["第 1 行: 价差 30 分: 商品 COLA 发票金额 96.30 元，按订单价应为 96.00 元 (不含税)"])
    message_en: str
    detail: dict[str, Any]


class ExceptionOut(BaseModel):
    id: int
    invoice_id: int
    opened_at: str
    checked_at: str
    reasons: list[ReasonOut]
    open: bool
    resolution: str | None
    accepted_by: str | None
    accepted_at: str | None
    accept_note: str | None
    approved_by: str | None
    approved_at: str | None
    credit_requested_by: str | None
    credit_requested_at: str | None
    closed_by: str | None
    closed_at: str | None
    note: str | None


class ClearanceOut(BaseModel):
    invoice_line_no: int
    receipt_id: int
    receipt_line_no: int
    po_id: int
    qty_base: int
    net_fen: int


class ReturnClearanceOut(BaseModel):
    """What a credit note cleared of a supplier return's value in 220202 暂估应付."""

    credit_line_no: int
    return_id: int = Field(description="the supplier_return document")
    return_line_no: int
    net_fen: int


class CreditNoteRefOut(BaseModel):
    id: int
    invoice_no: str
    status: InvoiceStatus
    net_fen: int
    tax_fen: int


class InvoiceSummaryOut(BaseModel):
    id: int
    invoice_no: str
    kind: Literal["invoice", "credit_note"]
    original_invoice_no: str | None
    issue_date: str
    seller_name: str
    seller_credit_code: str
    supplier_id: str | None
    net_fen: int
    tax_fen: int
    source: Literal["api", "csv", "xlsx", "xml"]
    status: InvoiceStatus
    entered_at: str
    entered_by: str
    document_id: int | None = Field(description="the AP entry (purchase_invoice or credit_note document)")
    tax_trusted: bool
    applies_to: int | None = Field(description="a credit note: the invoice it is netted with")


class InvoiceOut(InvoiceSummaryOut):
    buyer_name: str
    buyer_credit_code: str
    po_id: int | None
    receipt_ids: list[int]
    updated_at: str
    lines: list[InvoiceLineOut]
    exception: ExceptionOut | None
    clearances: list[ClearanceOut] = Field(description="receipt quantities this invoice cleared when it was booked")
    return_clearances: list[ReturnClearanceOut] = Field(
        description="for a credit note: the supplier returns whose value it cleared from 220202"
    )
    credit_notes: list[CreditNoteRefOut]


class EnteredOut(BaseModel):
    invoices: list[InvoiceOut]
    replayed: bool
    ignored_columns: list[str] = Field(description="columns of an import file that were not read")


class ExceptionListOut(ExceptionOut):
    invoice_no: str
    kind: Literal["invoice", "credit_note"]
    status: InvoiceStatus
    seller_name: str
    seller_credit_code: str
    net_fen: int
    tax_fen: int
    entered_at: str


class ExceptionDetailOut(ExceptionOut):
    invoice: InvoiceOut


# --- helpers ------------------------------------------------------------------------------------


def match_policy(settings: Settings) -> MatchPolicy:
    return MatchPolicy(
        qty_tolerance=settings.match_qty_tolerance,
        price_tolerance_fen=settings.match_price_tolerance_fen,
        tax_tolerance_fen=settings.match_tax_tolerance_fen,
        window_hours=settings.match_window_hours,
    )


async def _enter(deps: Deps, request: ap.EntryRequest) -> JSONResponse:
    result = await deps.writer.execute_posting(ap.enter_invoices, request)
    body = EnteredOut.model_validate(result).model_dump(mode="json")
    headers = {REPLAY_HEADER: "true"} if result["replayed"] else None
    return JSONResponse(body, status_code=201, headers=headers)


# --- entering -----------------------------------------------------------------------------------


@router.post(
    "/invoices",
    status_code=201,
    response_model=EnteredOut,
    responses=WRITE_RESPONSES,
    openapi_extra={"parameters": [IDEMPOTENCY_KEY_PARAMETER]},
    summary="Enter a purchase invoice / 录入进项发票",
)
async def enter_invoice(
    body: InvoiceIn, deps: Deps, user: Annotated[User, require("invoices:write")], key: IdempotencyKey
) -> JSONResponse:
    """Enter one invoice (or credit note) and match it at once: a full match posts the AP entry, tax-trusted;
    anything else opens an exception with the reasons. A duplicate invoice number is refused (409)."""
    invoice = invoice_from_mapping(body.model_dump())
    request = ap.EntryRequest(
        invoices=(invoice,),
        source=InvoiceSource.API,
        key=API_KEY_PREFIX + key,
        actor=user.username,
        policy=match_policy(deps.settings),
        company_credit_code=deps.settings.company_credit_code,
    )
    return await _enter(deps, request)


@router.post(
    "/invoices/import",
    status_code=201,
    response_model=EnteredOut,
    responses=WRITE_RESPONSES,
    openapi_extra={"parameters": [IDEMPOTENCY_KEY_PARAMETER]},
    summary="Import invoices from CSV, XLSX or 数电票 XML / 导入发票",
)
async def import_invoices(
    deps: Deps,
    user: Annotated[User, require("invoices:write")],
    key: IdempotencyKey,
    file: Annotated[UploadFile, File(description=f"CSV, XLSX or 数电票 XML, at most {MAX_IMPORT_BYTES} bytes")],
) -> JSONResponse:
    """Import a file as a whole: one row per invoice line (CSV/XLSX, Chinese or English headers) or one 数电票
    XML. A bad row refuses the whole file, naming the row and field; nothing is half-written."""
    data = await file.read(MAX_IMPORT_BYTES + 1)
    if len(data) > MAX_IMPORT_BYTES:
        raise ImportTooLarge(len(data), MAX_IMPORT_BYTES)
    parsed = await run_in_threadpool(parse_invoice_file, data, file.filename, file.content_type)
    request = ap.EntryRequest(
        invoices=parsed.invoices,
        source=parsed.source,
        key=f"{API_KEY_PREFIX}import:{key}",
        actor=user.username,
        policy=match_policy(deps.settings),
        company_credit_code=deps.settings.company_credit_code,
        ignored_columns=parsed.ignored_columns,
        rows=parsed.rows,
    )
    return await _enter(deps, request)


# --- reading ------------------------------------------------------------------------------------


@router.get(
    "/invoices",
    response_model=list[InvoiceSummaryOut],
    dependencies=[require("invoices:read")],
    summary="Purchase invoices / 进项发票列表",
)
def list_invoices(
    reader: Reader,
    status: Annotated[InvoiceStatus | None, Query(description="only invoices in this status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> list[dict[str, Any]]:
    """Invoices and credit notes, newest first."""
    return ap.list_invoices(reader, status=status, limit=limit, offset=offset)


@router.get(
    "/invoices/exceptions",
    response_model=list[ExceptionListOut],
    dependencies=[require("invoices:read")],
    summary="Three-way-match exception queue / 三单匹配异常",
)
def list_exceptions(
    reader: Reader,
    open_only: Annotated[bool, Query(alias="open", description="only exceptions not yet closed")] = True,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> list[dict[str, Any]]:
    """The queue, oldest first, each with the reasons in words (Chinese and English) and the numbers."""
    return ap.list_exceptions(reader, open_only=open_only, limit=limit, offset=offset)


@router.get(
    "/invoices/exceptions/{exception_id}",
    response_model=ExceptionDetailOut,
    dependencies=[require("invoices:read")],
    responses=error_responses(404, 422),
    summary="One exception with its invoice / 异常详情",
)
def get_exception(reader: Reader, exception_id: ExceptionId) -> dict[str, Any]:
    return ap.get_exception(reader, exception_id)


@router.get(
    "/invoices/{invoice_id}",
    response_model=InvoiceOut,
    dependencies=[require("invoices:read")],
    responses=error_responses(404, 422),
    summary="One invoice with lines, match result and what it cleared / 发票详情",
)
def get_invoice(reader: Reader, invoice_id: InvoiceId) -> dict[str, Any]:
    return ap.get_invoice(reader, invoice_id)


# --- resolving ----------------------------------------------------------------------------------

RESOLVE_RESPONSES = error_responses(404, 409, 422, 503)


async def _resolve(
    deps: Deps, exception_id: int, action: ap.Resolution, user: User, body: ResolutionIn | None
) -> dict[str, Any]:
    request = ap.ResolutionRequest(
        exception_id=exception_id,
        action=action,
        actor=user.username,
        policy=match_policy(deps.settings),
        note=body.note if body else None,
    )
    result: dict[str, Any] = await deps.writer.execute_posting(ap.resolve_exception, request)
    return result


@router.post(
    "/invoices/exceptions/{exception_id}/accept",
    response_model=ExceptionDetailOut,
    responses=RESOLVE_RESPONSES,
    summary="Accept the difference (needs another user's approval) / 接受差异",
)
async def accept_difference(
    deps: Deps,
    exception_id: ExceptionId,
    user: Annotated[User, require("invoices:resolve")],
    body: ResolutionIn | None = None,
) -> dict[str, Any]:
    """The invoice waits for approval by another user with `invoices:approve`; then its AP entry posts, not
    tax-trusted, with the difference to cost."""
    return await _resolve(deps, exception_id, ap.Resolution.ACCEPT, user, body)


@router.post(
    "/invoices/exceptions/{exception_id}/approve",
    response_model=ExceptionDetailOut,
    responses=RESOLVE_RESPONSES,
    summary="Approve an accepted difference / 审批差异",
)
async def approve_difference(
    deps: Deps,
    exception_id: ExceptionId,
    user: Annotated[User, require("invoices:approve")],
    body: ResolutionIn | None = None,
) -> dict[str, Any]:
    """Posts the AP entry (not tax-trusted). The approver must not be the user who accepted (409)."""
    return await _resolve(deps, exception_id, ap.Resolution.APPROVE, user, body)


@router.post(
    "/invoices/exceptions/{exception_id}/request-credit-note",
    response_model=ExceptionDetailOut,
    responses=RESOLVE_RESPONSES,
    summary="Ask the supplier for a credit note / 要求红字发票",
)
async def request_credit_note(
    deps: Deps,
    exception_id: ExceptionId,
    user: Annotated[User, require("invoices:resolve")],
    body: ResolutionIn | None = None,
) -> dict[str, Any]:
    """The invoice waits; the credit note, when entered, is netted with it and matched again."""
    return await _resolve(deps, exception_id, ap.Resolution.REQUEST_CREDIT_NOTE, user, body)


@router.post(
    "/invoices/exceptions/{exception_id}/reject",
    response_model=ExceptionDetailOut,
    responses=RESOLVE_RESPONSES,
    summary="Reject the invoice / 拒收发票",
)
async def reject_invoice(
    deps: Deps,
    exception_id: ExceptionId,
    user: Annotated[User, require("invoices:resolve")],
    body: ResolutionIn | None = None,
) -> dict[str, Any]:
    """Nothing is posted; the invoice is kept as rejected."""
    return await _resolve(deps, exception_id, ap.Resolution.REJECT, user, body)


@router.post(
    "/invoices/exceptions/{exception_id}/recheck",
    response_model=ExceptionDetailOut,
    responses=RESOLVE_RESPONSES,
    summary="Match again (e.g. the goods arrived after the invoice) / 重新核对",
)
async def recheck_invoice(
    deps: Deps,
    exception_id: ExceptionId,
    user: Annotated[User, require("invoices:resolve")],
    body: ResolutionIn | None = None,
) -> dict[str, Any]:
    """Runs the three-way match again on today's facts; a full match posts the AP entry, tax-trusted."""
    return await _resolve(deps, exception_id, ap.Resolution.RECHECK, user, body)
