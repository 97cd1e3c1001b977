"""Vouchers (凭证): the books, for roles that may read them."""

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query

from edge.ledger import queries
from edge.web.deps import Reader, require
from edge.web.errors import error_responses
from edge.web.schemas import MAX_DOCUMENT_ID, VoucherOut

router = APIRouter(prefix="/api/v1", tags=["vouchers"], responses=error_responses(401, 403, 422, 500))


@router.get("/vouchers", response_model=list[VoucherOut], dependencies=[require("vouchers:read")], summary="凭证")
def list_vouchers(
    reader: Reader,
    document_id: Annotated[int | None, Query(ge=1, le=MAX_DOCUMENT_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
    since: Annotated[date | None, Query(description="only vouchers dated on or after (YYYY-MM-DD)")] = None,
    until: Annotated[date | None, Query(description="only vouchers dated on or before (YYYY-MM-DD)")] = None,
) -> list[dict[str, Any]]:
    """Vouchers with their lines, newest first."""
    return queries.list_vouchers(reader, document_id=document_id, limit=limit, offset=offset, since=since, until=until)
