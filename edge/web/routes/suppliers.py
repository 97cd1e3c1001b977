"""Suppliers (供应商)."""

from typing import Any

from fastapi import APIRouter

from edge.ledger import queries
from edge.web.deps import Reader, require
from edge.web.errors import error_responses
from edge.web.schemas import SupplierOut

router = APIRouter(prefix="/api/v1", tags=["suppliers"], responses=error_responses(401, 403, 500))


@router.get("/suppliers", response_model=list[SupplierOut], dependencies=[require("suppliers:read")], summary="供应商")
def list_suppliers(reader: Reader) -> list[dict[str, Any]]:
    return queries.list_suppliers(reader)
