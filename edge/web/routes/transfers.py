"""HTTP API of cross-store transfers through the aggregator (issue 6, docs/transfers.md): incoming transfers to
receive with counted quantities, outgoing transfers and their settlement, and other stores' stock of an item."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from edge.security.users import User
from edge.sync import transfers as tr
from edge.sync.errors import SyncNotConfigured
from edge.web.deps import IDEMPOTENCY_KEY_PARAMETER, Deps, idempotency_key, read, require
from edge.web.errors import error_body, error_responses, ledger_status

router = APIRouter(prefix="/api/v1", tags=["transfers"], responses=error_responses(401, 403, 500))

Reader_ = Annotated[User, require("transfers:read")]
Writer_ = Annotated[User, require("transfers:write")]
State = Annotated[str | None, Query(pattern="^(in_transit|received|settled|cancelled)$", description="filter")]
REPLAY_HEADER = "Idempotent-Replayed"


class CountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    part_no: int = Field(ge=1, le=1000, description="the part (item and lot as shipped) of the incoming transfer")
    qty: int = Field(ge=0, le=10_000_000, description="counted, in base units; 0 = not received")


class ReceiveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lines: list[CountIn] = Field(min_length=1, max_length=1000)
    location: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$", description="where it goes")
    note: str | None = Field(default=None, max_length=500)


@router.get("/transfers/incoming", summary="Incoming transfers / 调入单", responses=error_responses(422))
async def incoming(deps: Deps, user: Reader_, state: State = None) -> dict[str, Any]:
    """Transfers other stores shipped to this store, as last pulled from the aggregator."""
    return {"transfers": await read(deps, tr.list_local, "incoming", state)}


@router.get("/transfers/outgoing", summary="Outgoing transfers / 调出单", responses=error_responses(422))
async def outgoing(deps: Deps, user: Reader_, state: State = None) -> dict[str, Any]:
    """Transfers this store shipped, with what the other store received and whether they are settled."""
    return {"transfers": await read(deps, tr.list_local, "outgoing", state)}


@router.post(
    "/transfers/incoming/{transfer_id}/receive",
    summary="Receive an incoming transfer / 调入收货",
    openapi_extra={"parameters": [IDEMPOTENCY_KEY_PARAMETER]},
    responses=error_responses(400, 404, 409, 422, 503),
    status_code=201,
)
async def receive(
    deps: Deps,
    user: Writer_,
    transfer_id: Annotated[int, Path(ge=1, le=2**62)],
    body: Annotated[ReceiveIn, Body()],
    key: Annotated[str, Depends(idempotency_key)],
) -> JSONResponse:
    """Post the transfer in for the counted quantities, at the sending store's cost, lots and expiries as
    shipped; parts left out or counted 0 were not received (the sender books the shortage on settlement)."""
    counts: dict[int, int] = {}
    for line in body.lines:
        if line.part_no in counts:
            raise tr.InvalidCount(f"第 {line.part_no} 项重复", f"part {line.part_no} is counted twice")
        counts[line.part_no] = line.qty
    result = await deps.writer.execute_posting(
        tr.receive_incoming, transfer_id, counts, body.location, user.username, f"api:transfer-in:{key}", body.note
    )
    headers = {REPLAY_HEADER: "true"} if result.get("replayed") else None
    if not result["ok"]:
        answer = error_body(result["code"], result["message"], result["message_en"], result["detail"])
        return JSONResponse(answer, status_code=ledger_status(result["code"]), headers=headers)
    return JSONResponse(result, status_code=201, headers=headers)


@router.get(
    "/transfers/sources",
    summary="Where to transfer from / 调拨货源",
    responses=error_responses(409, 422, 503),
)
async def sources(
    request: Request,
    deps: Deps,
    user: Reader_,
    sku: Annotated[str, Query(pattern=r"^[A-Za-z0-9._-]{1,64}$")],
) -> dict[str, Any]:
    """Other stores' stock of an item live from the aggregator, ranked (stock, cold chain, shelf life, distance);
    the peer_stock table of emergency orders is refreshed with it."""
    sync = getattr(request.app.state, "sync", None)
    if sync is None:
        raise SyncNotConfigured("未设置 sync_url", "sync_url is not set")
    return await tr.sources(sync.client, deps.settings, deps.writer, deps.open_reader, sku, deps.clock)


@router.get("/transfers/requests", summary="Transfer requests to ship / 他店调拨申请")
async def requests(deps: Deps, user: Reader_) -> dict[str, Any]:
    """Transfer requests other stores sent to this store through the aggregator (asked to ship), as last pulled."""
    return {"requests": await read(deps, tr.list_requests)}
