"""books routes (filled in by the issue 3 work)."""

from fastapi import APIRouter

from edge.web.errors import error_responses

router = APIRouter(prefix="/api/v1", tags=["books"], responses=error_responses(401, 403, 500))
