"""Scan-to-receive for the page (扫码即入库, docs/scan-to-receive.md): receipt drafts opened from a delivery
note's QR code, scans, confirm and cancel; ASNs for staff; suppliers' delivery-note signing keys.

Each draft action is one writer job (the same code as a handheld's `receive` event), kept once per
`Idempotency-Key`: a retry answers the first result with `Idempotent-Replayed: true`. Receiving is posting a
receipt, so the draft actions need `documents:write:receipt`.
"""

from collections.abc import Callable
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, File, Form, Path, Query, UploadFile
from fastapi.responses import JSONResponse
from fastapi.types import DecoratedCallable
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from edge.devices import asn as asns
from edge.devices import delivery_note, qr_image, receiving
from edge.security.roles import write_permission
from edge.security.users import User
from edge.web.deps import IDEMPOTENCY_KEY_PARAMETER, Deps, Reader, idempotency_key, require
from edge.web.errors import ApiError, error_responses
from edge.web.schemas import IsoDate

REPLAY_HEADER = "Idempotent-Replayed"
RECEIVE = write_permission("receipt")

router = APIRouter(prefix="/api/v1", tags=["receiving"], responses=error_responses(401, 403, 500))

IdempotencyKey = Annotated[str, Depends(idempotency_key)]
Receiver = Annotated[User, require(RECEIVE)]
SupplierWriter = Annotated[User, require("suppliers:write")]
DraftIdPath = Annotated[int, Path(ge=1, le=2**62, description="the receipt draft's id")]
SupplierId = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$", description="the supplier's id")]
AsnIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$", description="the supplier's ASN id")]
KeyIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{8}$", description="the key id printed in notes")]
WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Done. A replay of the same Idempotency-Key answers the same body again.",
        "headers": {
            REPLAY_HEADER: {
                "description": "`true` when this is the stored answer to an earlier request with the same key",
                "schema": {"type": "string", "enum": ["true"]},
            }
        },
    },
    **error_responses(400, 404, 409, 422, 503),
}


# --- bodies and answers ------------------------------------------------------------------------


class OpenDraftIn(BaseModel):
    """A delivery note's QR text as scanned (docs/scan-to-receive.md)."""

    model_config = ConfigDict(extra="forbid")

    qr: str = Field(min_length=1, max_length=delivery_note.MAX_TEXT, examples=["SBDN1:..."])
    location: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]{1,64}$", description="where the goods go")


class ScanIn(BaseModel):
    """Goods scanned into a draft: a code (barcode, GS1 element string, scale label or SKU) and how many."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[!-~]{1,200}$", examples=["6901234567892"])
    qty: int | None = Field(
        None,
        ge=-receiving.MAX_SCAN_QTY,
        le=receiving.MAX_SCAN_QTY,
        description="in the code's unit, default 1; negative takes back an earlier scan",
    )
    unit: str | None = Field(None, min_length=1, max_length=32)
    lot: str | None = Field(None, pattern=r"^[A-Za-z0-9._/-]{1,64}$")
    expiry: IsoDate | None = None
    scale: str | None = Field(
        None, pattern=r"^[a-z0-9-]{1,64}$", description="take this scale's stable weight (grams) as the quantity"
    )


class ConfirmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    as_announced: bool = Field(
        False, description="lines of items not scanned at all count as received as on the delivery note"
    )


class ActionOut(BaseModel):
    """What an action did; `detail` is what a handheld's ack carries (docs/scan-to-receive.md)."""

    ok: bool = True
    code: str
    message: str
    message_en: str
    document: int | None = Field(None, description="the receipt posted by a confirm")
    detail: dict[str, Any]
    replayed: bool = False


class ExpectedLineOut(BaseModel):
    line: int
    code: str
    sku: str
    name: str
    unit: str
    qty: int
    qty_base: int
    lot: str | None
    expiry: date | None
    on_po: bool


class ScannedOut(BaseModel):
    sku: str
    lot: str | None
    expiry: date | None
    qty_base: int


class DraftOut(BaseModel):
    id: int
    state: str = Field(description="open, confirmed or cancelled")
    supplier: str
    po_id: int
    po_no: str
    asn_id: str
    asn_revision: int | None
    location: str | None
    opened_at: str
    opened_by: str
    device: str | None
    expected: list[ExpectedLineOut]
    scanned: list[ScannedOut]
    receipt_id: int | None
    result: dict[str, Any] | None = Field(description="what was received and what differed, after a confirm")


class DraftSummaryOut(BaseModel):
    id: int
    state: str
    supplier: str
    po_id: int
    po_no: str
    asn_id: str
    location: str | None
    opened_at: str
    opened_by: str
    device: str | None
    receipt_id: int | None
    lines: int


class AsnLineOut(BaseModel):
    line_no: int
    code: str
    sku: str
    unit: str
    qty: int
    qty_base: int
    lot: str | None
    expiry: date | None
    price_fen: int | None


class DifferenceOut(BaseModel):
    kind: str = Field(description="short, over, wrong_lot, expired or not_on_po")
    sku: str
    expected: int
    received: int
    lot: str | None
    expiry: date | None
    line_no: int | None


class AsnOut(BaseModel):
    supplier: str
    asn_id: str
    revision: int
    po_id: int
    po_no: str
    ship_date: date
    state: str = Field(description="open or received")
    note: str | None
    recorded_at: str
    outcome: str
    receipt_ids: list[int]
    lines: list[AsnLineOut]
    differences: list[DifferenceOut]


class SigningKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    public_key: str = Field(
        min_length=1, max_length=1000, description="Ed25519 public key: base64url of 32 bytes, 64 hex digits or PEM"
    )
    replace: bool = Field(False, description="revoke the supplier's other keys")


class SigningKeyOut(BaseModel):
    supplier: str
    key_id: str
    public_key: str
    added_at: str
    added_by: str
    revoked_at: str | None
    revoked_by: str | None
    active: bool


# --- drafts -----------------------------------------------------------------------------------


async def _act(deps: Deps, user: User, key: str, action: receiving.Action) -> JSONResponse:
    policy = receiving.receiving_policy(deps.settings)
    outcome = await deps.writer.execute_posting(receiving.http_job, action, policy, user.username, key)
    body = ActionOut(
        code=outcome.code,
        message=outcome.message,
        message_en=outcome.message_en,
        document=outcome.document,
        detail=outcome.detail or {},
        replayed=outcome.replayed,
    )
    headers = {REPLAY_HEADER: "true"} if outcome.replayed else None
    return JSONResponse(body.model_dump(mode="json"), headers=headers)


def _draft_action(path: str, summary: str) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """The route of a draft action: a POST kept once per Idempotency-Key, answered with `ActionOut`."""
    return router.post(
        path,
        response_model=ActionOut,
        responses=WRITE_RESPONSES,
        openapi_extra={"parameters": [IDEMPOTENCY_KEY_PARAMETER]},
        summary=summary,
    )


@_draft_action("/receiving/drafts", "Open a receipt draft from a delivery note / 扫送货单开收货草稿")
async def open_draft(body: OpenDraftIn, deps: Deps, user: Receiver, key: IdempotencyKey) -> JSONResponse:
    """Verify the note (signature, freshness, replay), match it to the PO and the ASN and open a draft that
    expects its lines; scanning the same note again resumes its open draft."""
    return await _act(deps, user, key, receiving.OpenNote(body.qr, body.location))


@router.post(
    "/receiving/drafts/photo",
    response_model=ActionOut,
    responses={**WRITE_RESPONSES, **error_responses(413)},
    openapi_extra={"parameters": [IDEMPOTENCY_KEY_PARAMETER]},
    summary="Open a receipt draft from a photo of a delivery note / 拍照收货",
)
async def open_draft_from_photo(
    deps: Deps,
    user: Receiver,
    key: IdempotencyKey,
    photo: Annotated[UploadFile, File(description="a JPEG or PNG photo holding the note's QR code")],
    location: Annotated[str | None, Form(pattern=r"^[A-Za-z0-9._-]{1,64}$", description="where the goods go")] = None,
) -> JSONResponse:
    """The same as `POST /receiving/drafts` with the QR text read from a photo (zxing-cpp): for a phone's camera
    where there is no scanner. 422 `qr_image_invalid` when the picture is not an image or holds no (or more than
    one) delivery-note QR code."""
    data = await photo.read(qr_image.MAX_BYTES + 1)
    text = await run_in_threadpool(qr_image.read_delivery_note, data)
    return await _act(deps, user, key, receiving.OpenNote(text, location))


@_draft_action("/receiving/drafts/{draft_id}/scans", "Scan goods into a draft / 扫描收货")
async def scan_goods(
    draft_id: DraftIdPath,
    body: ScanIn,
    deps: Deps,
    user: Receiver,
    key: IdempotencyKey,
) -> JSONResponse:
    """Add goods; the answer says how the item stands against the note (ok, over, wrong_lot, expired, ...)."""
    if body.qty is not None and body.scale is not None:
        raise ApiError(422, "invalid_request", "数量与秤只能二选一", "give qty or scale, not both", field="scale")
    action = receiving.ScanGoods(draft_id, body.code, body.qty, body.unit, body.lot, body.expiry, body.scale)
    return await _act(deps, user, key, action)


@_draft_action("/receiving/drafts/{draft_id}/confirm", "Confirm a draft: post the receipt / 确认入库")
async def confirm_draft(
    draft_id: DraftIdPath,
    deps: Deps,
    user: Receiver,
    key: IdempotencyKey,
    body: Annotated[ConfirmIn | None, Body()] = None,
) -> JSONResponse:
    """Post the receipt (ref_id = the PO, counterparty = the supplier, by lot and expiry) and answer with what
    was received and what differs: short, over, wrong_lot, expired, not_on_po."""
    action = receiving.ConfirmDraft(draft_id, body.as_announced if body else False)
    return await _act(deps, user, key, action)


@_draft_action("/receiving/drafts/{draft_id}/cancel", "Cancel a draft / 取消收货草稿")
async def cancel_draft(draft_id: DraftIdPath, deps: Deps, user: Receiver, key: IdempotencyKey) -> JSONResponse:
    """Nothing is posted; the note may be scanned again to start over."""
    return await _act(deps, user, key, receiving.CancelDraft(draft_id))


@router.get(
    "/receiving/drafts",
    response_model=list[DraftSummaryOut],
    dependencies=[require("receiving:read")],
    summary="Receipt drafts / 收货草稿列表",
)
def list_drafts(
    reader: Reader,
    state: Annotated[str | None, Query(pattern="^(open|confirmed|cancelled)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> list[dict[str, Any]]:
    """Newest first."""
    return receiving.list_drafts(reader, state=state, limit=limit, offset=offset)


@router.get(
    "/receiving/drafts/{draft_id}",
    response_model=DraftOut,
    responses=error_responses(404),
    dependencies=[require("receiving:read")],
    summary="One receipt draft / 收货草稿详情",
)
def get_draft(draft_id: DraftIdPath, reader: Reader) -> dict[str, Any]:
    """What the draft expects, what was scanned, and after a confirm what was received and what differed."""
    return receiving.get_draft(reader, draft_id).to_dict()


# --- ASNs -------------------------------------------------------------------------------------


@router.get("/asns", response_model=list[AsnOut], dependencies=[require("asns:read")], summary="ASNs / 发货通知列表")
def list_asns(
    reader: Reader,
    supplier: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._-]{1,64}$")] = None,
    po_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    state: Annotated[asns.AsnState | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> list[dict[str, Any]]:
    """Advance shipping notices, newest first."""
    records = asns.list_asns(reader, supplier=supplier, po_id=po_id, state=state, limit=limit, offset=offset)
    return [r.to_dict() for r in records]


@router.get(
    "/asns/{supplier_id}/{asn_id}",
    response_model=AsnOut,
    responses=error_responses(404),
    dependencies=[require("asns:read")],
    summary="One ASN / 发货通知详情",
)
def get_asn(supplier_id: SupplierId, asn_id: AsnIdPath, reader: Reader) -> dict[str, Any]:
    """ASN ids are the suppliers' own, so an ASN is named by its supplier and its id."""
    record = asns.get_asn(reader, asn_id, supplier=supplier_id)
    if record is None:
        raise asns.UnknownAsn(asn_id)
    return record.to_dict()


# --- signing keys -----------------------------------------------------------------------------


@router.get(
    "/suppliers/{supplier_id}/signing-keys",
    response_model=list[SigningKeyOut],
    dependencies=[require("suppliers:read")],
    summary="A supplier's delivery-note signing keys / 送货单签名公钥",
)
def list_signing_keys(supplier_id: SupplierId, reader: Reader) -> list[dict[str, Any]]:
    return [k.to_dict() for k in delivery_note.list_signing_keys(reader, supplier_id)]


@router.post(
    "/suppliers/{supplier_id}/signing-keys",
    response_model=SigningKeyOut,
    responses=error_responses(422, 503),
    summary="Register a supplier's signing key / 登记送货单签名公钥",
)
async def set_signing_key(
    supplier_id: SupplierId,
    body: SigningKeyIn,
    deps: Deps,
    user: SupplierWriter,
) -> dict[str, Any]:
    """Idempotent: registering the same key again answers it unchanged. A revoked key cannot come back."""
    key = await deps.writer.execute(
        delivery_note.set_signing_key, supplier_id, body.public_key, user.username, deps.clock(), body.replace
    )
    return key.to_dict()


@router.post(
    "/suppliers/{supplier_id}/signing-keys/{key_id}/revoke",
    response_model=SigningKeyOut,
    responses=error_responses(422, 503),
    summary="Revoke a supplier's signing key / 吊销送货单签名公钥",
)
async def revoke_signing_key(
    supplier_id: SupplierId,
    key_id: KeyIdPath,
    deps: Deps,
    user: SupplierWriter,
) -> dict[str, Any]:
    """Notes signed with a revoked key are refused from now on (idempotent)."""
    key = await deps.writer.execute(delivery_note.revoke_signing_key, supplier_id, key_id, user.username, deps.clock())
    return key.to_dict()
