"""Finance entries (财务单据): supplier payments, loss approvals, rule versions, the chart; see docs/finance.md."""

from fastapi import APIRouter

from edge.web.errors import error_responses

router = APIRouter(prefix="/api/v1", tags=["finance"], responses=error_responses(401, 403, 500))
