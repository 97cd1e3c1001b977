"""TODO(issue 4): routes of supplier_portal."""

from fastapi import APIRouter

from edge.web.errors import error_responses

router = APIRouter(prefix="/api/v1", tags=["supplier_portal"], responses=error_responses(401, 403, 500))
