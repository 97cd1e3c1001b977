"""Items (商品) and barcode lookup."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from edge.ledger import queries
from edge.ledger.errors import UnknownItem
from edge.ledger.masterdata import VAT_RATES_BP, update_item
from edge.security.users import User
from edge.web.deps import Deps, Reader, read, require
from edge.web.errors import ApiError, error_responses
from edge.web.schemas import BarcodeLookupOut, ItemDetailOut, ItemOut, text_without_nul

router = APIRouter(prefix="/api/v1", tags=["items"], responses=error_responses(401, 403, 422, 500))


@router.get("/items", response_model=list[ItemOut], dependencies=[require("items:read")], summary="Items / 商品列表")
def list_items(
    reader: Reader,
    q: Annotated[str | None, Query(min_length=1, max_length=100, description="part of SKU, name or barcode")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> list[dict[str, Any]]:
    """Items in SKU order; `q` matches part of the SKU, the Chinese or English name, or a barcode."""
    return queries.list_items(reader, q=q, limit=limit, offset=offset)


@router.get(
    "/items/{sku}",
    response_model=ItemDetailOut,
    dependencies=[require("items:read")],
    responses=error_responses(404),
    summary="One item with units, barcodes and stock / 商品详情",
)
def get_item(reader: Reader, sku: Annotated[str, Path(min_length=1, max_length=64)]) -> dict[str, Any]:
    item = queries.get_item(reader, sku)
    if item is None:
        raise UnknownItem(sku)
    return item


class ItemChangeIn(BaseModel):
    """What may change on an item; documents already posted keep the rate and prices they were posted with."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Annotated[str, AfterValidator(text_without_nul)] | None = Field(None, min_length=1, max_length=200)
    name_en: Annotated[str, AfterValidator(text_without_nul)] | None = Field(None, max_length=200)
    vat_rate_bp: int | None = Field(
        None, description=f"VAT rate in basis points, one of {', '.join(map(str, VAT_RATES_BP))} (13%, 9%, 6%, 3%, 0)"
    )
    price_fen: int | None = Field(None, ge=0, le=1_000_000_000, description="selling price per base unit, VAT included")
    cost_fen: int | None = Field(None, ge=0, le=1_000_000_000, description="purchase price per base unit, VAT included")
    active: bool | None = None


@router.patch(
    "/items/{sku}",
    response_model=ItemDetailOut,
    responses=error_responses(404, 409, 413, 503),
    summary="Change an item's VAT rate, prices or names / 修改商品",
)
async def change_item(
    sku: Annotated[str, Path(min_length=1, max_length=64)],
    body: Annotated[ItemChangeIn, Body()],
    deps: Deps,
    user: Annotated[User, require("items:write")],
) -> dict[str, Any]:
    """Applies to postings from now on; each change (old and new value) is in the audit trail."""
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise ApiError(
            422, "validation_error", "没有要修改的字段", "nothing to change", fields=list(ItemChangeIn.model_fields)
        )
    await deps.writer.execute(update_item, sku, changes, user.username, deps.clock().isoformat())
    item = await read(deps, queries.get_item, sku)
    if item is None:
        raise UnknownItem(sku)
    return item


@router.get(
    "/barcodes/{code}",
    response_model=BarcodeLookupOut,
    dependencies=[require("items:read")],
    responses=error_responses(404),
    summary="Look up a barcode / 条码查询",
)
def lookup_barcode(reader: Reader, code: Annotated[str, Path(min_length=1, max_length=64)]) -> dict[str, Any]:
    """The item and unit of a barcode (a case barcode answers the case unit and its factor)."""
    found = queries.lookup_barcode(reader, code)
    if found is None:
        raise UnknownItem(code)
    return found
