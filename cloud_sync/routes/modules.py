"""Aggregator HTTP API: scenario-module canary (docs/canary.md). Stores (signed) report their modules' KPIs; HQ
(bearer token) rolls a module version out to pilot stores, watches their KPIs, promotes it or rolls it back."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from cloud_sync.auth import StoreIdentity, record_rejection, signed_store
from cloud_sync.errors import CloudError
from cloud_sync.hq.auth import HqCaller, require_hq
from cloud_sync.modules import kpis as kpi_intake
from cloud_sync.modules import rollouts

router = APIRouter(prefix="/api/v1", tags=["modules"])
Store = Annotated[StoreIdentity, Depends(signed_store)]
Hq = Annotated[HqCaller, Depends(require_hq)]
RolloutId = Annotated[int, Path(ge=1, le=2**53 - 1)]
ModuleName = Annotated[str | None, Query(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", description="module name")]
StoreFilter = Annotated[str | None, Query(pattern=r"^[a-z0-9-]{1,64}$", description="store id")]
Limit = Annotated[int, Query(ge=1, le=10000, description="page size (1..10000)")]
Offset = Annotated[int, Query(ge=0, le=10**12, description="rows to skip")]


class ThresholdsIn(BaseModel):
    """KPI thresholds; each one left out comes from the module's manifest (`kpis`), else the default."""

    model_config = ConfigDict(extra="forbid")
    precision_min: float | None = Field(None, ge=0, le=1, description="lowest precision, e.g. 0.92")
    false_positive_max: float | None = Field(None, ge=0, le=1, description="highest false-positive rate, e.g. 0.05")
    window: int | None = Field(None, ge=1, le=rollouts.MAX_WINDOW, description="the last N judged decisions")
    min_decisions: int | None = Field(None, ge=1, le=rollouts.MAX_WINDOW, description="judged decisions needed")


class RolloutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", description="the module (its package name)")
    version: int = Field(ge=1, le=2**53 - 1, description="a published module package version")
    stores: list[str] | None = Field(
        None, description="pilot stores; default: the three stores heard from most recently", max_length=100
    )
    thresholds: ThresholdsIn | None = None


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(None, max_length=1000, description="why (kept in the rollout's events)")


@router.post("/sync/modules/kpis", summary="Report module KPIs / 上报模块 KPI")
async def report_kpis(request: Request, identity: Store) -> Any:
    """`{"reports": [{"module", "version", "judged", "right", "wrong", "precision", "false_positive_rate",
    "window", "at"}]}`: each the store's latest for that module version; a report that breaks a rollout's
    thresholds rolls it back. Answers `{"store", "recorded", "rolled_back": [rollout ids]}`."""
    state = request.app.state
    compressed = request.headers.get("content-encoding", "").lower() == "gzip"
    try:
        reports = kpi_intake.parse_reports(identity.body, compressed=compressed)
    except CloudError as error:  # counted and kept like every refused store request (docs/sync-protocol.md)
        state.metrics.rejections.labels(code=error.code).inc()
        await run_in_threadpool(record_rejection, state.engine, error, identity.store, identity.key_id, state.clock())
        raise
    answer = await run_in_threadpool(kpi_intake.record_reports, state.engine, identity.store, reports, state.clock())
    reported, rolled_back = _counters(request)
    reported.inc(len(reports))
    rolled_back.labels(by="kpis").inc(len(answer["rolled_back"]))
    return answer


def _counters(request: Request) -> tuple[Counter, Counter]:
    """This app's canary counters, registered on its own registry the first time they are needed."""
    state = request.app.state
    found: tuple[Counter, Counter] | None = getattr(state, "module_counters", None)
    if found is None:
        found = (
            Counter(
                "storebox_cloud_module_kpi_reports_total",
                "Module KPI reports received from the stores",
                registry=state.metrics.registry,
            ),
            Counter(
                "storebox_cloud_module_rollbacks_total",
                "Module rollouts rolled back, by whom: kpis (a report broke a threshold) or hq",
                ["by"],
                registry=state.metrics.registry,
            ),
        )
        state.module_counters = found
    return found


def _read(request: Request, fn: Any, *args: Any, **kwargs: Any) -> Any:
    with request.app.state.engine.connect() as conn:
        return fn(conn, *args, **kwargs)


@router.post("/hq/modules/rollouts", status_code=201, summary="Roll a module out to pilot stores / 灰度发布模块")
async def create(request: Request, hq: Hq, body: RolloutIn) -> Any:
    state = request.app.state
    thresholds = body.thresholds.model_dump(exclude_none=True) if body.thresholds else None
    return await run_in_threadpool(
        lambda: rollouts.create_rollout(
            state.engine,
            body.name,
            body.version,
            pilot_stores=body.stores,
            thresholds=thresholds,
            now=state.clock(),
            by=f"hq:{hq.name}",
        )
    )


@router.get("/hq/modules/rollouts", summary="Rollouts / 灰度发布列表")
async def list_(
    request: Request,
    hq: Hq,
    name: ModuleName = None,
    state: Annotated[Literal["piloting", "promoted", "rolled_back"] | None, Query()] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Any:
    """Newest first, paged like the other HQ lists."""
    return await run_in_threadpool(
        _read, request, rollouts.list_rollouts, name=name, state=state, limit=limit, offset=offset
    )


@router.get("/hq/modules/rollouts/{rollout_id}", summary="A rollout with its pilots' KPIs / 灰度发布详情")
async def show(request: Request, hq: Hq, rollout_id: RolloutId) -> Any:
    return await run_in_threadpool(_read, request, rollouts.get_rollout, rollout_id)


@router.post("/hq/modules/rollouts/{rollout_id}/promote", summary="Promote to every store / 推广到全部门店")
async def promote(request: Request, hq: Hq, rollout_id: RolloutId) -> Any:
    """409 `rollout_kpis_not_met` with each pilot store's reasons unless every pilot's KPIs hold."""
    state = request.app.state
    return await run_in_threadpool(
        lambda: rollouts.promote(state.engine, rollout_id, now=state.clock(), by=f"hq:{hq.name}")
    )


@router.post("/hq/modules/rollouts/{rollout_id}/rollback", summary="Roll a rollout back / 回滚灰度发布")
async def rollback(request: Request, hq: Hq, rollout_id: RolloutId, body: RollbackIn | None = None) -> Any:
    state = request.app.state
    reason = body.reason if body else None
    answer = await run_in_threadpool(
        lambda: rollouts.rollback(state.engine, rollout_id, now=state.clock(), by=f"hq:{hq.name}", reason=reason)
    )
    _counters(request)[1].labels(by="hq").inc()
    return answer


@router.get("/hq/modules/kpis", summary="The stores' latest module KPIs / 各门店模块 KPI")
async def kpis(
    request: Request, hq: Hq, name: ModuleName = None, store: StoreFilter = None, limit: Limit = 100, offset: Offset = 0
) -> Any:
    """Each store's latest report per module version, ordered by module, version and store."""
    return await run_in_threadpool(
        _read, request, rollouts.list_kpis, name=name, store=store, limit=limit, offset=offset
    )
