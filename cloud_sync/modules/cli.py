"""`storebox-cloud modules ...`: roll a module version out to pilot stores, watch its KPIs, promote it or roll it
back, on the aggregator's own machine (the database credentials are the access; docs/canary.md). Answers are JSON;
a refusal prints its error body on stderr and exits 1."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from cloud_sync.errors import CloudError

modules_app = typer.Typer(
    help="模块灰度发布 / scenario-module rollouts: pilot, KPIs, promote, roll back.", no_args_is_help=True
)
ACTOR = "cli"


def _now() -> datetime:
    return datetime.now(UTC)


def _run(fn: Any) -> None:
    try:
        answer = fn()
    except CloudError as err:
        typer.echo(json.dumps(err.to_dict(), ensure_ascii=False), err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(answer, ensure_ascii=False))


@modules_app.command()
def rollout(
    name: Annotated[str, typer.Argument(help="the module (its package name)")],
    version: Annotated[int, typer.Argument(help="a published module package version")],
    stores: Annotated[
        str | None, typer.Option("--stores", help="pilot store ids, comma separated (default: the 3 heard from last)")
    ] = None,
    precision_min: Annotated[float | None, typer.Option(help="lowest precision, e.g. 0.92")] = None,
    false_positive_max: Annotated[float | None, typer.Option(help="highest false-positive rate, e.g. 0.05")] = None,
    window: Annotated[int | None, typer.Option(help="over the last N judged decisions")] = None,
    min_decisions: Annotated[int | None, typer.Option(help="judged decisions needed before the gate decides")] = None,
) -> None:
    """Mark a module version for pilot stores (thresholds left out come from its manifest, else the defaults)."""
    from cloud_sync.cli import engine
    from cloud_sync.modules.rollouts import create_rollout

    thresholds = {
        k: v
        for k, v in {
            "precision_min": precision_min,
            "false_positive_max": false_positive_max,
            "window": window,
            "min_decisions": min_decisions,
        }.items()
        if v is not None
    }
    pilots = [s.strip() for s in stores.split(",") if s.strip()] if stores is not None else None
    eng = engine()
    _run(
        lambda: create_rollout(
            eng, name, version, pilot_stores=pilots, thresholds=thresholds or None, now=_now(), by=ACTOR
        )
    )


@modules_app.command("list")
def list_(
    name: Annotated[str | None, typer.Option(help="only this module")] = None,
    state: Annotated[str | None, typer.Option(help="piloting | promoted | rolled_back")] = None,
) -> None:
    """Rollouts, newest first (JSON lines)."""
    from cloud_sync.cli import engine
    from cloud_sync.modules.rollouts import STATES, list_rollouts

    if state is not None and state not in STATES:
        typer.echo(f"状态应为 / state must be one of: {', '.join(STATES)}", err=True)
        raise typer.Exit(2)
    with engine().connect() as conn:
        offset: int | None = 0
        while offset is not None:
            page = list_rollouts(conn, name=name, state=state, limit=1000, offset=offset)
            for item in page["items"]:
                typer.echo(json.dumps(item, ensure_ascii=False))
            offset = page["next_offset"]


@modules_app.command()
def show(rollout_id: Annotated[int, typer.Argument(help="the rollout's id")]) -> None:
    """A rollout with each pilot store's KPIs, whether it may be promoted, and its events."""
    from cloud_sync.cli import engine
    from cloud_sync.modules.rollouts import get_rollout

    eng = engine()

    def read() -> Any:
        with eng.connect() as conn:
            return get_rollout(conn, rollout_id)

    _run(read)


@modules_app.command()
def promote(rollout_id: Annotated[int, typer.Argument(help="the rollout's id")]) -> None:
    """Offer the version to every store, if every pilot store's KPIs hold (else exit 1 with each store's reasons)."""
    from cloud_sync.cli import engine
    from cloud_sync.modules.rollouts import promote as promote_rollout

    eng = engine()
    _run(lambda: promote_rollout(eng, rollout_id, now=_now(), by=ACTOR))


@modules_app.command()
def rollback(
    rollout_id: Annotated[int, typer.Argument(help="the rollout's id")],
    reason: Annotated[str | None, typer.Option(help="why (kept in the rollout's events)")] = None,
) -> None:
    """Stop serving the version; the stores that have it roll back at their next pull."""
    from cloud_sync.cli import engine
    from cloud_sync.modules.rollouts import rollback as rollback_rollout

    eng = engine()
    _run(lambda: rollback_rollout(eng, rollout_id, now=_now(), by=ACTOR, reason=reason))


@modules_app.command()
def kpis(
    name: Annotated[str | None, typer.Option(help="only this module")] = None,
    store: Annotated[str | None, typer.Option(help="only this store")] = None,
) -> None:
    """Each store's latest KPI report per module version (JSON lines)."""
    from cloud_sync.cli import engine
    from cloud_sync.modules.rollouts import list_kpis

    with engine().connect() as conn:
        offset: int | None = 0
        while offset is not None:
            page = list_kpis(conn, name=name, store=store, limit=1000, offset=offset)
            for item in page["items"]:
                typer.echo(json.dumps(item, ensure_ascii=False))
            offset = page["next_offset"]
