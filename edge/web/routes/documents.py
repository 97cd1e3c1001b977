"""Documents (单据): post one per type, read them, reverse them.

Each postable type has its own route `POST /api/v1/documents/<type>` with its own body model and its
own permission `documents:write:<type>`. Posting goes through the one ledger writer; the
`Idempotency-Key` header makes a retry safe: the same key answers the first result again.
"""

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Path, Query
from fastapi.responses import JSONResponse

from edge.ledger import queries
from edge.ledger.commands import (
    DOC_TYPE_NAMES,
    POSTABLE_TYPES,
    DocType,
    Line,
    PostDocument,
    PostResult,
    ReverseDocument,
)
from edge.ledger.errors import UnknownDocument
from edge.security.roles import has_permission, write_permission
from edge.security.users import User
from edge.web.amounts import as_seen_by
from edge.web.deps import DEVICE_ID_PATTERN, IDEMPOTENCY_KEY_PARAMETER, Deps, Reader, idempotency_key, read, require
from edge.web.errors import error_body, error_responses, ledger_status
from edge.web.schemas import (
    DOCUMENT_BODIES,
    MAX_DOCUMENT_ID,
    DocumentDetailOut,
    DocumentIn,
    DocumentOut,
    PostedOut,
    ReverseIn,
)

API_KEY_PREFIX = "api:"
REPLAY_HEADER = "Idempotent-Replayed"

router = APIRouter(prefix="/api/v1/documents", tags=["documents"], responses=error_responses(401, 403, 422, 500))

IdempotencyKey = Annotated[str, Depends(idempotency_key)]
DeviceId = Annotated[
    str | None,
    Header(
        alias="X-Device-Id",
        pattern=DEVICE_ID_PATTERN,
        description="the terminal the request comes from, recorded in the audit trail",
    ),
]
DocumentIdPath = Annotated[int, Path(ge=1, le=MAX_DOCUMENT_ID)]
WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: {
        "description": "Posted. A replay of the same Idempotency-Key answers the same status and body again.",
        "headers": {
            REPLAY_HEADER: {
                "description": "`true` when this is the stored answer to an earlier request with the same key",
                "schema": {"type": "string", "enum": ["true"]},
            }
        },
    },
    **error_responses(400, 404, 409, 413, 503),
}


def _visible(document: dict[str, Any], user: User) -> dict[str, Any]:
    """The document as this user may see it: the voucher only for roles that read the books, amounts only for
    roles with amounts:read."""
    if not has_permission(user.role, "vouchers:read"):
        document = {**document, "voucher": None}
    return as_seen_by(user, document)


async def _answer(deps: Deps, user: User, result: PostResult) -> JSONResponse:
    headers = {REPLAY_HEADER: "true"} if result.replayed else None
    if not result.ok or result.document_id is None:
        body = error_body(result.code, result.message, result.message_en, result.detail)
        return JSONResponse(body, status_code=ledger_status(result.code), headers=headers)
    document = await read(deps, queries.get_document, result.document_id)
    if document is None:
        raise UnknownDocument(result.document_id)
    posted = PostedOut(
        document_id=result.document_id,
        doc_no=result.doc_no or document["doc_no"],
        message=result.message,
        message_en=result.message_en,
        document=DocumentDetailOut.model_validate(_visible(document, user)),
    )
    return JSONResponse(posted.model_dump(mode="json"), status_code=201, headers=headers)


def _command(doc_type: DocType, body: DocumentIn, key: str, user: User, device: str | None) -> PostDocument:
    fields = body.model_dump(exclude={"lines"})
    reason = fields.get("reason")
    return PostDocument(
        key=API_KEY_PREFIX + key,
        type=doc_type,
        lines=tuple(
            Line(
                code=line.code,
                qty=line.qty,
                price_fen=line.price_fen,
                unit=line.unit,
                lot=line.lot,
                expiry=line.expiry,
                location=line.location,
            )
            for line in body.lines
        ),
        location=body.location,
        to_location=fields.get("to_location"),
        counterparty=fields.get("counterparty"),
        ref_id=fields.get("ref_id"),
        reason=str(reason) if reason is not None else None,
        reason_text=fields.get("reason_text"),
        note=body.note,
        payment=fields.get("payment"),
        actor=user.username,
        device=device,
    )


def _post_endpoint(doc_type: DocType) -> Callable[..., Awaitable[JSONResponse]]:
    model = DOCUMENT_BODIES[doc_type]
    permission = write_permission(doc_type)

    async def post_document(
        body: Annotated[model, Body()],  # type: ignore[valid-type]
        deps: Deps,
        user: Annotated[User, require(permission)],
        key: IdempotencyKey,
        device: DeviceId = None,
    ) -> JSONResponse:
        result = await deps.writer.post(_command(doc_type, body, key, user, device))
        return await _answer(deps, user, result)

    return post_document


for _type in POSTABLE_TYPES:
    _zh, _en = DOC_TYPE_NAMES[_type]
    router.add_api_route(
        f"/{_type.value}",
        _post_endpoint(_type),
        methods=["POST"],
        name=f"post_{_type.value}",
        status_code=201,
        response_model=PostedOut,
        responses=WRITE_RESPONSES,
        summary=f"Post a {_en} / 过账{_zh}",
        description=f"Post a {_en} ({_zh}). Needs permission `{write_permission(_type)}` and an "
        "`Idempotency-Key` header.",
        openapi_extra={"parameters": [IDEMPOTENCY_KEY_PARAMETER]},
    )


@router.post(
    "/{document_id:int}/reverse",
    status_code=201,
    response_model=PostedOut,
    responses=WRITE_RESPONSES,
    openapi_extra={"parameters": [IDEMPOTENCY_KEY_PARAMETER]},
    summary="Reverse a posted document / 冲销单据",
)
async def reverse_document(
    document_id: DocumentIdPath,
    deps: Deps,
    user: Annotated[User, require("documents:reverse")],
    key: IdempotencyKey,
    body: Annotated[ReverseIn | None, Body()] = None,
    device: DeviceId = None,
) -> JSONResponse:
    """Post a reversing document (冲销单) that takes back every move and voucher line of the original."""
    command = ReverseDocument(
        key=API_KEY_PREFIX + key,
        document_id=document_id,
        reason_text=body.reason_text if body else None,
        actor=user.username,
        device=device,
    )
    return await _answer(deps, user, await deps.writer.post(command))


@router.get("", response_model=list[DocumentOut], summary="单据列表")
def list_documents(
    reader: Reader,
    user: Annotated[User, require("documents:read")],
    type: Annotated[DocType | None, Query(description="only documents of this type")] = None,
    since: Annotated[date | None, Query(description="business date from (YYYY-MM-DD, included)")] = None,
    until: Annotated[date | None, Query(description="business date to (YYYY-MM-DD, included)")] = None,
    q: Annotated[str | None, Query(max_length=64, description="part of the document number or counterparty")] = None,
    sku: Annotated[str | None, Query(max_length=64, description="documents with a line of this item")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> list[dict[str, Any]]:
    """Documents, newest first (amounts null for roles without amounts:read)."""
    rows = queries.list_documents(
        reader,
        type=type.value if type else None,
        limit=limit,
        offset=offset,
        since=since,
        until=until,
        q=q or None,
        sku=sku or None,
    )
    return as_seen_by(user, rows)


@router.get(
    "/{document_id:int}",
    response_model=DocumentDetailOut,
    responses=error_responses(404),
    summary="One document with lines, moves and voucher / 单据详情",
)
def get_document(
    reader: Reader, document_id: DocumentIdPath, user: Annotated[User, require("documents:read")]
) -> dict[str, Any]:
    """The voucher is null for roles that may not read vouchers."""
    document = queries.get_document(reader, document_id)
    if document is None:
        raise UnknownDocument(document_id)
    return _visible(document, user)
