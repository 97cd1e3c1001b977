"""Items (商品) and barcode lookup."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from edge.ledger import queries
from edge.ledger.errors import UnknownItem
from edge.web.deps import Reader, require
from edge.web.errors import error_responses
from edge.web.schemas import BarcodeLookupOut, ItemDetailOut, ItemOut

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
