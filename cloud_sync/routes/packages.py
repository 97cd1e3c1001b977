"""Aggregator HTTP API: packages (docs/packages.md). Stores (signed) list, download and report; HQ uploads."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from starlette.concurrency import run_in_threadpool

from cloud_sync.auth import StoreIdentity, signed_store
from cloud_sync.errors import CloudError
from cloud_sync.hq.auth import HqCaller, require_hq
from cloud_sync.modules import gate
from cloud_sync.packages import store as package_store

router = APIRouter(prefix="/api/v1", tags=["packages"])
Store = Annotated[StoreIdentity, Depends(signed_store)]
PackageId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def _read(request: Request, fn: Any, *args: Any) -> Any:
    with request.app.state.engine.connect() as conn:
        return fn(conn, *args)


def _offered(conn: Any, store: str) -> dict[str, Any]:
    served = gate.served_to(conn, store)
    rows = package_store.for_store(conn, store, served.held)
    return {"store": store, "packages": rows, "rollbacks": served.rollbacks}


@router.get("/sync/packages", summary="Packages for this store / 本店的下发包")
async def offered(request: Request, identity: Store) -> Any:
    """The newest version of each kind and name published for this store (or for every store); module versions
    only as their rollout allows, and `rollbacks` [{kind, name, version, to_version}] the store must make."""
    return await run_in_threadpool(_read, request, _offered, identity.store)


def _content(conn: Any, store: str, package_id: int) -> bytes:
    if gate.is_held(conn, store, package_id):
        raise CloudError("package_not_found", "没有这个下发包", "no such package for this store", 404, id=package_id)
    return package_store.content(conn, store, package_id)


@router.get("/sync/packages/{package_id}/content", summary="A package file / 下载下发包")
async def download(request: Request, identity: Store, package_id: PackageId) -> Response:
    data = await run_in_threadpool(_read, request, _content, identity.store, package_id)
    return Response(data, media_type="application/zip")


@router.post("/sync/packages/{package_id}/status", summary="Report an install / 上报安装结果")
async def report(request: Request, identity: Store, package_id: PackageId) -> Any:
    import json

    try:
        body = json.loads(identity.body or b"null")
    except ValueError:
        raise CloudError("package_status_invalid", "不是 JSON", "body is not JSON", 422) from None
    state = request.app.state
    return await run_in_threadpool(
        package_store.record_status, state.engine, identity.store, package_id, body, state.clock()
    )


@router.post(
    "/hq/packages",
    status_code=201,
    summary="Publish a signed package / 发布下发包",
    openapi_extra={"requestBody": {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}}},
)
async def upload(request: Request, hq: Annotated[HqCaller, Depends(require_hq)]) -> Any:
    """The body is the package file as `storebox-cloud packages build` wrote it (signed by HQ elsewhere)."""
    state = request.app.state
    limit = state.settings.packages_max_bytes
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise CloudError("package_too_large", "下发包过大", "package is too large", 413, limit=limit)
    by = f"hq:{hq.name}"
    return await run_in_threadpool(
        lambda: package_store.publish(
            state.engine, bytes(data), public_key=state.settings.hq_public_key, now=state.clock(), by=by
        )
    )
