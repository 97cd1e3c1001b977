"""Replenishment (补货, docs/replenishment.md): reorder suggestions with their reasons, approving them into purchase
orders (the finance guards apply) or rejecting them with a reason, running the plan, the inputs and forecast of
one item, item supplier parameters, and the import of sales history from a previous system.

Decisions are writer jobs kept once per `Idempotency-Key`: a retry answers the first result with
`Idempotent-Replayed: true`.
"""

from __future__ import annotations

import asyncio
import json
import math
from datetime import datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import numpy as np
from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from edge.replenishment import history, suggestions
from edge.replenishment.errors import ItemNotPlanned
from edge.replenishment.planner import PlanContext, PlanRun, prepare_plan
from edge.replenishment.triggers import Planner, PlannerSettings
from edge.security.users import User
from edge.web.deps import IDEMPOTENCY_KEY_PARAMETER, ApiDeps, Deps, Reader, idempotency_key, read, require
from edge.web.errors import ApiError, error_responses

REPLAY_HEADER = "Idempotent-Replayed"
API_KEY_PREFIX = "api:"
MAX_RUN_SKUS = 1000

router = APIRouter(prefix="/api/v1", tags=["replenishment"], responses=error_responses(401, 403, 500))

IdempotencyKey = Annotated[str, Depends(idempotency_key)]
Approver = Annotated[User, require("replenishment:approve")]
Runner = Annotated[User, require("replenishment:run")]
SuggestionId = Annotated[int, Path(ge=1, le=2**62, description="the suggestion's id")]
Sku = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$", description="the item's SKU")]
MasterCode = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Done. A replay of the same Idempotency-Key answers the same body again.",
        "headers": {
            REPLAY_HEADER: {
                "description": "`true` when this is the stored answer to an earlier request with the same key",
                "schema": {"type": "string", "enum": ["true"]},
            }
        },
    },
    **error_responses(400, 404, 409, 422, 503),
}


# --- bodies and answers ---------------------------------------------------------------------------------------


class SignalNoteOut(BaseModel):
    code: str
    message: str
    message_en: str
    effect: float


class SuggestionInputsOut(BaseModel):
    """The numbers behind a suggestion, base units unless named."""

    model_config = ConfigDict(extra="allow")

    forecast_protection: float | None = Field(description="expected sales over lead time + review period")
    protection_days: int
    daily_forecast: list[float] = Field(description="expected sales of the first days, from today")
    on_hand: float | None
    in_transit: float | None
    on_order: float | None
    expiring: float | None = Field(description="on hand that will expire before it sells (not counted)")
    blocked: float | None = Field(description="in lots under an open cold-room alarm (not counted)")
    safety_stock: float | None
    reorder_point: float | None
    order_up_to: float | None
    lead_time_days: float | None
    method: str
    signals: list[SignalNoteOut]


class SuggestionOut(BaseModel):
    id: int
    run_id: int
    sku: str
    item_name: str
    item_name_en: str | None
    location: str
    supplier: str
    supplier_name: str | None
    qty: int = Field(description="in purchase units (unit)")
    unit: str
    pack: int = Field(description="base units per purchase unit")
    base_qty: int
    base_unit: str
    order_by: str = Field(description="the business date by which to order")
    explanation: str
    explanation_en: str
    inputs: SuggestionInputsOut
    state: str = Field(description="open | approved | rejected | superseded")
    created_at: str
    decided_by: str | None
    decided_at: str | None
    reject_reason: str | None
    approved_qty: int | None
    po_id: int | None = Field(description="the purchase order an approval posted")
    po_doc_no: str | None


class DecidedOut(SuggestionOut):
    replayed: bool


class SuggestionPageOut(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[SuggestionOut]


class ApproveIn(BaseModel):
    """Optional: another quantity (purchase units) than suggested, and a note for the PO."""

    model_config = ConfigDict(extra="forbid")

    qty: int | None = Field(None, ge=1, le=suggestions.MAX_ORDER_PACKS)
    note: str | None = Field(None, min_length=1, max_length=500)


class ApproveManyLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int = Field(ge=1, le=2**62)
    qty: int | None = Field(None, ge=1, le=suggestions.MAX_ORDER_PACKS)


class ApproveManyIn(BaseModel):
    """Suggestions approved together: one purchase order per supplier."""

    model_config = ConfigDict(extra="forbid")

    suggestions: list[ApproveManyLine] = Field(min_length=1, max_length=suggestions.MAX_BATCH)
    note: str | None = Field(None, min_length=1, max_length=500)


class ApprovedPoOut(BaseModel):
    supplier: str
    suggestions: list[int]
    po_id: int
    po_doc_no: str


class RefusedPoOut(BaseModel):
    supplier: str
    suggestions: list[int]
    code: str
    message: str
    message_en: str
    detail: dict[str, Any]


class ApprovedManyOut(BaseModel):
    approved: list[ApprovedPoOut]
    refused: list[RefusedPoOut] = Field(description="suppliers the finance guards refused: their suggestions stay open")
    replayed: bool


class RejectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=suggestions.MAX_REASON, examples=["门店下周装修，暂停订货"])


class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    skus: list[MasterCode] | None = Field(None, min_length=1, max_length=MAX_RUN_SKUS, description="only these items")


class RunOut(BaseModel):
    id: int
    trigger: str
    partial: bool
    series: int = Field(description="SKU-locations planned")
    rows: int = Field(description="suggestions written")
    superseded: int
    skipped: list[str]
    duration_ms: int
    methods: dict[str, int]
    errors: list[dict[str, str]]


class RunRecordOut(BaseModel):
    id: int
    trigger: str
    partial: bool
    business_date: str
    started_at: str
    finished_at: str
    series: int
    rows: int
    superseded: int
    duration_ms: int
    methods: dict[str, int]
    errors: list[dict[str, str]]


class ItemSupplierIn(BaseModel):
    """The item's supplier and how it is ordered; the purchase unit's size is the item's unit factor."""

    model_config = ConfigDict(extra="forbid")

    supplier: MasterCode
    unit: str | None = Field(None, min_length=1, max_length=32, description="purchase unit (default: largest unit)")
    moq: int = Field(0, ge=0, le=suggestions.MAX_ORDER_PACKS, description="minimum order, purchase units")
    lead_time_days: float = Field(3.0, ge=0, le=365, description="default lead time until one is learned")
    review_days: float = Field(1.0, gt=0, le=365, description="days between orders")
    service_level: float = Field(0.95, ge=0.5, le=0.999, description="target cycle service level")
    primary: bool = True
    active: bool = True


class ItemSupplierOut(BaseModel):
    sku: str
    supplier: str
    supplier_name: str | None
    unit: str
    pack: int
    moq: int
    lead_time_days: float
    review_days: float
    service_level: float
    primary: bool
    active: bool
    updated_at: str
    updated_by: str


class ItemSuppliersOut(BaseModel):
    sku: str
    suppliers: list[ItemSupplierOut]


class ForecastDayOut(BaseModel):
    date: str
    demand: float


class ItemPlanOut(BaseModel):
    """One SKU-location as the plan sees it now."""

    location: str
    supplier: str
    unit: str
    pack: int
    moq: int
    on_hand: float
    blocked: float
    in_transit: float
    on_order: float
    expiring: float
    safety_stock: float
    reorder_point: float
    order_up_to: float
    position: float
    demand_protection: float
    lead_time_days: float
    lead_time_std: float
    review_days: float
    service_level: float
    method: str
    intermittent: bool
    order_packs: int
    days_until_order: float | None
    history_days: int
    history_total: float = Field(description="sales over the history read")
    forecast: list[ForecastDayOut]
    hourly_profile: list[float] | None = Field(
        description="fast movers: share of a day's sales in each local hour 0..23, from the last 28 days"
    )
    signals: list[SignalNoteOut]


class ItemOut(BaseModel):
    sku: str
    suppliers: list[ItemSupplierOut]
    locations: list[ItemPlanOut]
    open_suggestions: list[SuggestionOut]


class HistoryImportOut(BaseModel):
    id: int
    source: str
    rows: int
    series: int | None = Field(description="SKU-locations in the file (null on a replay)")
    first_day: str
    last_day: str
    sha256: str
    imported_at: str
    imported_by: str
    replayed: bool


# --- helpers ----------------------------------------------------------------------------------------------------


def planner_of(request: Request, deps: ApiDeps) -> Planner:
    """The box's planner (set on the app by edge/app.py), else one for this API alone (runs inline, in turn)."""
    planner = getattr(request.app.state, "planner", None)
    if planner is None:
        planner = Planner(
            PlannerSettings.from_settings(deps.settings),
            writer=deps.writer,
            open_reader=deps.open_reader,
            clock=deps.clock,
            business_date=deps.settings.business_date,
        )
        request.app.state.planner = planner
        request.app.state.planner_lock = asyncio.Lock()
    assert isinstance(planner, Planner)
    return planner


def _replayed(body: dict[str, Any], model: type[BaseModel]) -> JSONResponse:
    headers = {REPLAY_HEADER: "true"} if body.get("replayed") else None
    return JSONResponse(model.model_validate(body).model_dump(mode="json"), headers=headers)


# --- suggestions ------------------------------------------------------------------------------------------------


@router.get(
    "/replenishment/suggestions",
    response_model=SuggestionPageOut,
    dependencies=[require("replenishment:read")],
    responses=error_responses(422),
    summary="Reorder suggestions / 补货建议",
)
def list_suggestions(
    reader: Reader,
    state: Annotated[str | None, Query(pattern="^(open|approved|rejected|superseded|all)$")] = "open",
    supplier: Annotated[str | None, Query(max_length=64)] = None,
    sku: Annotated[str | None, Query(max_length=64)] = None,
    location: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> dict[str, Any]:
    """Open suggestions by default (`state=all` for every state), the earliest order-by date first."""
    return suggestions.list_suggestions(
        reader,
        state=None if state == "all" else state,
        supplier=supplier,
        sku=sku,
        location=location,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/replenishment/suggestions/{suggestion_id}",
    response_model=SuggestionOut,
    dependencies=[require("replenishment:read")],
    responses=error_responses(404, 422),
    summary="One reorder suggestion / 补货建议详情",
)
def get_suggestion(reader: Reader, suggestion_id: SuggestionId) -> dict[str, Any]:
    return suggestions.get_suggestion(reader, suggestion_id)


@router.post(
    "/replenishment/suggestions/{suggestion_id}/approve",
    response_model=DecidedOut,
    responses=WRITE_RESPONSES,
    openapi_extra={"parameters": [IDEMPOTENCY_KEY_PARAMETER]},
    summary="Approve a suggestion into a purchase order / 批准补货建议",
)
async def approve_suggestion(
    suggestion_id: SuggestionId,
    deps: Deps,
    user: Approver,
    key: IdempotencyKey,
    body: Annotated[ApproveIn | None, Body()] = None,
) -> JSONResponse:
    """Posts a purchase order to the suggestion's supplier for its quantity (or `qty`). The finance guards apply:
    a frozen supplier, or papers missing above the threshold, refuse it with the guard's code and message (409),
    and the suggestion stays open."""
    quantities = ((suggestion_id, body.qty),) if body is not None and body.qty is not None else ()
    request = suggestions.ApprovalRequest(
        key=API_KEY_PREFIX + key,
        ids=(suggestion_id,),
        actor=user.username,
        quantities=quantities,
        note=body.note if body is not None else None,
    )
    result = await deps.writer.execute_posting(suggestions.approve_one, request)
    return _replayed(result, DecidedOut)


@router.post(
    "/replenishment/suggestions/approve",
    response_model=ApprovedManyOut,
    responses=WRITE_RESPONSES,
    openapi_extra={"parameters": [IDEMPOTENCY_KEY_PARAMETER]},
    summary="Approve several suggestions, one PO per supplier / 批量批准",
)
async def approve_suggestions(body: ApproveManyIn, deps: Deps, user: Approver, key: IdempotencyKey) -> JSONResponse:
    """One purchase order per supplier. A supplier the finance guards refuse is listed in `refused` with the
    guard's message; its suggestions stay open and the others are approved."""
    ids = tuple(line.id for line in body.suggestions)
    request = suggestions.ApprovalRequest(
        key=API_KEY_PREFIX + key,
        ids=ids,
        actor=user.username,
        quantities=tuple((line.id, line.qty) for line in body.suggestions if line.qty is not None),
        note=body.note,
    )
    result = await deps.writer.execute_posting(suggestions.approve_suggestions, request)
    return _replayed(result, ApprovedManyOut)


@router.post(
    "/replenishment/suggestions/{suggestion_id}/reject",
    response_model=DecidedOut,
    responses=WRITE_RESPONSES,
    openapi_extra={"parameters": [IDEMPOTENCY_KEY_PARAMETER]},
    summary="Reject a suggestion with a reason / 驳回补货建议",
)
async def reject_suggestion(
    suggestion_id: SuggestionId, body: RejectIn, deps: Deps, user: Approver, key: IdempotencyKey
) -> JSONResponse:
    """The reason is required and kept with the suggestion."""
    request = suggestions.RejectionRequest(API_KEY_PREFIX + key, suggestion_id, body.reason, user.username)
    result = await deps.writer.execute(suggestions.reject_suggestion, request, deps.clock())
    return _replayed(result, DecidedOut)


# --- runs -------------------------------------------------------------------------------------------------------


@router.post(
    "/replenishment/run",
    response_model=RunOut,
    responses=error_responses(409, 422, 503),
    summary="Run the plan now / 立即运行补货计划",
)
async def run_replenishment_plan(
    request: Request, deps: Deps, user: Runner, body: Annotated[RunIn | None, Body()] = None
) -> dict[str, Any]:
    """All items, or only `skus`; waits for the run (behind one in progress) and answers what it did. Running the
    plan again only replaces open suggestions, so this needs no Idempotency-Key."""
    planner = planner_of(request, deps)
    skus = None if body is None or body.skus is None else sorted(set(body.skus))
    lock: asyncio.Lock | None = getattr(request.app.state, "planner_lock", None)
    if lock is None:
        run: PlanRun = await planner.run("api", skus)
    else:
        async with lock:
            run = await planner.run("api", skus)
    return run.to_json()


def _runs(conn: Any, limit: int, offset: int) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT * FROM plan_runs ORDER BY id DESC LIMIT ? OFFSET ?", (limit, offset)).fetchall()
    return [
        {
            **dict(r),
            "partial": bool(r["partial"]),
            "methods": json.loads(r["methods"]),
            "errors": json.loads(r["errors"]),
        }
        for r in rows
    ]


@router.get(
    "/replenishment/runs",
    response_model=list[RunRecordOut],
    dependencies=[require("replenishment:read")],
    responses=error_responses(422),
    summary="Plan runs / 补货计划运行记录",
)
def list_plan_runs(
    reader: Reader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> list[dict[str, Any]]:
    """Newest first: what started each run, how many SKU-locations, suggestions and how long."""
    return _runs(reader, limit, offset)


# --- items ------------------------------------------------------------------------------------------------------


FAST_MOVER_PER_DAY = 5.0  # mean daily sales from which an item gets an hourly profile
PROFILE_DAYS = 28


def _hourly_counts(conn: Any, sku: str, ctx: PlanContext, timezone: str) -> dict[str, list[float]]:
    """Units sold per local hour of the day over the last PROFILE_DAYS days, per plan location."""
    pool = dict(ctx.pool)
    since = int((ctx.now - timedelta(days=PROFILE_DAYS)).timestamp()) // 3600
    zone = ZoneInfo(timezone)
    counts: dict[str, list[float]] = {}
    for location, hour, qty in conn.execute(
        "SELECT ps.location, h.hour, h.qty FROM sales_hourly h JOIN plan_series ps ON ps.id = h.series"
        " WHERE ps.sku = ? AND h.hour >= ?",
        (sku, since),
    ):
        local = datetime.fromtimestamp(int(hour) * 3600, zone).hour
        row = counts.setdefault(pool.get(location, location), [0.0] * 24)
        row[local] += float(qty)
    return counts


def _item_plan(conn: Any, ctx: PlanContext, sku: str, timezone: str) -> list[dict[str, Any]]:
    prepared = prepare_plan(conn, ctx, [sku])
    hourly = _hourly_counts(conn, sku, ctx, timezone)
    u, inputs, out = prepared.universe, prepared.inputs, prepared.outputs
    from edge.forecast.forecaster import METHODS, hourly_shares

    plans = []
    for row in range(u.n):
        days = float(out.days_until_order[row])
        method = int(out.forecast.method[row])
        location = str(u.location[row])
        profile = None
        if float(out.demand[row].mean()) >= FAST_MOVER_PER_DAY:
            counts = np.array([hourly.get(location, [0.0] * 24)], dtype=np.float64)
            profile = [round(float(x), 4) for x in hourly_shares(counts)[0]]
        plans.append(
            {
                "location": location,
                "supplier": str(u.supplier[row]),
                "unit": str(u.unit[row]),
                "pack": int(u.pack[row]),
                "moq": int(u.moq[row]),
                "on_hand": float(inputs.on_hand[row]),
                "blocked": float(prepared.blocked[row]),
                "in_transit": float(inputs.in_transit[row]),
                "on_order": float(inputs.on_order[row]),
                "expiring": float(out.expiring[row]),
                "safety_stock": round(float(out.safety_stock[row]), 3),
                "reorder_point": round(float(out.reorder_point[row]), 3),
                "order_up_to": round(float(out.order_up_to[row]), 3),
                "position": float(out.position[row]),
                "demand_protection": round(float(out.demand_lead[row]), 3),
                "lead_time_days": float(out.lt_mean[row]),
                "lead_time_std": float(inputs.lt_std[row]),
                "review_days": float(inputs.review_days[row]),
                "service_level": float(inputs.service_level[row]),
                "method": METHODS[method] if 0 <= method < len(METHODS) else "none",
                "intermittent": bool(out.forecast.intermittent[row]),
                "order_packs": int(out.order_packs[row]),
                "days_until_order": round(days, 3) if math.isfinite(days) else None,
                "history_days": int(inputs.history.shape[1]),
                "history_total": float(inputs.history[row].sum()),
                "forecast": [
                    {"date": (ctx.today + timedelta(days=h)).isoformat(), "demand": round(float(v), 3)}
                    for h, v in enumerate(out.demand[row].tolist())
                ],
                "hourly_profile": profile,
                "signals": [
                    {"code": n.code, "message": n.message, "message_en": n.message_en, "effect": n.effect}
                    for n in prepared.effects.notes.get(row, [])
                ],
            }
        )
    return plans


@router.get(
    "/replenishment/items/{sku}",
    response_model=ItemOut,
    dependencies=[require("replenishment:read")],
    responses=error_responses(404, 422),
    summary="One item as the plan sees it / 商品补货视图",
)
async def get_replenishment_item(request: Request, deps: Deps, sku: Sku) -> dict[str, Any]:
    """Per location: on hand, blocked, in transit, on order, expiring, the policy numbers and the daily forecast;
    the item's suppliers and its open suggestions. Computed now (nothing is written)."""
    planner = planner_of(request, deps)
    ctx = planner.context("item")
    plans = await read(deps, _item_plan, ctx, sku, deps.settings.timezone)
    owned = await read(deps, suggestions.item_suppliers, sku)
    if not plans and not owned:
        raise ItemNotPlanned(
            f"商品 {sku} 没有供应商或没有库存和销量，不在补货计划中",
            f"item {sku} has no supplier, or no stock and no sales: the plan has no row for it",
            item=sku,
        )
    page = await read(deps, _open_of, sku)
    return {"sku": sku, "suppliers": owned, "locations": plans, "open_suggestions": page}


def _open_of(conn: Any, sku: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = suggestions.list_suggestions(conn, state="open", sku=sku, limit=100)["items"]
    return items


@router.get(
    "/replenishment/items/{sku}/supplier",
    response_model=ItemSuppliersOut,
    dependencies=[require("replenishment:read")],
    responses=error_responses(422),
    summary="An item's suppliers and order parameters / 商品供应商参数",
)
def get_item_suppliers(reader: Reader, sku: Sku) -> dict[str, Any]:
    return {"sku": sku, "suppliers": suggestions.item_suppliers(reader, sku)}


@router.put(
    "/replenishment/items/{sku}/supplier",
    response_model=ItemSuppliersOut,
    responses=error_responses(400, 422, 503),
    openapi_extra={"parameters": [IDEMPOTENCY_KEY_PARAMETER]},
    summary="Set an item's supplier and order parameters / 设置商品供应商参数",
)
async def put_item_supplier(
    sku: Sku, body: ItemSupplierIn, deps: Deps, user: Approver, key: IdempotencyKey
) -> dict[str, Any]:
    """Creates or replaces the parameters of this item and supplier (setting the same values again changes
    nothing but the time); a primary supplier makes the item's other suppliers secondary."""
    spec = suggestions.ItemSupplierIn(
        sku=sku,
        supplier=body.supplier,
        unit=body.unit,
        moq=body.moq,
        lead_time_days=body.lead_time_days,
        review_days=body.review_days,
        service_level=body.service_level,
        primary=body.primary,
        active=body.active,
    )
    result: dict[str, Any] = await deps.writer.execute(suggestions.set_item_supplier, spec, user.username, deps.clock())
    return result


# --- sales history ----------------------------------------------------------------------------------------------


@router.post(
    "/replenishment/history",
    status_code=201,
    response_model=HistoryImportOut,
    responses=error_responses(400, 413, 422, 503),
    openapi_extra={
        "parameters": [IDEMPOTENCY_KEY_PARAMETER],
        "requestBody": {
            "required": True,
            "content": {"text/csv": {"schema": {"type": "string"}, "example": "sku,location,date,qty\n"}},
        },
    },
    summary="Import sales history from a previous system / 导入历史销量",
)
async def import_sales_history(
    request: Request,
    deps: Deps,
    user: Runner,
    key: IdempotencyKey,
    source: Annotated[str, Query(min_length=1, max_length=200)] = "api",
) -> JSONResponse:
    """The body is the CSV itself (`sku,location,date,qty`, docs/replenishment.md), at most 1 MiB; larger files in
    parts or with `storebox replenish import-history`. The whole file or nothing; a day imported again replaces
    the figure. The same file under the same Idempotency-Key answers the first import (200, replayed)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("text/csv", "text/plain", "application/csv"):
        raise ApiError(
            415,
            "unsupported_media_type",
            "请以 text/csv 发送 CSV 文件",
            "send the CSV file as text/csv",
            content_type=content_type,
        )
    data = await request.body()
    result = await deps.writer.execute(
        history.import_history_file, data, source, user.username, deps.clock(), deps.today(), API_KEY_PREFIX + key
    )
    headers = {REPLAY_HEADER: "true"} if result["replayed"] else None
    body = HistoryImportOut.model_validate(result).model_dump(mode="json")
    return JSONResponse(body, status_code=200 if result["replayed"] else 201, headers=headers)
