"""`storebox replenish emergency "TEXT" [--create]`: parse an emergency request (紧急要货) and, when asked, create
the draft transfer request or the urgent purchase order (docs/emergency-requests.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from edge.replenish_cli import replenish_app


def _policy(settings: Any) -> Any:
    from edge.replenishment.emergency_orders import EmergencyPolicy

    return EmergencyPolicy(
        local_store=settings.store_id,
        min_shelf_life_days=settings.emergency_min_shelf_life_days,
        min_shelf_life_share=settings.emergency_min_shelf_life_share,
        peer_stock_max_age_hours=settings.emergency_peer_stock_max_age_hours,
    )


def _print_parse(parse: Any) -> None:
    from edge.replenishment.emergency import describe

    zh, en = describe(parse)
    typer.echo(f"理解为 / understood: {zh}")
    typer.echo(f"                     {en}")
    for c in parse.candidates[:5]:
        mark = "*" if c.sku == parse.sku else " "
        typer.echo(f"  {mark} {c.sku:10s} {c.score:5.1f}  {c.name} / {c.name_en or ''} ({c.matched_by})")
    for note in parse.notes:
        typer.echo(f"  [{note.level}] {note.message} / {note.message_en}")


@replenish_app.command("emergency")
def emergency_command(
    text: Annotated[
        str, typer.Argument(help='the request as said, e.g. "急需 -20℃ 冷冻水饺 50 袋，明早前到，车载调拨"')
    ],
    create: Annotated[bool, typer.Option("--create", help="create the transfer request or urgent PO")] = False,
    sku: Annotated[str | None, typer.Option("--sku", help="choose the item when the text is ambiguous")] = None,
    key: Annotated[str | None, typer.Option("--key", help="idempotency key (default: from the text)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the parse and proposal as JSON")] = False,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML config file (also STOREBOX_CONFIG).", dir_okay=False)
    ] = None,
) -> None:
    """Parse an emergency request and show what the box would do; `--create` does it (once per key)."""
    import hashlib
    from datetime import UTC, datetime

    from edge.cli import _open_db, _refused, _settings
    from edge.finance.compliance import make_purchase_order_guard
    from edge.finance.rulebook import rule_book
    from edge.ledger.posting import PostingContext
    from edge.replenishment.emergency import ParseOptions, parse_request, with_overrides
    from edge.replenishment.emergency_orders import create_emergency, plan_emergency, request_fingerprint
    from edge.replenishment.item_index import ItemIndex

    settings = _settings(config)
    now = datetime.now(UTC)
    options = ParseOptions(
        timezone=settings.timezone,
        max_chars=settings.emergency_max_text_chars,
        min_score=settings.emergency_min_match_score,
        margin=settings.emergency_ambiguity_margin,
    )
    with _refused():
        conn = _open_db(settings, readonly=not create)
        try:
            index = ItemIndex.from_db(conn)
            parse = parse_request(text, index, settings.business_date(now), now, options)
            if sku is not None:
                parse = with_overrides(parse, index, {"sku": sku})
            proposal: dict[str, Any] | None = None
            if parse.complete:
                proposal = plan_emergency(conn, parse, policy=_policy(settings), now=now).to_json()
            if as_json:
                typer.echo(json.dumps({"parse": parse.to_json(), "proposal": proposal}, ensure_ascii=False, indent=2))
            else:
                _print_parse(parse)
                if proposal is not None:
                    typer.echo(f"建议 / proposal: {proposal['message']} / {proposal['message_en']}")
            if not create:
                return
            ctx = PostingContext(
                now=now,
                business_date=settings.business_date(now),
                rules=rule_book(),
                guards=(make_purchase_order_guard(settings.po_papers_required_above_yuan * 100),),
            )
            request_key = key or "cli:" + hashlib.sha256(f"{text}|{sku}".encode()).hexdigest()[:32]
            conn.execute("BEGIN IMMEDIATE")
            try:
                said = request_fingerprint(text, {"sku": sku} if sku else None)
                result = create_emergency(conn, ctx, parse, request_key, "cli", _policy(settings), said)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            again = "（重复请求，未再创建）/ (replayed, nothing new)" if result["replayed"] else ""
            made = (
                f"调拨申请 / transfer request #{result['transfer_id']}"
                if result["action"] == "transfer"
                else f"紧急采购订单 / urgent purchase order document {result['document_id']}"
            )
            typer.echo(f"已创建 / created: {made} {again}".rstrip())
        finally:
            conn.close()
