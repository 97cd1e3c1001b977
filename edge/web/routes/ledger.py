"""Ledger verification (账务核对)."""

from typing import Any

from fastapi import APIRouter

from edge.ledger.verify import verify_ledger
from edge.web.deps import Deps, Reader, require
from edge.web.errors import error_responses
from edge.web.schemas import VerifyOut

router = APIRouter(prefix="/api/v1/ledger", tags=["ledger"], responses=error_responses(401, 403, 500))


@router.post(
    "/verify",
    response_model=VerifyOut,
    dependencies=[require("ledger:verify")],
    summary="Check the ledger / 账务核对",
)
def verify(deps: Deps, reader: Reader) -> dict[str, Any]:
    """Rebuild balances from the moves, check vouchers balance and the audit chain is unbroken.

    Reads only, in one snapshot: the lists of mismatches are empty and `ok` is true when all is right.
    """
    reader.execute("BEGIN")
    try:
        return verify_ledger(reader, allow_negative=deps.settings.allow_negative_stock)
    finally:
        reader.execute("COMMIT")
