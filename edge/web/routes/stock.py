"""Stock (库存): balances, valuation and moves."""

from typing import Annotated, Any

from fastapi import APIRouter, Query

from edge.ledger import queries
from edge.web.deps import Reader, require
from edge.web.errors import error_responses
from edge.web.schemas import MAX_DOCUMENT_ID, MoveOut, StockRowOut, ValuationOut

router = APIRouter(prefix="/api/v1/stock", tags=["stock"], responses=error_responses(401, 403, 422, 500))

Filter = Annotated[str | None, Query(max_length=64)]
Offset = Annotated[int, Query(ge=0, le=2**31)]


@router.get("", response_model=list[StockRowOut], dependencies=[require("stock:read")], summary="Stock on hand / 库存")
def stock(
    reader: Reader,
    sku: Filter = None,
    location: Filter = None,
    lot: Annotated[str | None, Query(max_length=64, description="'' for stock without a lot")] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    """Balances that are not zero, one row per item, location and lot, in that order."""
    return queries.stock_rows(reader, sku=sku, location=location, lot=lot, limit=limit, offset=offset)


@router.get(
    "/valuation",
    response_model=ValuationOut,
    dependencies=[require("stock:valuation")],
    summary="Stock value at moving-average cost / 库存金额",
)
def valuation(reader: Reader) -> dict[str, Any]:
    return queries.valuation(reader)


@router.get("/moves", response_model=list[MoveOut], dependencies=[require("stock:read")], summary="库存流水")
def moves(
    reader: Reader,
    sku: Filter = None,
    location: Filter = None,
    document_id: Annotated[int | None, Query(ge=1, le=MAX_DOCUMENT_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    """Stock moves, newest first."""
    return queries.list_moves(reader, sku=sku, location=location, document_id=document_id, limit=limit, offset=offset)
