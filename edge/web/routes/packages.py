"""HTTP API of HQ packages received through the aggregator (issue 6, docs/packages.md)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from edge.security.users import User
from edge.sync import packages
from edge.web.deps import Deps, Reader, require
from edge.web.errors import error_responses

router = APIRouter(prefix="/api/v1", tags=["packages"], responses=error_responses(401, 403, 500))
Kind = Annotated[
    str, Path(pattern=r"^(price_list|rule_pack|model|firmware_profile|module)$", description="package kind")
]
Name = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", description="package name")]


class CurrentOut(BaseModel):
    kind: str
    name: str
    version: int = Field(description="the version in force; 0 = none (rolled back past the first)")
    since: str
    previous: int | None = Field(description="what a rollback returns to")
    sha256: str | None
    remote_id: int | None = Field(description="the aggregator's package id; null when installed from a file")
    installed_by: str | None


class HistoryOut(BaseModel):
    id: int
    at: str
    kind: str
    name: str
    version: int
    action: str = Field(description="installed | failed | rolled_back")
    from_version: int | None
    to_version: int | None
    code: str | None
    reason: str | None
    actor: str
    source: str = Field(description="sync | file | cli | api")
    remote_id: int | None
    reported_at: str | None


class PackagesOut(BaseModel):
    current: list[CurrentOut]
    history: list[HistoryOut] = Field(description="newest first, at most 100")


class RollbackOut(BaseModel):
    kind: str
    name: str
    from_version: int
    to_version: int
    prices_restored: int = Field(description="retail prices set back to their value before the version rolled back")
    prices_kept: list[str] = Field(description="SKUs whose price was changed since: left as they are")


@router.get("/packages", response_model=PackagesOut, summary="Installed HQ packages / 已安装的下发包")
def list_packages(reader: Reader, user: Annotated[User, require("packages:read")]) -> Any:
    """The version in force of every package and the recent installs, failures and rollbacks."""
    return {"current": packages.list_current(reader), "history": packages.list_history(reader, 100)}


@router.post(
    "/packages/{kind}/{name}/rollback",
    response_model=RollbackOut,
    responses=error_responses(409, 422, 503),
    summary="Roll a package back / 回滚下发包",
)
async def rollback(kind: Kind, name: Name, deps: Deps, user: Annotated[User, require("packages:manage")]) -> Any:
    """Returns to the version in force before the current one (a price list's prices restored in the same
    transaction), then switches the files; recorded and reported to the aggregator at the next pull."""
    loop = asyncio.get_running_loop()
    return await run_in_threadpool(
        packages.rollback_package,
        deps.settings,
        packages.writer_transact(deps.writer, loop),
        kind,
        name,
        deps.clock,
        actor=user.username,
        source="api",
    )
