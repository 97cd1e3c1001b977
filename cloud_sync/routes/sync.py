"""Store endpoints of the sync protocol (docs/sync-protocol.md): batches, heartbeat, state, key rotation, totals.

Every route takes the signed store from `signed_store`; the body it verified is the body it reads.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from cloud_sync.auth import StoreIdentity, record_rejection, rotate_key, signed_store
from cloud_sync.errors import CloudError
from cloud_sync.facts import store_totals
from cloud_sync.ingest import ingest_batch, parse_head, sync_answer

router = APIRouter(prefix="/api/v1", tags=["sync"])
Store = Annotated[StoreIdentity, Depends(signed_store)]


@router.post("/sync/batches")
async def post_batch(request: Request, who: Store) -> dict[str, Any]:
    """Store and apply one batch of the store's outbox (idempotent on store and seq)."""
    state = request.app.state
    compressed = request.headers.get("content-encoding", "").lower() == "gzip"
    head = parse_head(dict(request.query_params))
    started = time.perf_counter()
    try:
        answer = await run_in_threadpool(
            ingest_batch, state.engine, who.store, who.body, compressed=compressed, head=head, now=state.clock()
        )
    except CloudError as error:
        state.metrics.batches.labels(status=error.code).inc()
        state.metrics.rejections.labels(code=error.code).inc()
        if error.code != "batch_conflict":  # a conflict is logged and kept by the ingest itself
            await run_in_threadpool(record_rejection, state.engine, error, who.store, who.key_id, state.clock())
        raise
    state.metrics.ingest_seconds.observe(time.perf_counter() - started)
    state.metrics.batches.labels(status=answer["status"]).inc()
    state.metrics.rows.inc(answer["rows"])
    return answer


@router.post("/sync/heartbeat")
async def heartbeat(request: Request, who: Store) -> dict[str, Any]:
    """The box is alive; its outbox head travels in the signed query string."""
    state = request.app.state
    head = parse_head(dict(request.query_params))
    return await run_in_threadpool(sync_answer, state.engine, who.store, head, state.clock())


@router.get("/sync/state")
async def sync_state(request: Request, who: Store) -> dict[str, Any]:
    """What the aggregator has applied of this store, and the batches it is missing."""
    state = request.app.state
    return await run_in_threadpool(sync_answer, state.engine, who.store, None, state.clock())


@router.post("/sync/keys/rotate")
async def rotate(request: Request, who: Store) -> dict[str, Any]:
    """A new key for the signing store; the current ones keep working for the grace period."""
    state = request.app.state
    grace = timedelta(hours=state.settings.key_grace_hours)
    key, old, expires = await run_in_threadpool(rotate_key, state.engine, who.store, state.clock(), grace)
    return {
        "key": str(key),
        "key_id": key.key_id,
        "old_key_id": who.key_id,
        "old_key_expires_at": expires,
        "old_key_ids": old,
        "old_keys_expire_at": expires,
    }


@router.get("/sync/totals")
async def totals(request: Request, who: Store) -> dict[str, Any]:
    """This store's totals at the aggregator, to compare with the box's (storebox sync verify)."""

    def read() -> dict[str, Any]:
        with request.app.state.engine.connect() as conn:
            return store_totals(conn, who.store)

    return await run_in_threadpool(read)
