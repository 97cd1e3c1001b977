"""Outside signals (外部信号, docs/signals.md): push and read weather, promotions, online channel orders, supplier
delays and lead indicators; learned lead times; customer-return spikes and the supplier quality score.

A push is a JSON list of records of one kind, kept once per `Idempotency-Key` (a retry answers the first result
with `Idempotent-Replayed: true`); a bad record refuses the whole push, naming its index and field.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from edge.replenishment import leadtime, returns, signals
from edge.replenishment.signal_formats import FORMATS, KINDS, MAX_RECORDS, SignalRecord, kind_of
from edge.security.users import User
from edge.web.deps import IDEMPOTENCY_KEY_PARAMETER, Deps, Reader, idempotency_key, require
from edge.web.errors import error_responses

API_KEY_PREFIX = "api:"
REPLAY_HEADER = "Idempotent-Replayed"

router = APIRouter(prefix="/api/v1", tags=["signals"], responses=error_responses(401, 403, 500))

IdempotencyKey = Annotated[str, Depends(idempotency_key)]
Writer = Annotated[User, require("signals:write")]
SupplierId = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$", description="the supplier's id")]
KindPath = Annotated[str, Path(pattern=r"^[a-z_-]{1,40}$", description=f"one of {', '.join(KINDS)}")]


class BatchOut(BaseModel):
    """What a push stored: one batch of `records`, of which `accepted` are new (online orders already stored
    under the same channel and order id are `duplicates`)."""

    batch: int
    kind: str
    records: int
    accepted: int
    duplicates: int
    source: str
    received_at: str
    actor: str
    replayed: bool


class LeadTimeOut(BaseModel):
    supplier: str
    mean_days: float = Field(description="after shrinkage towards the supplier default")
    std_days: float
    observations: int = Field(description="purchase orders (ledger and imported history) in the window")
    delay_days: int = Field(description="supplier delay notices in force today (added by the plan)")


class ReturnSpikeOut(BaseModel):
    id: int
    scope: str = Field(description="item or supplier")
    subject: str = Field(description="the SKU or the supplier id")
    reason: str
    reason_name: str
    detected_on: str
    recent_qty: int
    recent_count: int
    baseline_qty: int
    ratio: float
    sold_qty: int
    skus: list[str]
    ended_on: str | None
    published_at: str | None
    message: str
    message_en: str


class ReasonRateOut(BaseModel):
    reason: str
    reason_name: str
    returned_qty: int
    rate: float = Field(description="returned / sold units of the supplier's items in the window")
    weight: float


class QualityOut(BaseModel):
    supplier: str
    score: float = Field(description="0..100, docs/signals.md")
    window_days: int
    sold_qty: int
    returned_qty: int
    by_reason: list[ReasonRateOut]
    spikes: list[int]


def _post_route(kind: str, model: type[SignalRecord]) -> None:
    """POST /signals/<kind> with a body typed by the kind's model (so the OpenAPI names every field)."""
    body_type = Annotated[list[model], Body(min_length=1, max_length=MAX_RECORDS)]  # type: ignore[valid-type]

    async def push(body: body_type, deps: Deps, user: Writer, key: IdempotencyKey) -> JSONResponse:
        records = signals.to_domain(kind, body)
        result = await deps.writer.execute(
            signals.record_signals,
            kind,
            records,
            API_KEY_PREFIX + key,
            user.username,
            deps.clock(),
            deps.today(),
            "api",
            None,
            deps.settings.timezone,
        )
        headers = {REPLAY_HEADER: "true"} if result["replayed"] else None
        return JSONResponse(BatchOut.model_validate(result).model_dump(mode="json"), status_code=201, headers=headers)

    push.__name__ = f"push_{kind}"
    router.post(
        f"/signals/{kind.replace('_', '-')}",
        status_code=201,
        response_model=BatchOut,
        responses=error_responses(400, 404, 409, 422, 503),
        openapi_extra={"parameters": [IDEMPOTENCY_KEY_PARAMETER]},
        summary=f"Push {kind} signals / 推送{_ZH[kind]}信号",
        description=(model.__doc__ or "") + "\n\nA JSON list of records; docs/signals.md has the format.",
    )(push)
    if "_" in kind:  # also under the kind's own name (online_sales), as the CLI and the docs write it
        router.post(
            f"/signals/{kind}",
            status_code=201,
            response_model=BatchOut,
            responses=error_responses(400, 404, 409, 422, 503),
            openapi_extra={"parameters": [IDEMPOTENCY_KEY_PARAMETER]},
            include_in_schema=False,
        )(push)


_ZH = {
    "weather": "天气",
    "promotion": "促销",
    "online_sales": "线上订单",
    "supplier_delay": "供应商延误",
    "trend": "热搜",
    "search_bounce": "搜索未找到",
    "cart_abandonment": "购物车放弃",
}


@router.get(
    "/signals/return-spikes",
    response_model=list[ReturnSpikeOut],
    dependencies=[require("signals:read")],
    summary="Customer-return spikes / 退货激增",
)
def list_return_spikes(
    reader: Reader,
    open_only: Annotated[bool, Query(alias="open", description="only spikes still going on")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> list[dict[str, Any]]:
    """Newest first. A spike is raised once while it lasts and published on MQTT alert/returns."""
    return [s.to_dict() for s in returns.list_spikes(reader, open_only=open_only, limit=limit, offset=offset)]


@router.post(
    "/signals/return-spikes/check",
    response_model=list[ReturnSpikeOut],
    responses=error_responses(503),
    summary="Check for return spikes now / 立即检查退货激增",
)
async def check_return_spikes(deps: Deps, user: Writer) -> list[dict[str, Any]]:
    """Records the spikes found as of today (each once) and ends the ones that are over; answers the new ones.
    The box runs the same check on its own schedule."""
    del user
    policy = returns.ReturnSpikePolicy.from_settings(deps.settings)
    found: list[returns.ReturnSpike] = await deps.writer.execute(returns.detect_return_spikes, deps.today(), policy)
    return [s.to_dict() for s in found]


@router.get(
    "/signals/lead-times",
    response_model=list[LeadTimeOut],
    dependencies=[require("signals:read")],
    summary="Learned supplier lead times / 供应商到货周期",
)
def lead_times(deps: Deps, reader: Reader) -> list[dict[str, Any]]:
    """Per supplier, from PO to receipt dates (and imported history), shrunk towards the supplier default."""
    today = deps.today()
    learned = leadtime.supplier_lead_times(reader, today, leadtime.LeadTimePolicy.from_settings(deps.settings))
    delays = signals.active_delays(reader, today.isoformat(), today.isoformat())
    return [
        {
            "supplier": supplier,
            "mean_days": lt.mean,
            "std_days": lt.std,
            "observations": lt.n,
            "delay_days": delays.get(supplier, (0, None))[0],
        }
        for supplier, lt in learned.items()
    ]


@router.get(
    "/suppliers/{supplier_id}/quality",
    response_model=QualityOut,
    dependencies=[require("signals:read")],
    responses=error_responses(404, 422),
    summary="A supplier's quality score / 供应商质量分",
)
def supplier_quality(deps: Deps, reader: Reader, supplier_id: SupplierId) -> dict[str, Any]:
    """Score 0..100 from the return rates of the supplier's items by reason and its return spikes."""
    policy = returns.ReturnSpikePolicy.from_settings(deps.settings)
    return returns.supplier_quality(reader, supplier_id, deps.today(), policy)


for _kind, _model in FORMATS.items():
    _post_route(_kind, _model)


@router.get(
    "/signals/{kind}",
    response_model=list[dict[str, Any]],
    dependencies=[require("signals:read")],
    responses=error_responses(404, 422),
    summary="Stored signals of a kind / 信号记录",
)
def list_signals(
    reader: Reader,
    kind: KindPath,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> list[dict[str, Any]]:
    """Newest first, with the batch each came in; weather and supplier delays say which record is current
    (the newest push per day, or per supplier and start)."""
    return signals.list_signals(reader, kind_of(kind), limit=limit, offset=offset)
