"""Photos at inspection (拍照验货) and delivery signatures (电子签收) that terminals sent with their events.

Read-only: attachments arrive over MQTT as chunked `evt/attachment` events (docs/offline-terminals.md).
A receipt draft, a supplier's ASN or a receipt lists what its terminals attached to it. ASN ids are per
supplier: an ASN is asked for with its supplier.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from edge.devices.attachments import (
    ASN_ID,
    ATTACHMENTS_DIR,
    EXTENSIONS,
    SUPPLIER_ID,
    AttachmentRef,
    Purpose,
    RefKind,
    UnknownAttachment,
    attachment_file,
    get_attachment,
    linked_refs,
    list_attachments,
)
from edge.web.deps import DEVICE_ID_PATTERN, Deps, Reader, require
from edge.web.errors import ApiError, error_responses

router = APIRouter(prefix="/api/v1", tags=["attachments"], responses=error_responses(401, 403, 422, 500))

AttachmentId = Annotated[int, Path(ge=1, le=2**62)]


class AttachmentOut(BaseModel):
    id: int
    device: str = Field(description="the terminal that sent it")
    attachment: str = Field(description="the terminal's own id for the file")
    purpose: Purpose = Field(description="photo (验货照片) or signature (电子签收)")
    ref_kind: RefKind = Field(description="what it belongs to: draft (收货草稿), asn (发货通知) or receipt (入库单)")
    ref: str = Field(description="the draft id, ASN id or receipt document id the terminal named")
    supplier: str | None = Field(description="with an ASN: its supplier (ASN ids are per supplier); else null")
    sha256: str
    size: int = Field(description="bytes")
    mime: str = Field(description="sniffed from the bytes: image/jpeg, image/png or image/svg+xml")
    taken_at: str = Field(description="when the terminal made it (RFC 3339, the terminal's clock)")
    stored_at: str = Field(description="when the box had it whole and checked")


@router.get(
    "/attachments",
    response_model=list[AttachmentOut],
    dependencies=[require("attachments:read")],
    summary="Photos and signatures from terminals / 验货照片与电子签收",
)
def list_all(
    reader: Reader,
    draft: Annotated[int | None, Query(ge=1, le=2**62, description="a receipt draft id")] = None,
    asn: Annotated[str | None, Query(pattern=ASN_ID, description="an ASN id (发货通知单号), with `supplier`")] = None,
    supplier: Annotated[
        str | None, Query(pattern=SUPPLIER_ID, description="the supplier of `asn` (ASN ids are per supplier)")
    ] = None,
    receipt: Annotated[int | None, Query(ge=1, le=2**62, description="a receipt's document id")] = None,
    device: Annotated[str | None, Query(pattern=DEVICE_ID_PATTERN)] = None,
    purpose: Purpose | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> list[dict[str, Any]]:
    """Oldest first. With `draft`, `asn` (and its `supplier`) or `receipt`: those linked to any of them,
    directly or through the receipt draft that ties a draft, its supplier's ASN and its posted receipt together."""
    if (asn is None) != (supplier is None):
        raise ApiError(
            422,
            "validation_error",
            "发货通知单号须与供应商一起给出 (各供应商的单号可能相同)",
            "asn and supplier go together (ASN ids are per supplier)",
            fields=["asn", "supplier"],
        )
    refs: list[AttachmentRef] = []
    if draft is not None:
        refs.append(AttachmentRef.draft(draft))
    if asn is not None and supplier is not None:
        refs.append(AttachmentRef.asn(supplier, asn))
    if receipt is not None:
        refs.append(AttachmentRef.receipt(receipt))
    linked = linked_refs(reader, refs) if refs else None
    return list_attachments(reader, refs=linked, device=device, purpose=purpose, limit=limit, offset=offset)


@router.get(
    "/attachments/{attachment_id}",
    response_model=AttachmentOut,
    dependencies=[require("attachments:read")],
    responses=error_responses(404),
    summary="One attachment / 附件详情",
)
def get_one(attachment_id: AttachmentId, reader: Reader) -> dict[str, Any]:
    attachment = get_attachment(reader, attachment_id)
    if attachment is None:
        raise UnknownAttachment(attachment_id)
    return attachment


@router.get(
    "/attachments/{attachment_id}/file",
    dependencies=[require("attachments:read")],
    responses={
        200: {"description": "the photo or signature", "content": {mime: {} for mime in EXTENSIONS}},
        **error_responses(404),
    },
    response_class=FileResponse,
    summary="The photo or signature itself / 附件原图",
)
def get_file(attachment_id: AttachmentId, reader: Reader, deps: Deps) -> FileResponse:
    attachment = get_attachment(reader, attachment_id)
    if attachment is None:
        raise UnknownAttachment(attachment_id)
    path = attachment_file(deps.settings.data_dir / ATTACHMENTS_DIR, attachment)
    if not path.is_file():
        raise UnknownAttachment(attachment_id)
    return FileResponse(
        path,
        media_type=attachment["mime"],
        headers={
            "Content-Disposition": f'inline; filename="attachment-{attachment_id}.{EXTENSIONS[attachment["mime"]]}"',
            # A signature SVG is checked to be strokes only; the sandbox keeps it inert even if that check erred.
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
            "X-Content-Type-Options": "nosniff",
        },
    )
