"""Price agreements (协议价); see docs/three-way-match.md.

Recording an agreement updates the supplier's price list, the contract record, the price of open POs not yet
received (old and new price kept) and so the three-way match's expected price, in one transaction.
"""

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from edge.finance import prices
from edge.finance.prices import MAX_NOTE, MAX_PRICE_FEN, PriceAgreementIn
from edge.security.users import User
from edge.web.deps import IDEMPOTENCY_KEY_PARAMETER, Deps, Reader, idempotency_key, require
from edge.web.errors import error_responses
from edge.web.schemas import IsoDate

API_KEY_PREFIX = "api:"
REPLAY_HEADER = "Idempotent-Replayed"

router = APIRouter(prefix="/api/v1", tags=["prices"], responses=error_responses(401, 403, 500))

IdempotencyKey = Annotated[str, Depends(idempotency_key)]
SupplierId = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$", description="the supplier's id")]
ContractNo = Annotated[str, Path(min_length=1, max_length=64, description="合同号")]


class PriceAgreementBody(BaseModel):
    """A negotiated price: per base unit of the item, VAT included, in fen, valid from..to (both included)."""

    model_config = ConfigDict(extra="forbid")

    supplier_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$", examples=["sup-1"])
    sku: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$", examples=["COLA"])
    price_fen: int = Field(ge=1, le=MAX_PRICE_FEN, examples=[215], description="per base unit, VAT included")
    valid_from: IsoDate
    valid_to: IsoDate
    contract_no: str = Field(min_length=1, max_length=64, examples=["HT-2024-001"], description="合同号")
    note: str | None = Field(None, max_length=MAX_NOTE)


class RevisionOut(BaseModel):
    id: int
    po_id: int
    po_line_no: int
    sku: str
    unit: str
    factor: int = Field(description="base units in the PO line's unit")
    old_price_fen: int = Field(description="per the PO line's unit, VAT included")
    new_price_fen: int
    agreement_id: int
    revised_at: str
    revised_by: str


class AgreementOut(BaseModel):
    id: int
    supplier_id: str
    sku: str
    price_fen: int
    price: str = Field(description="the price in yuan, as text")
    valid_from: str
    valid_to: str
    contract_no: str
    recorded_at: str
    recorded_by: str
    command_key: str
    note: str | None


class AgreementDetailOut(AgreementOut):
    revisions: list[RevisionOut] = Field(description="the open PO lines whose price this agreement revised")


class RecordedOut(AgreementDetailOut):
    replayed: bool


class PriceListEntryOut(AgreementOut):
    item_name: str
    base_unit: str


class ContractOut(BaseModel):
    contract_no: str
    supplier_id: str
    supplier_name: str
    created_at: str
    created_by: str
    agreements: list[AgreementDetailOut]


@router.post(
    "/price-agreements",
    status_code=201,
    response_model=RecordedOut,
    responses=error_responses(400, 404, 409, 422, 503),
    openapi_extra={"parameters": [IDEMPOTENCY_KEY_PARAMETER]},
    summary="Record a negotiated price / 录入协议价",
)
async def record_agreement(
    body: PriceAgreementBody, deps: Deps, user: Annotated[User, require("prices:write")], key: IdempotencyKey
) -> JSONResponse:
    """Records the agreement under its contract and revises the price of the supplier's open POs for the item
    (business date within the validity, nothing received yet); each change is audited."""
    agreement = PriceAgreementIn(
        supplier_id=body.supplier_id,
        sku=body.sku,
        price_fen=body.price_fen,
        valid_from=body.valid_from,
        valid_to=body.valid_to,
        contract_no=body.contract_no,
        note=body.note,
    )
    result = await deps.writer.execute(
        prices.record_agreement, agreement, API_KEY_PREFIX + key, user.username, deps.clock()
    )
    headers = {REPLAY_HEADER: "true"} if result["replayed"] else None
    return JSONResponse(RecordedOut.model_validate(result).model_dump(mode="json"), status_code=201, headers=headers)


@router.get(
    "/price-agreements",
    response_model=list[AgreementOut],
    dependencies=[require("prices:read")],
    summary="Price agreements / 协议价列表",
)
def list_agreements(
    reader: Reader,
    supplier_id: Annotated[str | None, Query(max_length=64)] = None,
    sku: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> list[dict[str, Any]]:
    """Newest first."""
    return prices.list_agreements(reader, supplier_id=supplier_id, sku=sku, limit=limit, offset=offset)


@router.get(
    "/suppliers/{supplier_id}/prices",
    response_model=list[PriceListEntryOut],
    dependencies=[require("prices:read")],
    responses=error_responses(404, 422),
    summary="A supplier's price list / 供应商价目表",
)
def supplier_prices(
    deps: Deps,
    reader: Reader,
    supplier_id: SupplierId,
    on: Annotated[IsoDate | None, Query(description="the date (default: today)")] = None,
) -> list[dict[str, Any]]:
    """Per item, the agreed price in effect on the date (the latest recorded agreement valid then)."""
    day: date = on or deps.today()
    return prices.supplier_price_list(reader, supplier_id, day)


@router.get(
    "/contracts/{contract_no}",
    response_model=ContractOut,
    dependencies=[require("prices:read")],
    responses=error_responses(404, 422),
    summary="A contract and its price agreements / 合同",
)
def get_contract(reader: Reader, contract_no: ContractNo) -> dict[str, Any]:
    return prices.get_contract(reader, contract_no)


@router.get(
    "/purchase-orders/{document_id}/price-revisions",
    response_model=list[RevisionOut],
    dependencies=[require("prices:read")],
    responses=error_responses(422),
    summary="Price revisions of a purchase order / 采购订单调价记录",
)
def po_price_revisions(reader: Reader, document_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> list[dict[str, Any]]:
    """Old and new price of each revised line, oldest first (the PO lines themselves stay as posted)."""
    return prices.list_revisions(reader, po_id=document_id)
