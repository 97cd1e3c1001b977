"""Supplier qualification cabinet (资质档案), freezes, review tickets and bank account changes; see docs/suppliers.md.

Papers are uploaded as JPEG, PNG or PDF (multipart), read on the box by OCR and kept under
`<data_dir>/papers/<sha256>.<ext>`; a person confirms the reading before the paper counts. Writes go through the
one writer; the domain is edge/finance/compliance.py.
"""

import hashlib
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from edge.finance import compliance as cab
from edge.finance.errors import PaperTooLarge, UnknownComplianceRecord
from edge.finance.ocr import OcrEngine
from edge.finance.papers import MIME_TYPES, FileType, PaperKind, read_fields, sniff_upload
from edge.security.users import User
from edge.web.amounts import as_seen_by
from edge.web.deps import IDEMPOTENCY_KEY_PARAMETER, Deps, Reader, idempotency_key, read, require
from edge.web.errors import error_responses
from edge.web.paper_files import paper_path, store_paper_file

REPLAY_HEADER = "Idempotent-Replayed"
MAX_ID = 2**63 - 1

router = APIRouter(prefix="/api/v1", tags=["compliance"], responses=error_responses(401, 403, 500))

IdempotencyKey = Annotated[str, Depends(idempotency_key)]
SupplierId = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$", description="the supplier's id")]
PaperId = Annotated[int, Path(ge=1, le=MAX_ID, description="the paper's id")]
FreezeId = Annotated[int, Path(ge=1, le=MAX_ID, description="the freeze's id")]
TicketId = Annotated[int, Path(ge=1, le=MAX_ID, description="the review ticket's id")]
ChangeId = Annotated[int, Path(ge=1, le=MAX_ID, description="the bank account change's id")]
DocumentId = Annotated[int, Path(ge=1, le=MAX_ID, description="the purchase order's document id")]
SupplierFilter = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._-]{1,64}$", description="only this supplier")]
ReasonText = Annotated[str, Field(min_length=1, max_length=500)]
CREATED_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: {
        "description": "Created. A replay of the same Idempotency-Key answers the record it created the first time.",
        "headers": {
            REPLAY_HEADER: {
                "description": "`true` when the key was used before and this is the record it created",
                "schema": {"type": "string", "enum": ["true"]},
            }
        },
    },
    **error_responses(400, 404, 409, 422, 503),
}
WRITE_RESPONSES = error_responses(404, 409, 422, 503)


# --- models --------------------------------------------------------------------------------------


class SupplierIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$", examples=["sup-huarun"])
    name: str = Field(min_length=1, max_length=200, examples=["上海华润饮料有限公司"])
    credit_code: str | None = Field(None, max_length=40, description="统一社会信用代码, checked per GB 32100-2015")
    contact: str | None = Field(None, max_length=100)
    phone: str | None = Field(None, max_length=50)
    registered_address: str | None = Field(None, max_length=500, description="注册地址, compared with the licence")
    food_supplier: bool = Field(False, description="supplies food: the food business licence is then required")


class SupplierPatch(BaseModel):
    """Only the fields sent change. The bank account changes only through a bank account change request."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    credit_code: str | None = Field(None, max_length=40)
    contact: str | None = Field(None, max_length=100)
    phone: str | None = Field(None, max_length=50)
    registered_address: str | None = Field(None, max_length=500)
    food_supplier: bool | None = None


class CabinetSupplierOut(BaseModel):
    id: str
    name: str
    credit_code: str | None
    contact: str | None
    phone: str | None
    active: bool
    registered_address: str | None
    food_supplier: bool
    bank_name: str | None
    bank_account: str | None


class AddressCheckOut(BaseModel):
    match: bool
    differences: list[str] = Field(description="parts that differ: province, city, district, street")
    left: dict[str, str | None] = Field(description="the licence's address, normalised")
    right: dict[str, str | None] = Field(description="the registered address, normalised")


class SupplierChangeOut(BaseModel):
    supplier: CabinetSupplierOut
    address_check: AddressCheckOut | None
    freeze: int | None = Field(description="the freeze opened because the new address differs from the licence")
    ticket: int | None


class PaperFieldsIn(BaseModel):
    """Corrections to the fields read: those sent replace the reading (null clears one), the others stay as read.
    Dates as YYYY-MM-DD (or 2024年05月10日)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=500)
    credit_code: str | None = Field(None, max_length=500)
    address: str | None = Field(None, max_length=500)
    legal_rep: str | None = Field(None, max_length=500)
    valid_from: str | None = Field(None, max_length=40)
    valid_to: str | None = Field(None, max_length=40)
    long_term: bool = Field(False, description="长期: no end date")
    established: str | None = Field(None, max_length=40)
    bank_name: str | None = Field(None, max_length=500)
    bank_account: str | None = Field(None, max_length=500)
    licence_no: str | None = Field(None, max_length=500)


class PaperFieldsOut(BaseModel):
    name: str | None
    credit_code: str | None
    address: str | None
    legal_rep: str | None
    valid_from: date | None
    valid_to: date | None
    long_term: bool
    established: date | None
    bank_name: str | None
    bank_account: str | None
    licence_no: str | None


class NoteOut(BaseModel):
    field: str
    message: str
    message_en: str


class ReadingOut(BaseModel):
    fields: PaperFieldsOut
    detected_kind: PaperKind | None = Field(description="the kind the paper's title names")
    notes: list[NoteOut] = Field(description="what a person should check before confirming")


class PaperOut(BaseModel):
    id: int
    supplier: str
    kind: PaperKind
    state: Literal["uploaded", "confirmed", "rejected", "superseded"]
    file_type: FileType
    size_bytes: int
    sha256: str
    filename: str | None
    proposed: ReadingOut = Field(description="the fields read by OCR, before a person confirmed them")
    fields: PaperFieldsOut | None = Field(description="the fields as confirmed")
    valid_from: date | None
    valid_to: date | None
    uploaded_by: str
    uploaded_at: str
    confirmed_by: str | None
    confirmed_at: str | None
    rejected_by: str | None
    rejected_at: str | None
    reject_reason: str | None
    superseded_by: int | None


class OcrLineOut(BaseModel):
    text: str
    box: list[list[int]] = Field(description="four corners, pixels of the page image")
    score: float
    page: int


class OcrOut(BaseModel):
    paper: int
    lines: list[OcrLineOut]
    pages: int
    seconds: float
    proposed: ReadingOut


class ConfirmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fields: PaperFieldsIn | None = Field(
        None, description="corrections over the OCR reading; omit to confirm it as read"
    )


class ConfirmOut(BaseModel):
    paper: PaperOut
    address_check: AddressCheckOut | None
    freeze: int | None = Field(description="opened when the licence address differs from the registered one")
    ticket: int | None
    bank_change: int | None = Field(description="opened when a bank paper names another account")
    supplier_set: dict[str, Any] = Field(description="supplier fields filled in from the paper")


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: ReasonText


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: ReasonText


class OptionalNoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(None, max_length=500)


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution: ReasonText
    accept_licence_address: bool = Field(False, description="the licence is right: take its address as registered")


class BankChangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bank_name: str = Field(min_length=1, max_length=100, examples=["招商银行上海分行"])
    bank_account: str = Field(min_length=1, max_length=64, examples=["6225880123456789"])
    reason: ReasonText


class FreezeOut(BaseModel):
    id: int
    supplier: str
    reason: cab.FreezeReason
    note: str
    detail: dict[str, Any]
    opened_by: str
    opened_at: str
    ticket: int | None
    bank_change: int | None
    open: bool
    lifted_by: str | None
    lifted_at: str | None
    lift_reason: str | None


class TicketOut(BaseModel):
    id: int
    supplier: str
    kind: Literal["address_mismatch", "manual"]
    summary: str
    summary_en: str
    detail: dict[str, Any]
    paper: int | None
    opened_by: str
    opened_at: str
    state: Literal["open", "resolved"]
    resolved_by: str | None
    resolved_at: str | None
    resolution: str | None


class TicketDetailOut(TicketOut):
    freezes: list[FreezeOut]


class BankChangeOut(BaseModel):
    id: int
    supplier: str
    old_bank_name: str | None
    old_bank_account: str | None
    new_bank_name: str
    new_bank_account: str
    reason: str
    paper: int | None
    requested_by: str
    requested_at: str
    state: Literal["pending", "approved", "rejected"]
    decided_by: str | None
    decided_at: str | None
    decision_note: str | None
    freeze: int | None


class PaperStateOut(BaseModel):
    kind: PaperKind
    paper: int | None
    expires_on: date | None
    days_left: int | None


class FreezeInfoOut(BaseModel):
    id: int
    reason: cab.FreezeReason
    note: str
    opened_by: str
    opened_at: str
    ticket: int | None
    bank_change: int | None


class StatusOut(BaseModel):
    supplier: str
    name: str
    today: date
    food_supplier: bool
    required: list[PaperKind]
    complete: bool = Field(description="every required paper confirmed and not expired")
    frozen: bool
    payable: bool = Field(description="complete and not frozen")
    valid: list[PaperStateOut]
    missing: list[PaperKind]
    expired: list[PaperStateOut]
    expiring: list[PaperStateOut]
    pending: list[int] = Field(description="uploaded papers awaiting a person's confirmation")
    freezes: list[FreezeInfoOut]
    problems: list[str]
    problems_en: list[str]


class AlertOut(BaseModel):
    id: int
    paper: int
    supplier: str
    supplier_name: str
    kind: PaperKind
    threshold_days: int = Field(description="30 or 7 days ahead, 0 when expired")
    expires_on: date
    days_left: int
    raised_on: date
    message: str
    message_en: str
    published_at: str | None


class ApprovalOut(BaseModel):
    document_id: int
    supplier: str | None
    gross_fen: int
    approved_by: str
    approved_at: str
    business_date: date


class PurchaseOrderApprovalOut(BaseModel):
    approved_by: str
    approved_at: str


class PurchaseOrderOut(BaseModel):
    """A purchase order (采购订单) with its approval state; the lines are on `GET /api/v1/documents/{id}`."""

    id: int
    doc_no: str
    business_date: date
    posted_at: str
    actor: str
    supplier: str | None
    supplier_name: str | None
    gross_fen: int | None = Field(description="null for roles without amounts:read (the clerk)")
    tax_fen: int | None
    note: str | None
    reversed_by: int | None = Field(description="the reversing document, when the PO was reversed")
    approval: PurchaseOrderApprovalOut | None = Field(description="null while not approved")


# --- helpers -------------------------------------------------------------------------------------


def business_date(deps: Deps) -> date:
    return deps.today()


def threshold_fen(deps: Deps) -> int:
    return deps.settings.po_papers_required_above_yuan * 100


async def ocr_engine(request: Request) -> OcrEngine:
    """One OCR engine per app, loaded on first use (async: runs on the loop, so two requests cannot race)."""
    engine: OcrEngine | None = getattr(request.app.state, "ocr_engine", None)
    if engine is None:
        engine = OcrEngine()
        request.app.state.ocr_engine = engine
    return engine


def _created(body: dict[str, Any], created: cab.Created) -> JSONResponse:
    headers = {REPLAY_HEADER: "true"} if created.replayed else None
    return JSONResponse(body, status_code=201, headers=headers)


def _paper_out(paper: dict[str, Any]) -> dict[str, Any]:
    return PaperOut.model_validate(paper).model_dump(mode="json")


# --- suppliers -----------------------------------------------------------------------------------


@router.post(
    "/suppliers",
    status_code=201,
    response_model=CabinetSupplierOut,
    responses=CREATED_RESPONSES,
    openapi_extra={"parameters": [IDEMPOTENCY_KEY_PARAMETER]},
    summary="Add a supplier / 新增供应商",
)
async def create_supplier(
    body: SupplierIn, deps: Deps, user: Annotated[User, require("suppliers:write")], key: IdempotencyKey
) -> JSONResponse:
    """A new supplier with its registered address and food flag. The bank account comes from a confirmed bank
    account paper or an approved change, never from here."""
    supplier = cab.SupplierInput(**body.model_dump())
    created = await deps.writer.execute(cab.create_supplier, supplier, user.username, deps.clock(), key)
    row = await read(deps, cab.get_supplier, str(created.id))
    return _created(CabinetSupplierOut.model_validate(row).model_dump(mode="json"), created)


@router.get(
    "/suppliers/{supplier_id}",
    response_model=CabinetSupplierOut,
    dependencies=[require("compliance:read")],
    responses=error_responses(404, 422),
    summary="One supplier as the cabinet knows it / 供应商详情",
)
def get_supplier(supplier_id: SupplierId, reader: Reader) -> dict[str, Any]:
    """Registered address, food flag and the bank account in force (from a confirmed paper or an approved change)."""
    return cab.get_supplier(reader, supplier_id)


@router.patch(
    "/suppliers/{supplier_id}",
    response_model=SupplierChangeOut,
    responses=WRITE_RESPONSES,
    summary="Change a supplier / 修改供应商",
)
async def update_supplier(
    supplier_id: SupplierId, body: SupplierPatch, deps: Deps, user: Annotated[User, require("suppliers:write")]
) -> dict[str, Any]:
    """A new registered address is compared with the confirmed business licence at once: a mismatch freezes
    payments and opens a review ticket."""
    changes = body.model_dump(exclude_unset=True)
    result: dict[str, Any] = await deps.writer.execute(
        cab.update_supplier, supplier_id, changes, user.username, deps.clock()
    )
    return result


@router.get(
    "/suppliers/{supplier_id}/compliance",
    response_model=StatusOut,
    dependencies=[require("compliance:read")],
    responses=error_responses(404, 422),
    summary="A supplier's qualification status / 供应商资质状态",
)
def supplier_status(
    supplier_id: SupplierId,
    reader: Reader,
    deps: Deps,
    on: Annotated[date | None, Query(description="the day to judge on (default: today)")] = None,
) -> dict[str, Any]:
    """Complete, missing, expired and expiring papers, open freezes, and whether the supplier may be paid."""
    return cab.qualification_status(reader, supplier_id, on or business_date(deps)).to_json()


# --- papers --------------------------------------------------------------------------------------


@router.post(
    "/suppliers/{supplier_id}/papers",
    status_code=201,
    response_model=PaperOut,
    responses={**CREATED_RESPONSES, **error_responses(413)},
    openapi_extra={"parameters": [IDEMPOTENCY_KEY_PARAMETER]},
    summary="Upload a paper / 上传资质证照",
)
async def upload_paper(
    supplier_id: SupplierId,
    deps: Deps,
    user: Annotated[User, require("suppliers:papers")],
    key: IdempotencyKey,
    kind: Annotated[PaperKind, Form(description="business_licence, bank_account, general_taxpayer or food_licence")],
    file: Annotated[UploadFile, File(description="JPEG, PNG or PDF (first 3 pages read)")],
    engine: Annotated[OcrEngine, Depends(ocr_engine)],
) -> JSONResponse:
    """Upload a paper: the type is told by its content (JPEG, PNG, PDF), the size is limited
    (`papers_max_upload_bytes`), the text is read by OCR on the box and the fields proposed; a person confirms
    them with `POST /papers/{paper_id}/confirm` before the paper counts."""
    limit = deps.settings.papers_max_upload_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise PaperTooLarge(
            f"文件过大: 超过上限 {limit} 字节", f"file too large: more than {limit} bytes", max_bytes=limit
        )
    file_type = sniff_upload(data, limit)
    digest = hashlib.sha256(data).hexdigest()
    fingerprint = cab.upload_fingerprint(supplier_id, kind.value, digest)
    replay = await read(deps, cab.find_request, key, "paper.upload", fingerprint)
    if replay is None:
        await read(deps, cab.get_supplier, supplier_id)  # 404 before the OCR's seconds
        result = await run_in_threadpool(engine.read, data, file_type)
        await run_in_threadpool(store_paper_file, deps.settings.data_dir, data, file_type)
        upload = cab.PaperUpload(
            supplier=supplier_id,
            kind=kind.value,
            sha256=digest,
            file_type=file_type.value,
            size_bytes=len(data),
            filename=(file.filename or "")[:200] or None,
            ocr={
                "lines": [line.to_json() for line in result.lines],
                "pages": result.pages,
                "seconds": round(result.seconds, 3),
            },
            reading=read_fields(list(result.lines)).to_json(),
        )
        replay = await deps.writer.execute(cab.record_paper, upload, user.username, deps.clock(), key)
    paper = await read(deps, cab.get_paper, int(replay.id))
    return _created(_paper_out(paper), replay)


@router.get(
    "/suppliers/{supplier_id}/papers",
    response_model=list[PaperOut],
    dependencies=[require("compliance:read")],
    summary="A supplier's papers / 供应商证照",
)
def list_papers(
    supplier_id: SupplierId,
    reader: Reader,
    state: Annotated[
        Literal["uploaded", "confirmed", "rejected", "superseded"] | None, Query(description="only this state")
    ] = None,
) -> list[dict[str, Any]]:
    cab.get_supplier(reader, supplier_id)
    return cab.list_papers(reader, supplier_id, state)


@router.get(
    "/papers/{paper_id}",
    response_model=PaperOut,
    dependencies=[require("compliance:read")],
    responses=error_responses(404),
    summary="One paper / 证照详情",
)
def get_paper(paper_id: PaperId, reader: Reader) -> dict[str, Any]:
    return cab.get_paper(reader, paper_id)


@router.get(
    "/papers/{paper_id}/file",
    dependencies=[require("compliance:read")],
    responses={
        200: {"description": "the uploaded file", "content": {m: {} for m in MIME_TYPES.values()}},
        **error_responses(404),
    },
    response_class=FileResponse,
    summary="The paper's image or PDF / 证照原件",
)
def get_paper_file(paper_id: PaperId, reader: Reader, deps: Deps) -> FileResponse:
    paper = cab.get_paper(reader, paper_id)
    path = paper_path(deps.settings.data_dir, paper["sha256"], paper["file_type"])
    if not path.is_file():
        raise UnknownComplianceRecord("paper file", "证照文件", paper_id)
    return FileResponse(
        path,
        media_type=MIME_TYPES[FileType(paper["file_type"])],
        headers={"Content-Disposition": f'inline; filename="paper-{paper_id}.{paper["file_type"]}"'},
    )


@router.get(
    "/papers/{paper_id}/ocr",
    response_model=OcrOut,
    dependencies=[require("compliance:read")],
    responses=error_responses(404),
    summary="The paper's OCR result / 识别结果",
)
def get_paper_ocr(paper_id: PaperId, reader: Reader) -> dict[str, Any]:
    """Every text line OCR found, with its box and confidence, and the fields proposed from them."""
    paper = cab.get_paper(reader, paper_id, with_ocr=True)
    return {"paper": paper_id, **paper["ocr"], "proposed": paper["proposed"]}


@router.post(
    "/papers/{paper_id}/confirm",
    response_model=ConfirmOut,
    responses=WRITE_RESPONSES,
    summary="Confirm a paper's fields / 确认证照信息",
)
async def confirm_paper(
    paper_id: PaperId,
    deps: Deps,
    user: Annotated[User, require("suppliers:papers")],
    body: Annotated[ConfirmIn | None, Body()] = None,
) -> dict[str, Any]:
    """A person confirms the OCR reading, corrected where needed; then the paper counts. The credit code is
    validated (GB 32100-2015); a licence address unlike the registered one freezes payments at once and opens a
    review ticket; a bank paper naming another account opens a bank account change."""
    fields = body.fields.model_dump(exclude_unset=True) if body is not None and body.fields is not None else None
    result: dict[str, Any] = await deps.writer.execute(cab.confirm_paper, paper_id, fields, user.username, deps.clock())
    # A paper confirmed inside a warning window raises its alert at once (the API lists it now; the box publishes
    # it on MQTT within the hour).
    today = deps.today()
    await deps.writer.execute(cab.due_expiry_alerts, today, tuple(deps.settings.paper_expiry_warn_days))
    return result


@router.post(
    "/papers/{paper_id}/reject",
    response_model=PaperOut,
    responses=WRITE_RESPONSES,
    summary="Reject a paper / 驳回证照",
)
async def reject_paper(
    paper_id: PaperId, body: ReasonIn, deps: Deps, user: Annotated[User, require("suppliers:papers")]
) -> dict[str, Any]:
    result: dict[str, Any] = await deps.writer.execute(
        cab.reject_paper, paper_id, body.reason, user.username, deps.clock()
    )
    return result


# --- freezes and review tickets ------------------------------------------------------------------


@router.get(
    "/freezes",
    response_model=list[FreezeOut],
    dependencies=[require("compliance:read")],
    summary="Payment freezes / 付款冻结",
)
def list_freezes(
    reader: Reader,
    supplier: SupplierFilter = None,
    open: Annotated[bool, Query(description="only freezes not yet lifted")] = False,
) -> list[dict[str, Any]]:
    return cab.list_freezes(reader, supplier, open)


@router.post(
    "/suppliers/{supplier_id}/freezes",
    status_code=201,
    response_model=FreezeOut,
    responses=CREATED_RESPONSES,
    openapi_extra={"parameters": [IDEMPOTENCY_KEY_PARAMETER]},
    summary="Freeze payments to a supplier / 冻结付款",
)
async def freeze_supplier(
    supplier_id: SupplierId,
    body: NoteIn,
    deps: Deps,
    user: Annotated[User, require("compliance:review")],
    key: IdempotencyKey,
) -> JSONResponse:
    """Freeze by hand, with a note; a review ticket opens with it. Another reviewer lifts it."""
    created = await deps.writer.execute(cab.freeze_supplier, supplier_id, body.note, user.username, deps.clock(), key)
    freeze = await read(deps, cab.get_freeze, int(created.id))
    return _created(FreezeOut.model_validate(freeze).model_dump(mode="json"), created)


@router.post(
    "/freezes/{freeze_id}/lift",
    response_model=FreezeOut,
    responses=WRITE_RESPONSES,
    summary="Lift a freeze / 解除冻结",
)
async def lift_freeze(
    freeze_id: FreezeId, body: ReasonIn, deps: Deps, user: Annotated[User, require("compliance:review")]
) -> dict[str, Any]:
    """A reviewer who did not open the freeze lifts it, with a reason (409 `approval_refused` for the one who
    opened it). Its review ticket is resolved with it."""
    result: dict[str, Any] = await deps.writer.execute(
        cab.lift_freeze, freeze_id, body.reason, user.username, deps.clock()
    )
    return result


@router.get(
    "/review-tickets",
    response_model=list[TicketOut],
    dependencies=[require("compliance:read")],
    summary="Review tickets / 审核工单",
)
def list_tickets(
    reader: Reader,
    state: Annotated[Literal["open", "resolved"] | None, Query(description="only this state")] = None,
    supplier: SupplierFilter = None,
) -> list[dict[str, Any]]:
    return cab.list_tickets(reader, state, supplier)


@router.get(
    "/review-tickets/{ticket_id}",
    response_model=TicketDetailOut,
    dependencies=[require("compliance:read")],
    responses=error_responses(404),
    summary="One review ticket / 审核工单详情",
)
def get_ticket(ticket_id: TicketId, reader: Reader) -> dict[str, Any]:
    return cab.get_ticket(reader, ticket_id)


@router.post(
    "/review-tickets/{ticket_id}/resolve",
    response_model=TicketDetailOut,
    responses=WRITE_RESPONSES,
    summary="Resolve a review ticket / 处理审核工单",
)
async def resolve_ticket(
    ticket_id: TicketId, body: ResolveIn, deps: Deps, user: Annotated[User, require("compliance:review")]
) -> dict[str, Any]:
    """A reviewer who did not open the ticket resolves it, lifting its freezes; `accept_licence_address` makes the
    licence's address the supplier's registered one."""
    result: dict[str, Any] = await deps.writer.execute(
        cab.resolve_ticket, ticket_id, body.resolution, user.username, deps.clock(), body.accept_licence_address
    )
    return result


# --- bank account changes ------------------------------------------------------------------------


@router.post(
    "/suppliers/{supplier_id}/bank-account-changes",
    status_code=201,
    response_model=BankChangeOut,
    responses=CREATED_RESPONSES,
    openapi_extra={"parameters": [IDEMPOTENCY_KEY_PARAMETER]},
    summary="Ask to change a supplier's bank account / 申请变更银行账户",
)
async def request_bank_change(
    supplier_id: SupplierId,
    body: BankChangeIn,
    deps: Deps,
    user: Annotated[User, require("suppliers:write")],
    key: IdempotencyKey,
) -> JSONResponse:
    """Payments to the supplier freeze at once, until a second person approves or rejects the change."""
    created = await deps.writer.execute(
        cab.request_bank_account_change,
        supplier_id,
        body.bank_name,
        body.bank_account,
        body.reason,
        user.username,
        deps.clock(),
        key,
    )
    change = await read(deps, cab.get_bank_account_change, int(created.id))
    return _created(BankChangeOut.model_validate(change).model_dump(mode="json"), created)


@router.get(
    "/bank-account-changes",
    response_model=list[BankChangeOut],
    dependencies=[require("compliance:read")],
    summary="Bank account changes / 银行账户变更",
)
def list_bank_changes(
    reader: Reader,
    state: Annotated[Literal["pending", "approved", "rejected"] | None, Query(description="only this state")] = None,
    supplier: SupplierFilter = None,
) -> list[dict[str, Any]]:
    return cab.list_bank_account_changes(reader, state, supplier)


@router.post(
    "/bank-account-changes/{change_id}/approve",
    response_model=BankChangeOut,
    responses=WRITE_RESPONSES,
    summary="Approve a bank account change / 批准银行账户变更",
)
async def approve_bank_change(
    change_id: ChangeId,
    deps: Deps,
    user: Annotated[User, require("compliance:review")],
    body: Annotated[OptionalNoteIn | None, Body()] = None,
) -> dict[str, Any]:
    """Someone other than the requester approves: the new account takes effect and the freeze is lifted."""
    note = body.note if body is not None else None
    result: dict[str, Any] = await deps.writer.execute(
        cab.approve_bank_account_change, change_id, user.username, deps.clock(), note
    )
    return result


@router.post(
    "/bank-account-changes/{change_id}/reject",
    response_model=BankChangeOut,
    responses=WRITE_RESPONSES,
    summary="Reject a bank account change / 驳回银行账户变更",
)
async def reject_bank_change(
    change_id: ChangeId, body: NoteIn, deps: Deps, user: Annotated[User, require("compliance:review")]
) -> dict[str, Any]:
    """Someone other than the requester rejects, saying why: the old account stays and the freeze is lifted."""
    result: dict[str, Any] = await deps.writer.execute(
        cab.reject_bank_account_change, change_id, user.username, deps.clock(), body.note
    )
    return result


# --- alerts and purchase orders ------------------------------------------------------------------


@router.get(
    "/compliance/alerts",
    response_model=list[AlertOut],
    dependencies=[require("compliance:read")],
    summary="Paper expiry alerts / 证照到期预警",
)
def list_alerts(
    reader: Reader,
    supplier: SupplierFilter = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> list[dict[str, Any]]:
    """Alerts raised 30 and 7 days before a paper expires and when it has expired, newest first."""
    return [a.to_json() for a in cab.list_alerts(reader, supplier_id=supplier, limit=limit, offset=offset)]


@router.get(
    "/purchase-orders",
    response_model=list[PurchaseOrderOut],
    summary="Purchase orders with their approval / 采购订单及审批状态",
)
def list_purchase_orders(
    reader: Reader,
    user: Annotated[User, require("documents:read")],
    approved: Annotated[bool | None, Query(description="only approved (true) or not yet approved (false) POs")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> list[dict[str, Any]]:
    """Purchase orders newest first, each with its supplier's name, approval (or null) and reversal."""
    return as_seen_by(user, cab.list_purchase_orders(reader, approved=approved, limit=limit, offset=offset))


@router.get(
    "/purchase-orders/{document_id}",
    response_model=PurchaseOrderOut,
    responses=error_responses(404, 422),
    summary="One purchase order with its approval / 采购订单审批状态",
)
def get_purchase_order(
    reader: Reader, document_id: DocumentId, user: Annotated[User, require("documents:read")]
) -> dict[str, Any]:
    return as_seen_by(user, cab.get_purchase_order(reader, document_id))


@router.post(
    "/purchase-orders/{document_id}/approve",
    response_model=ApprovalOut,
    responses=WRITE_RESPONSES,
    summary="Approve a purchase order / 审批采购订单",
)
async def approve_purchase_order(
    document_id: DocumentId, deps: Deps, user: Annotated[User, require("purchase_orders:approve")]
) -> dict[str, Any]:
    """Re-checks the supplier: a frozen supplier is refused; above the threshold (po_papers_required_above_yuan)
    the papers must be complete and valid today, and the error lists what is missing or expired."""
    result: dict[str, Any] = await deps.writer.execute(
        cab.approve_purchase_order, document_id, user.username, business_date(deps), threshold_fen(deps), deps.clock()
    )
    return result
