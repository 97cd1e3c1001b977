"""Stores (门店): this one and its neighbours, the counterparties of transfers."""

from typing import Any

from fastapi import APIRouter

from edge.ledger import queries
from edge.web.deps import Reader, require
from edge.web.errors import error_responses
from edge.web.schemas import StoreOut

router = APIRouter(prefix="/api/v1", tags=["stores"], responses=error_responses(401, 403, 500))


@router.get("/stores", response_model=list[StoreOut], dependencies=[require("stores:read")], summary="门店")
def list_stores(reader: Reader) -> list[dict[str, Any]]:
    return queries.list_stores(reader)
