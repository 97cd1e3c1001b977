"""replenishment routes (filled by their owner in issue 5)."""

from fastapi import APIRouter

from edge.web.errors import error_responses

router = APIRouter(prefix="/api/v1", tags=["replenishment"], responses=error_responses(401, 403, 500))
