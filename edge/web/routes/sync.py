"""HTTP API of the sync state with the aggregator (issue 6)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["sync"])
