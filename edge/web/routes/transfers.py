"""HTTP API of cross-store transfers through the aggregator (issue 6)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["transfers"])
