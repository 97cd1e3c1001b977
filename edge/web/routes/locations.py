"""Locations (库位)."""

from typing import Any

from fastapi import APIRouter

from edge.ledger import queries
from edge.web.deps import Reader, require
from edge.web.errors import error_responses
from edge.web.schemas import LocationOut

router = APIRouter(prefix="/api/v1", tags=["locations"], responses=error_responses(401, 403, 500))


@router.get("/locations", response_model=list[LocationOut], dependencies=[require("locations:read")], summary="库位")
def list_locations(reader: Reader) -> list[dict[str, Any]]:
    """Every location: sales floor, back room, cold room, freezer, in transit..."""
    return queries.list_locations(reader)
