"""Aggregator HTTP API of cross-store transfers (issue 6): other stores' stock of an item, and a store's incoming
and outgoing transfers. Store endpoints, signed (docs/sync-protocol.md); docs/transfers.md."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from cloud_sync.auth import StoreIdentity, signed_store
from cloud_sync.errors import CloudError
from cloud_sync.transfers.queries import DIRECTIONS, STATES, list_requests, list_transfers, peer_stock, store_request

router = APIRouter(prefix="/api/v1", tags=["transfers"])
Store = Annotated[StoreIdentity, Depends(signed_store)]


@router.get("/sync/peer-stock")
async def get_peer_stock(request: Request, who: Store, sku: str) -> dict[str, Any]:
    """Other stores of this store's company holding `sku`: on hand outside transit, last outbound date, shortest
    remaining shelf life of their lots with stock, cold chain, distance (nearest first)."""
    if not 1 <= len(sku) <= 64:
        raise CloudError("invalid_sku", "商品编码须为 1 到 64 个字符", "sku must be 1..64 characters", 422, field="sku")
    state = request.app.state
    today = state.clock().date()

    def read() -> list[dict[str, Any]]:
        with state.engine.connect() as conn:
            return peer_stock(conn, who.store, sku, today)

    return {"sku": sku, "as_of": today.isoformat(), "stores": await run_in_threadpool(read)}


@router.get("/sync/transfers")
async def get_transfers(
    request: Request, who: Store, direction: str = "incoming", state: str | None = None
) -> dict[str, Any]:
    """This store's incoming or outgoing transfers with their parts, newest first."""
    if direction not in DIRECTIONS:
        raise CloudError(
            "invalid_direction",
            f"direction 须为 {'/'.join(DIRECTIONS)}",
            f"direction must be one of {', '.join(DIRECTIONS)}",
            422,
            field="direction",
        )
    if state is not None and state not in STATES:
        raise CloudError(
            "invalid_state", f"state 须为 {'/'.join(STATES)}", f"state must be one of {', '.join(STATES)}", 422
        )
    engine = request.app.state.engine

    def read() -> list[dict[str, Any]]:
        with engine.connect() as conn:
            return list_transfers(conn, who.store, direction, state)

    return {"store": who.store, "direction": direction, "transfers": await run_in_threadpool(read)}


@router.post("/sync/transfer-requests")
async def post_transfer_request(request: Request, who: Store) -> dict[str, Any]:
    """Send one of this store's transfer requests to the store it asks to ship (same company); idempotent on the
    request's id in the box. Body JSON: request_id, from_store, sku, qty, unit, qty_base, cold_chain, deadline, note."""
    state = request.app.state
    now = state.clock()

    def write() -> dict[str, Any]:
        with state.engine.begin() as conn:
            return store_request(conn, who.store, who.body, now)

    return await run_in_threadpool(write)


@router.get("/sync/transfer-requests")
async def get_transfer_requests(request: Request, who: Store, direction: str = "incoming") -> dict[str, Any]:
    """Transfer requests other stores sent to this store (incoming) or this store sent (outgoing), newest first."""
    if direction not in DIRECTIONS:
        raise CloudError(
            "invalid_direction",
            f"direction 须为 {'/'.join(DIRECTIONS)}",
            f"direction must be one of {', '.join(DIRECTIONS)}",
            422,
            field="direction",
        )
    engine = request.app.state.engine

    def read() -> list[dict[str, Any]]:
        with engine.connect() as conn:
            return list_requests(conn, who.store, direction)

    return {"store": who.store, "direction": direction, "requests": await run_in_threadpool(read)}
