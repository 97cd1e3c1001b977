"""HTTP API of the sync state with the aggregator (issue 6, docs/sync.md): what is pending and acknowledged, and
one upload round now."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from edge.sync.errors import SyncNotConfigured
from edge.sync.service import local_status
from edge.web.deps import Deps, read, require
from edge.web.errors import error_responses
from edge.web.schemas import ErrorOut

router = APIRouter(prefix="/api/v1", tags=["sync"], responses=error_responses(401, 403, 500))


@router.get("/sync/status", dependencies=[require("sync:read")], summary="Sync state / 同步状态")
async def sync_status(request: Request, deps: Deps) -> dict[str, Any]:
    """Pending outbox rows, the last batch, what the aggregator acknowledged and applied, lag, the last error
    (`configured: false` and the local facts when no `sync_url` is set)."""
    service = getattr(request.app.state, "sync", None)
    if service is None:
        local = await read(deps, local_status, deps.clock())
        return {"configured": False, "url": None, **local}
    status: dict[str, Any] = await service.status()
    return status


@router.post(
    "/sync/push",
    dependencies=[require("sync:manage")],
    summary="Upload now / 立即上传",
    responses=error_responses(409, 503)
    | {
        502: {"model": ErrorOut, "description": "The aggregator refused (`sync_refused`) / 汇总服务拒绝"},
        503: {"model": ErrorOut, "description": "The aggregator cannot be reached / 无法连接汇总服务"},
    },
)
async def sync_push(request: Request) -> dict[str, Any]:
    """One upload round now: `{batches, rows, answers, applied_through}`. 503 `sync_unavailable` when the
    aggregator cannot be reached, 502 `sync_refused` when it refused (detail `remote_code`), 409
    `sync_not_configured` without `sync_url`."""
    service = getattr(request.app.state, "sync", None)
    if service is None:
        raise SyncNotConfigured("未设置 sync_url", "sync_url is not set")
    sent: dict[str, Any] = await service.push_now()
    return sent
