"""Commands of `storebox replenish`: the plan, its suggestions, approving and rejecting them, history import.

Safe while the box runs: each command is one SQLite transaction that takes its turn after the box's writer.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from edge.replenish_cli import replenish_app

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
ActorOption = Annotated[str, typer.Option("--actor", help="who decides (audit trail)")]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config file (also STOREBOX_CONFIG).", dir_okay=False)
]
DataDirOption = Annotated[Path | None, typer.Option("--data-dir", help="Overrides STOREBOX_DATA_DIR.")]
KeyOption = Annotated[
    str | None, typer.Option("--key", help="idempotency key: the same key again answers the first result")
]


def _posting_context(settings: Any) -> Any:
    """Like the box's: the rules and the purchase-order guard, so approvals are checked as in the box."""
    from datetime import UTC, datetime

    from edge.finance.compliance import make_purchase_order_guard
    from edge.finance.rulebook import rule_book
    from edge.ledger.posting import PostingContext

    now = datetime.now(UTC)
    return PostingContext(
        now=now,
        business_date=settings.business_date(now),
        rules=rule_book(),
        default_location="floor",
        allow_negative=settings.allow_negative_stock,
        guards=(make_purchase_order_guard(settings.po_papers_required_above_yuan * 100),),
    )


def _suggestion_line(s: dict[str, Any]) -> str:
    return (
        f"#{s['id']:<6} {s['state']:<10} {s['order_by']} {s['sku']:<12} {s['location']:<10} {s['supplier']:<12}"
        f" {s['qty']:>5} {s['unit']}\n        {s['explanation']}\n        {s['explanation_en']}"
    )


@replenish_app.command("plan")
def plan_command(
    sku: Annotated[list[str] | None, typer.Option("--sku", help="only this item (repeat for more)")] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Run the replenishment plan now (all items, or --sku) and print what it wrote."""
    from datetime import UTC, datetime

    from prometheus_client import CollectorRegistry

    from edge.cli import _open_db, _settings
    from edge.forecast.runtime import ForecastMetrics, load_demand_model, shipped_models_dir
    from edge.replenishment.leadtime import LeadTimePolicy
    from edge.replenishment.planner import PlanContext, run_plan
    from edge.replenishment.signals import SignalPolicy
    from edge.replenishment.suggestions import list_suggestions
    from edge.replenishment.triggers import PlannerSettings

    settings = _settings(config, data_dir=data_dir)
    planner = PlannerSettings.from_settings(settings)
    model = load_demand_model(
        settings.models_dir or shipped_models_dir(),
        settings.forecast_model,
        metrics=ForecastMetrics(CollectorRegistry()),
    )
    now = datetime.now(UTC)
    ctx = PlanContext(
        now=now,
        today=settings.business_date(now),
        trigger="cli",
        horizon=planner.horizon_days,
        history_days=planner.history_days,
        notice_days=planner.notice_days,
        open_po_days=planner.open_po_days,
        pool=planner.pool,
        model=model,
        use_signals=planner.use_signals,
        signal_policy=SignalPolicy.from_settings(settings),
        lead_time_policy=LeadTimePolicy.from_settings(settings),
        clock=lambda: datetime.now(UTC),
    )
    conn = _open_db(settings, readonly=False)
    try:
        run = run_plan(conn, ctx, sorted(set(sku)) if sku else None)
        page = list_suggestions(conn, state="open", limit=1000)
    finally:
        conn.close()
    written = [s for s in page["items"] if s["run_id"] == run.id]
    if as_json:
        typer.echo(json.dumps({"run": run.to_json(), "suggestions": written}, ensure_ascii=False, indent=2))
        return
    typer.echo(
        f"补货计划 #{run.id}: {run.series} 个商品库位, {run.rows} 条建议, {run.duration_ms} ms"
        f" / plan run #{run.id}: {run.series} SKU-locations, {run.rows} suggestions"
    )
    for error in run.errors:
        typer.echo(f"注意 / note: {error['message']} / {error['message_en']}")
    for s in written:
        typer.echo(_suggestion_line(s))


@replenish_app.command("suggestions")
def suggestions_command(
    state: Annotated[str, typer.Option("--state", help="open, approved, rejected, superseded or all")] = "open",
    sku: Annotated[str | None, typer.Option("--sku")] = None,
    supplier: Annotated[str | None, typer.Option("--supplier")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000)] = 200,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Reorder suggestions with their explanations, the earliest order-by date first."""
    from edge.cli import _reading, _settings
    from edge.replenishment.suggestions import STATES, list_suggestions

    if state != "all" and state not in STATES:
        typer.echo(f"storebox: --state 须为 {', '.join(STATES)} 或 all / must be one of them or all", err=True)
        raise typer.Exit(2)
    with _reading(_settings(config, data_dir=data_dir)) as conn:
        page = list_suggestions(conn, state=None if state == "all" else state, sku=sku, supplier=supplier, limit=limit)
    if as_json:
        typer.echo(json.dumps(page, ensure_ascii=False, indent=2))
        return
    typer.echo(f"{page['total']} 条建议 / suggestions")
    for s in page["items"]:
        typer.echo(_suggestion_line(s))


@replenish_app.command("approve")
def approve_command(
    suggestion_id: Annotated[list[int], typer.Argument(help="suggestion id(s): one PO per supplier")],
    qty: Annotated[int | None, typer.Option("--qty", min=1, help="order this many purchase units (one id)")] = None,
    actor: ActorOption = "cli",
    key: KeyOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Approve suggestions into purchase orders (the finance checks apply; exit 2 when one is refused)."""
    from edge.cli import _settings, _write
    from edge.replenishment.suggestions import ApprovalRequest, approve_suggestions

    settings = _settings(config, data_dir=data_dir)
    if qty is not None and len(suggestion_id) != 1:
        typer.echo("storebox: --qty 只能用于一条建议 / --qty needs exactly one suggestion", err=True)
        raise typer.Exit(2)
    request = ApprovalRequest(
        key=f"cli:{key or uuid.uuid4().hex}",
        ids=tuple(suggestion_id),
        actor=actor,
        quantities=((suggestion_id[0], qty),) if qty is not None else (),
    )
    result = _write(settings, lambda conn, now: approve_suggestions(conn, _posting_context(settings), request))
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        for po in result["approved"]:
            typer.echo(f"已下采购订单 {po['po_doc_no']} ({po['supplier']}) / purchase order {po['po_doc_no']}")
        for refusal in result["refused"]:
            typer.echo(f"storebox: {refusal['supplier']}: {refusal['message']} / {refusal['message_en']}", err=True)
    if result["refused"]:
        raise typer.Exit(2)


@replenish_app.command("reject")
def reject_command(
    suggestion_id: Annotated[int, typer.Argument(help="the suggestion's id")],
    reason: Annotated[str, typer.Option("--reason", help="why (kept with the suggestion)")],
    actor: ActorOption = "cli",
    key: KeyOption = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Reject a suggestion with a reason."""
    from edge.cli import _settings, _write
    from edge.replenishment.suggestions import RejectionRequest, reject_suggestion

    request = RejectionRequest(f"cli:{key or uuid.uuid4().hex}", suggestion_id, reason, actor)
    result = _write(_settings(config, data_dir=data_dir), lambda conn, now: reject_suggestion(conn, request, now))
    typer.echo(f"已驳回 #{result['id']}: {result['reject_reason']} / rejected")


@replenish_app.command("import-history")
def import_history_command(
    file: Annotated[Path, typer.Argument(help="CSV: sku,location,date,qty (docs/replenishment.md)", dir_okay=False)],
    actor: ActorOption = "cli",
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Import daily sales from a previous system; the whole file or nothing (exit 2 naming the bad lines)."""
    from edge.cli import _settings, _write
    from edge.replenishment.history import import_history_file

    settings = _settings(config, data_dir=data_dir)
    try:
        data = file.read_bytes()
    except OSError as exc:
        typer.echo(f"storebox: 文件无法读取 / cannot read {file}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None
    result = _write(
        settings,
        lambda conn, now: import_history_file(conn, data, file.name, actor, now, settings.business_date(now)),
    )
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False, indent=2))
        return
    typer.echo(
        f"已导入 {result['rows']} 行 ({result['series']} 个商品库位, {result['first_day']}..{result['last_day']})"
        f" / imported {result['rows']} rows"
    )
