"""TODO(issue 4): routes of cold_rooms."""

from fastapi import APIRouter

from edge.web.errors import error_responses

router = APIRouter(prefix="/api/v1", tags=["cold_rooms"], responses=error_responses(401, 403, 500))
