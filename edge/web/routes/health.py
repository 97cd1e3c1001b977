"""Health (no login): is the database answering, and what the box reports about its parts."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from edge.web.deps import Deps
from edge.web.errors import error_responses
from edge.web.schemas import HealthOut

router = APIRouter(tags=["health"])


def _health(deps: Deps) -> JSONResponse:
    facts: dict[str, Any] = {}
    status = "ok"
    try:
        conn = deps.open_reader()
        try:
            conn.execute("SELECT 1").fetchone()
        finally:
            conn.close()
        database = True
    except Exception:
        database = False
        status = "unavailable"
    try:
        facts = dict(deps.health())
    except Exception as exc:
        facts = {"health_error": type(exc).__name__}
        status = "degraded" if status == "ok" else status
    if status == "ok" and any(value is False for value in facts.values()):
        status = "degraded"
    body = HealthOut.model_validate({**facts, "status": status, "time": deps.clock().isoformat(), "database": database})
    return JSONResponse(body.model_dump(mode="json"), status_code=503 if status == "unavailable" else 200)


@router.get(
    "/api/v1/health",
    response_model=HealthOut,
    responses=error_responses(500) | {503: {"model": HealthOut, "description": "the database does not answer"}},
    summary="Health of the box / 健康检查",
)
def health(deps: Deps) -> JSONResponse:
    """200 while the database answers (`status` ok, or degraded when a part such as the broker reports
    false); 503 when it does not. No login needed."""
    return _health(deps)


@router.get("/health", response_model=HealthOut, include_in_schema=False)
def root_health(deps: Deps) -> JSONResponse:
    return _health(deps)
