"""Scenario modules over HTTP (场景模块, docs/modules.md): installed modules, their state and KPIs; install, enable,
disable, remove, roll back."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field

from edge.modules import kpis as module_kpis
from edge.modules import store
from edge.modules.errors import ModuleStateConflict
from edge.modules.manifest import parse_manifest
from edge.security.users import User
from edge.web.deps import Deps, Reader, require
from edge.web.errors import error_responses

router = APIRouter(prefix="/api/v1", tags=["modules"], responses=error_responses(401, 403, 500))
Name = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$", description="the module's name")]


class KpisOut(BaseModel):
    judged: int = Field(description="decisions judged in the window (at most `window`)")
    right: int
    wrong: int
    precision: float | None = Field(description="right / judged; null while nothing was judged")
    false_positive_rate: float | None = Field(description="wrong / judged; null while nothing was judged")
    window: int


class ThresholdsOut(BaseModel):
    window: int
    precision_min: float
    false_positive_max: float
    min_decisions: int


class RuntimeOut(BaseModel):
    running: bool = Field(description="its worker process runs (false: disabled, failed, or the host is off)")
    pid: int | None
    queued: int = Field(description="events waiting in its queue")
    handled: int = Field(description="events handled since the box started")
    dropped: int = Field(description="events dropped on a full queue since the box started")


class ModuleOut(BaseModel):
    name: str
    title: dict[str, str] | None
    version: int = Field(description="the version in force; 0 after removal")
    state: str = Field(description="enabled | disabled | failed | removed")
    reason: str | None = Field(description="why it is failed or disabled (a crash, a timeout, broken KPIs)")
    since: str
    source: str | None = Field(description="package (signed, from HQ) | local | shipped")
    previous: int | None = Field(description="what a rollback returns to (0: nothing)")
    kpis: KpisOut | None
    thresholds: ThresholdsOut | None
    runtime: RuntimeOut


class ModuleDetailOut(ModuleOut):
    manifest: dict[str, Any] | None
    versions: list[dict[str, Any]]
    decisions: list[dict[str, Any]] = Field(description="the newest 50 decisions, with their outcome once judged")
    failures: list[dict[str, Any]] = Field(description="the newest 20 failed calls and refused proposals")
    history: list[dict[str, Any]] = Field(description="installs, switches, failures, rollbacks, newest first")


class ChangeOut(BaseModel):
    name: str
    state: str | None = None
    version: int | None = None
    from_version: int | None = None
    to_version: int | None = None


def _host(request: Request) -> Any:
    return getattr(request.app.state, "modules", None)


def _summary(reader: Any, row: dict[str, Any], host: Any) -> dict[str, Any]:
    manifest = row.get("manifest")
    kpis = thresholds = None
    if manifest and row["version"]:
        checked = parse_manifest(manifest)
        kpis = module_kpis.module_kpis(reader, row["name"], int(row["version"]), checked.kpis.window).to_dict()
        thresholds = checked.kpis.model_dump()
    runtime = (
        host.runtime_of(row["name"])
        if host is not None
        else {"running": False, "pid": None, "queued": 0, "handled": 0, "dropped": 0}
    )
    return {
        "name": row["name"],
        "title": manifest.get("title") if manifest else None,
        "version": row["version"],
        "state": row["state"],
        "reason": row["reason"],
        "since": row["since"],
        "source": row["source"],
        "previous": row["previous"],
        "kpis": kpis,
        "thresholds": thresholds,
        "runtime": runtime,
    }


@router.get("/modules", response_model=list[ModuleOut], summary="Scenario modules / 场景模块")
def list_modules(request: Request, reader: Reader, user: Annotated[User, require("modules:read")]) -> Any:
    """Every module with its version in force, state, KPIs against its thresholds and its worker."""
    host = _host(request)
    return [_summary(reader, row, host) for row in store.list_modules(reader)]


@router.get(
    "/modules/{name}",
    response_model=ModuleDetailOut,
    responses=error_responses(404),
    summary="One scenario module / 场景模块详情",
)
def get_module(name: Name, request: Request, reader: Reader, user: Annotated[User, require("modules:read")]) -> Any:
    """State, versions, KPIs, the newest decisions and failures, and what happened to it."""
    row = store.module_row(reader, name)
    return {
        **_summary(reader, row, _host(request)),
        "manifest": row["manifest"],
        "versions": row["versions"],
        "decisions": store.recent_decisions(reader, name, 50),
        "failures": store.recent_failures(reader, name, 20),
        "history": store.history(reader, name, 50),
    }


async def _change(request: Request, deps: Any, fn: Any, *args: Any) -> Any:
    result = await deps.writer.execute(fn, *args)
    host = _host(request)
    if host is not None:
        await host.refresh()  # the worker starts, stops or switches before the answer
    return result


@router.post(
    "/modules/{name}/enable",
    response_model=ChangeOut,
    responses=error_responses(404, 409),
    summary="Enable a module / 启用场景模块",
)
async def enable_module(
    name: Name, request: Request, deps: Deps, user: Annotated[User, require("modules:manage")]
) -> Any:
    """Its worker starts (a failed module too, once its cause is fixed); audited."""
    return await _change(request, deps, store.set_state, name, "enabled", user.username, deps.clock().isoformat())


@router.post(
    "/modules/{name}/disable",
    response_model=ChangeOut,
    responses=error_responses(404, 409),
    summary="Disable a module / 停用场景模块",
)
async def disable_module(
    name: Name, request: Request, deps: Deps, user: Annotated[User, require("modules:manage")]
) -> Any:
    """Its worker stops; its versions, decisions and KPIs stay; audited."""
    return await _change(request, deps, store.set_state, name, "disabled", user.username, deps.clock().isoformat())


@router.post(
    "/modules/{name}/rollback",
    response_model=ChangeOut,
    responses=error_responses(404, 409),
    summary="Roll a module back / 回滚场景模块",
)
async def rollback_module(
    name: Name, request: Request, deps: Deps, user: Annotated[User, require("modules:manage")]
) -> Any:
    """Back to the version in force before the current one: its files, its params and the state it had then. A
    version from a signed package is rolled back as a package too (reported to HQ). 409 when there is none."""
    return await _change(request, deps, store.rollback_module, name, user.username, deps.clock().isoformat(), None)


@router.delete(
    "/modules/{name}",
    response_model=ChangeOut,
    responses=error_responses(404),
    summary="Remove a module / 移除场景模块",
)
async def remove_module(
    name: Name, request: Request, deps: Deps, user: Annotated[User, require("modules:manage")]
) -> Any:
    """Takes it out of force (its worker stops); its versions, decisions and history stay on record."""
    return await _change(request, deps, store.remove_by_user, name, user.username, deps.clock().isoformat())


@router.post(
    "/modules/{name}/judge",
    responses=error_responses(404, 409),
    summary="Judge a module's due decisions now / 立即评判",
)
async def judge_module(
    name: Name, request: Request, deps: Deps, user: Annotated[User, require("modules:manage")]
) -> Any:
    """Asks the running module about its decisions due today, records the outcomes and KPIs, and acts on broken
    thresholds (rollback or disable, with an alert) as the hourly pass does."""
    host = _host(request)
    runner = host.runners.get(name) if host is not None else None
    if runner is None:
        raise ModuleStateConflict(f"场景模块 {name} 没有在运行", f"scenario module {name} is not running", module=name)
    from edge.modules.host import ModuleCallFailed

    try:
        return await host.judge(runner)
    except ModuleCallFailed as failed:
        await host.failed_call(runner, failed)
        raise ModuleStateConflict(
            f"场景模块 {name} 评判失败并已停用: {failed.message}",
            f"scenario module {name} failed while judging and was disabled: {failed.message}",
            module=name,
            kind=failed.kind,
        ) from None
