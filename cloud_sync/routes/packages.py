"""Aggregator HTTP API: packages (issue 6)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["packages"])
