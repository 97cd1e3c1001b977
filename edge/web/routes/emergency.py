"""Emergency requests in plain Chinese (紧急要货, docs/emergency-requests.md).

Parse first (no side effects): the text becomes item candidates, quantity and unit, deadline, cold chain, vehicle
transfer and urgency, with the proposed action (a transfer from a neighbour, or an urgent purchase order). Create
second, once per `Idempotency-Key`, with the user's corrections (`overrides`). Neighbours' stock is loaded per store.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool

from edge.ledger.errors import DomainError
from edge.replenishment import emergency_orders
from edge.replenishment.emergency import EmergencyParse, ParseOptions, describe, parse_request, with_overrides
from edge.replenishment.emergency_orders import EmergencyPolicy, plan_emergency
from edge.replenishment.item_index import ItemIndex
from edge.security.users import User
from edge.web.deps import IDEMPOTENCY_KEY_PARAMETER, ApiDeps, Deps, Reader, idempotency_key, require
from edge.web.errors import error_responses

REPLAY_HEADER = "Idempotent-Replayed"
API_KEY_PREFIX = "api:"
MAX_PEER_ROWS = 100_000

router = APIRouter(prefix="/api/v1", tags=["emergency"], responses=error_responses(401, 403, 500))

IdempotencyKey = Annotated[str, Depends(idempotency_key)]
Writer = Annotated[User, require("emergency:write")]
Code = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
TransferId = Annotated[int, Path(ge=1, le=2**62, description="the transfer request's id")]


# --- bodies -------------------------------------------------------------------------------------


class ParseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(
        min_length=1, max_length=5000, examples=["急需 -20℃ 冷冻水饺 50 箱，明早前到，车载调拨"], description="as said"
    )


class Overrides(BaseModel):
    """What the user corrected or chose after seeing the parse (each optional)."""

    model_config = ConfigDict(extra="forbid")

    sku: Code | None = None
    quantity: float | None = Field(None, gt=0, le=1e9)
    unit: str | None = Field(None, min_length=1, max_length=16)
    deadline: datetime | None = Field(None, description="RFC 3339 with an offset")
    mode: Literal["transfer", "purchase"] | None = None
    vehicle: bool | None = None
    source_store: Code | None = None
    destination: Code | None = None

    @field_validator("quantity")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("a finite number")
        return value

    @field_validator("deadline")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("a time with an offset, e.g. 2026-12-06T08:00:00+08:00")
        return value


class CreateBody(ParseBody):
    overrides: Overrides | None = None


class PeerStockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Code
    qty: int = Field(ge=0, le=10**12, description="base units")
    storage_class: Literal["ambient", "chilled", "frozen"] | None = Field(None, description="default: the item's")
    cold_chain_capable: bool = Field(False, description="the store can ship it chilled or frozen")
    last_outbound_date: date | None = None
    min_shelf_life_days: int | None = Field(None, ge=0, le=36500, description="days left on its shortest lot")
    distance_km: float | None = Field(None, ge=0, le=100_000)
    eta_minutes: int | None = Field(None, ge=0, le=100_000)

    @field_validator("distance_km")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("a finite number")
        return value


class PeerStockBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store: Code = Field(examples=["store-zhongshan"])
    as_of: datetime | None = Field(None, description="when the store counted (RFC 3339 with an offset; default: now)")
    rows: list[PeerStockIn] = Field(max_length=MAX_PEER_ROWS, description="the store's whole snapshot")

    @field_validator("as_of")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("a time with an offset, e.g. 2026-12-05T09:30:00+08:00")
        return value


class CancelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500)


# --- answers ------------------------------------------------------------------------------------


class ParseOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    text: str
    sku: str | None
    candidates: list[dict[str, Any]]
    ambiguous: bool
    quantity: float | None
    unit: str | None
    item_unit: str | None
    qty_base: int | None
    deadline: str | None
    urgent: bool
    cold_chain: str | None
    vehicle: bool
    mode: str | None
    complete: bool
    notes: list[dict[str, str]]


class ProposalOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    action: Literal["transfer", "purchase", "none"]
    sku: str
    qty: int
    unit: str
    qty_base: int
    source_store: str | None
    supplier: str | None
    message: str
    message_en: str


class ParsedOut(BaseModel):
    parse: ParseOut
    summary: str = Field(description="what the box understood, in Chinese")
    summary_en: str
    proposal: ProposalOut | None = Field(description="the action a create would take now (None: not complete)")
    proposal_error: dict[str, Any] | None = Field(description="why there is no proposal")


class EmergencyOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: int
    text: str
    action: str
    state: str
    sku: str
    qty_base: int
    transfer_id: int | None
    document_id: int | None
    created_by: str
    created_at: str


class CreatedOut(EmergencyOut):
    replayed: bool


class TransferRequestOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: int
    from_store: str
    to_store: str
    sku: str
    qty: int
    unit: str
    qty_base: int
    cold_chain: str
    vehicle: bool
    deadline: str | None
    state: str


class PeerStockLoadedOut(BaseModel):
    store: str
    rows: int
    updated_at: str


# --- helpers ------------------------------------------------------------------------------------


def _options(deps: ApiDeps) -> ParseOptions:
    s = deps.settings
    return ParseOptions(
        timezone=s.timezone,
        max_chars=s.emergency_max_text_chars,
        min_score=s.emergency_min_match_score,
        margin=s.emergency_ambiguity_margin,
    )


def _policy(deps: ApiDeps) -> EmergencyPolicy:
    s = deps.settings
    return EmergencyPolicy(
        local_store=s.store_id,
        min_shelf_life_days=s.emergency_min_shelf_life_days,
        min_shelf_life_share=s.emergency_min_shelf_life_share,
        peer_stock_max_age_hours=s.emergency_peer_stock_max_age_hours,
    )


def item_index(request: Request, conn: Any) -> ItemIndex:
    """The item index of this API, rebuilt when the master data changed (kept on the app, not in a global)."""
    fingerprint = ItemIndex.fingerprint(conn)
    cached: tuple[str, ItemIndex] | None = getattr(request.app.state, "emergency_index", None)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    index = ItemIndex.from_db(conn)
    request.app.state.emergency_index = (fingerprint, index)
    return index


def _parse(request: Request, deps: ApiDeps, conn: Any, text: str, overrides: Overrides | None) -> EmergencyParse:
    index = item_index(request, conn)
    now = deps.clock()
    parse = parse_request(text, index, deps.today(), now, _options(deps))
    if overrides is not None:
        parse = with_overrides(parse, index, overrides.model_dump(exclude_unset=True))
    return parse


# --- routes -------------------------------------------------------------------------------------


@router.post(
    "/replenishment/emergency/parse",
    response_model=ParsedOut,
    responses=error_responses(422),
    summary="Parse an emergency request / 解析紧急要货",
)
def parse_emergency(body: CreateBody, request: Request, deps: Deps, reader: Reader, user: Writer) -> dict[str, Any]:
    """Reads the text and proposes the action; writes nothing. With `overrides` (the user's corrections, as a create
    would take them) it shows what that create would do."""
    parse = _parse(request, deps, reader, body.text, body.overrides)
    zh, en = describe(parse)
    proposal: dict[str, Any] | None = None
    problem: dict[str, Any] | None = None
    try:
        proposal = plan_emergency(reader, parse, policy=_policy(deps), now=deps.clock()).to_json()
    except DomainError as exc:
        problem = exc.to_dict()
    return {"parse": parse.to_json(), "summary": zh, "summary_en": en, "proposal": proposal, "proposal_error": problem}


@router.post(
    "/replenishment/emergency",
    status_code=201,
    response_model=CreatedOut,
    responses=error_responses(400, 409, 422, 503),
    openapi_extra={"parameters": [IDEMPOTENCY_KEY_PARAMETER]},
    summary="Create an emergency request / 创建紧急要货",
)
async def create_emergency(
    body: CreateBody, request: Request, deps: Deps, user: Writer, key: IdempotencyKey
) -> JSONResponse:
    """Parses again (with the overrides) and creates the draft transfer request or the urgent purchase order."""

    def parse_now() -> EmergencyParse:
        conn = deps.open_reader()
        try:
            return _parse(request, deps, conn, body.text, body.overrides)
        finally:
            conn.close()

    parse = await run_in_threadpool(parse_now)
    said = body.overrides.model_dump(mode="json", exclude_unset=True) if body.overrides else None
    result = await deps.writer.execute_posting(
        emergency_orders.create_emergency,
        parse,
        API_KEY_PREFIX + key,
        user.username,
        _policy(deps),
        emergency_orders.request_fingerprint(body.text, said),
    )
    headers = {REPLAY_HEADER: "true"} if result["replayed"] else None
    return JSONResponse(CreatedOut.model_validate(result).model_dump(mode="json"), status_code=201, headers=headers)


@router.get(
    "/replenishment/emergency",
    response_model=list[EmergencyOut],
    dependencies=[require("replenishment:read")],
    summary="Emergency requests / 紧急要货记录",
)
def list_emergencies(
    reader: Reader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> list[dict[str, Any]]:
    """Newest first, each with its parse and plan."""
    return emergency_orders.list_emergency_requests(reader, limit=limit, offset=offset)


@router.get(
    "/replenishment/transfer-requests",
    response_model=list[TransferRequestOut],
    dependencies=[require("replenishment:read")],
    summary="Transfer requests / 调拨申请",
)
def list_transfers(
    reader: Reader,
    state: Annotated[Literal["draft", "sent", "cancelled"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> list[dict[str, Any]]:
    return emergency_orders.list_transfer_requests(reader, state=state, limit=limit, offset=offset)


@router.post(
    "/replenishment/transfer-requests/{transfer_id}/cancel",
    response_model=TransferRequestOut,
    responses=error_responses(404, 409, 422, 503),
    summary="Cancel a draft transfer request / 取消调拨申请",
)
async def cancel_transfer(transfer_id: TransferId, body: CancelBody, deps: Deps, user: Writer) -> dict[str, Any]:
    """Cancelling a cancelled request again changes nothing (safe to retry)."""
    result: dict[str, Any] = await deps.writer.execute(
        emergency_orders.cancel_transfer_request, transfer_id, body.reason, user.username, deps.clock()
    )
    return result


@router.post(
    "/replenishment/peer-stock",
    response_model=PeerStockLoadedOut,
    responses=error_responses(404, 422, 503),
    summary="Load a neighbouring store's stock / 导入邻店库存",
)
async def load_peer_stock(
    body: PeerStockBody, deps: Deps, user: Annotated[User, require("replenishment:run")]
) -> dict[str, Any]:
    """Replaces the store's whole snapshot at once (all rows or none): sending the same report again is harmless."""
    rows = [row.model_dump() | ({"updated_at": body.as_of} if body.as_of else {}) for row in body.rows]
    result: dict[str, Any] = await deps.writer.execute(emergency_orders.load_peer_stock, body.store, rows, deps.clock())
    return result


@router.get(
    "/replenishment/peer-stock",
    response_model=list[dict[str, Any]],
    dependencies=[require("replenishment:read")],
    summary="Neighbouring stores' stock / 邻店库存",
)
def list_peer_stock(
    reader: Reader,
    sku: Annotated[str | None, Query(max_length=64)] = None,
    store: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> list[dict[str, Any]]:
    return emergency_orders.list_peer_stock(reader, sku=sku, store=store, limit=limit, offset=offset)
