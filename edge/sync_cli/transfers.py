"""`storebox transfers ...` (issue 6, docs/transfers.md): other stores' stock of an item, incoming transfers and
receiving them, outgoing transfers and their settlement.

Exit codes: 0 done, 2 refused (by the box or the aggregator, or not configured), 3 the aggregator is unreachable.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from edge.config import Settings
from edge.sync_cli import transfers_app
from edge.sync_cli.sync import exit_with_error, run_with_client

T = TypeVar("T")
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config file (also STOREBOX_CONFIG).", dir_okay=False)
]
DataDirOption = Annotated[Path | None, typer.Option("--data-dir", help="Overrides STOREBOX_DATA_DIR.")]
StateOption = Annotated[str | None, typer.Option("--state", help="in_transit, received, settled or cancelled")]
OfflineOption = Annotated[bool, typer.Option("--offline", help="Show the local copy; do not ask the aggregator.")]


def _now() -> datetime:
    return datetime.now(UTC)


class _CliWriter:
    """The writer's jobs for a one-shot command: each in its own IMMEDIATE transaction on the box's database
    (SQLite queues it behind a running box's writer)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _context(self) -> Any:
        from edge.finance.setup import posting_context

        now = _now()
        return posting_context(
            None,  # type: ignore[arg-type]
            now,
            self.settings.business_date(now),
            default_location=self.settings.receiving_location or "floor",
        )

    def _run(self, fn: Callable[..., T], *args: Any) -> T:
        from edge.cli import _open_db

        conn = _open_db(self.settings, readonly=False)
        try:
            conn.execute("BEGIN IMMEDIATE")
            result = fn(conn, *args)
            conn.execute("COMMIT")
            return result
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    async def execute(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(self._run, fn, *args)

    async def execute_posting(self, fn: Callable[..., T], *args: Any) -> T:
        ctx = self._context()
        return await asyncio.to_thread(self._run, lambda conn, *a: fn(conn, ctx, *a), *args)

    async def post(self, command: Any) -> Any:
        from edge.ledger.posting import post

        ctx = self._context()
        return await asyncio.to_thread(self._run, lambda conn: post(conn, command, ctx))


def _reader(settings: Settings) -> Callable[[], Any]:
    from edge.db import connect

    return lambda: connect(settings.db_path, readonly=True)


def _refresh(settings: Settings) -> None:
    """Pull transfers from the aggregator (and settle what the other stores received), like the box does."""
    from prometheus_client import CollectorRegistry

    from edge.sync import transfers as tr
    from edge.sync.service import PullContext

    ctx = PullContext(settings, _CliWriter(settings), _reader(settings), _now, CollectorRegistry())
    run_with_client(settings, lambda client: tr.pull(client, ctx))


def _yuan(fen: int | None) -> str:
    return "-" if fen is None else f"{fen / 100:.2f}"


def _show(transfers: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(transfers, ensure_ascii=False, indent=2))
        return
    if not transfers:
        typer.echo("没有调拨单 / no transfers")
    for t in transfers:
        typer.echo(
            f"#{t['id']} {t['from_store']} -> {t['to_store']} {t['out_doc_no']} {t['shipped_date']} {t['state']}"
            f" 发出 shipped {_yuan(t['shipped_value_fen'])} 收到 received {_yuan(t['received_value_fen'])}"
        )
        for p in t["parts"]:
            got = "-" if p.get("received_qty") is None else p["received_qty"]
            typer.echo(
                f"  {p['part_no']}. {p['sku']} 批次 lot {p['lot'] or '-'} 效期 expiry {p['expiry'] or '-'}"
                f" 数量 qty {p['qty']} 收 received {got}"
            )


def _list(
    direction: str, state: str | None, offline: bool, as_json: bool, config: Path | None, data_dir: Path | None
) -> None:
    from edge.cli import _reading, _settings
    from edge.sync import transfers as tr

    settings = _settings(config, data_dir=data_dir)
    if not offline:
        if settings.sync_url is None:
            typer.echo("storebox: 未设置 sync_url / sync_url is not set", err=True)
            raise typer.Exit(2)
        _refresh(settings)
    with _reading(settings) as conn:
        _show(tr.list_local(conn, direction, state), as_json)


@transfers_app.command("incoming")
def incoming(
    state: StateOption = None,
    offline: OfflineOption = False,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Transfers other stores shipped to this store (pulled from the aggregator first, unless --offline)."""
    _list("incoming", state, offline, as_json, config, data_dir)


@transfers_app.command("outgoing")
def outgoing(
    state: StateOption = None,
    offline: OfflineOption = False,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Transfers this store shipped; those the other store has received are settled on the way."""
    _list("outgoing", state, offline, as_json, config, data_dir)


@transfers_app.command("receive")
def receive(
    transfer_id: Annotated[int, typer.Argument(help="the incoming transfer's id (storebox transfers incoming)")],
    line: Annotated[
        list[str], typer.Option("--line", help="PART=QTY counted, in base units (repeat; parts left out: not received)")
    ],
    location: Annotated[str | None, typer.Option("--location", help="where the goods go")] = None,
    key: Annotated[str | None, typer.Option("--key", help="idempotency key (a retry uses the same)")] = None,
    note: Annotated[str | None, typer.Option("--note")] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Receive an incoming transfer with the counted quantities: a transfer in at the sender's cost."""
    from edge.cli import _settings
    from edge.ledger.errors import DomainError
    from edge.sync import transfers as tr

    settings = _settings(config, data_dir=data_dir)
    counts: dict[int, int] = {}
    for text in line:
        part, _, qty = text.partition("=")
        if not part.strip().isdigit() or not qty.strip().isdigit() or int(part) in counts:
            typer.echo(f"storebox: --line 须为 PART=QTY: {text!r} / --line must be PART=QTY: {text!r}", err=True)
            raise typer.Exit(2)
        counts[int(part)] = int(qty)
    writer = _CliWriter(settings)
    try:
        result = asyncio.run(
            writer.execute_posting(
                tr.receive_incoming,
                transfer_id,
                counts,
                location,
                "cli",
                f"cli:transfer-in:{key or uuid.uuid4().hex}",
                note,
            )
        )
    except DomainError as error:
        exit_with_error(error)
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False, indent=2))
    if not result["ok"]:
        typer.echo(f"storebox: {result['message']} / {result['message_en']}", err=True)
        raise typer.Exit(2)
    if not as_json:
        typer.echo(f"已收货 received: {result['doc_no']} (调入单 transfer #{transfer_id})")


@transfers_app.command("sources")
def sources(
    sku: Annotated[str, typer.Argument(help="the item's SKU")],
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Other stores' stock of an item, ranked: where to transfer from (also refreshes peer_stock)."""
    from edge.cli import _settings
    from edge.sync import transfers as tr

    settings = _settings(config, data_dir=data_dir)
    if settings.sync_url is None:
        typer.echo("storebox: 未设置 sync_url / sync_url is not set", err=True)
        raise typer.Exit(2)
    answer = run_with_client(
        settings, lambda client: tr.sources(client, settings, _CliWriter(settings), _reader(settings), sku, _now)
    )
    if as_json:
        typer.echo(json.dumps(answer, ensure_ascii=False, indent=2))
        return
    if not answer["sources"]:
        typer.echo(f"其他门店没有 {sku} / no other store holds {sku}")
    for s in answer["sources"]:
        shelf = s["min_shelf_life_days"] if s["min_shelf_life_days"] is not None else "-"
        cold = "是 yes" if s["cold_chain_capable"] else "否 no"
        distance = s["distance_km"] if s["distance_km"] is not None else "-"
        usable = "" if s["usable"] else " (不可用 not usable)"
        typer.echo(
            f"{s['rank']}. {s['store']} 数量 qty {s['qty']} 最短保质期 shelf life {shelf} 天 days"
            f" 最近出库 last out {s['last_outbound_date'] or '-'} 冷链 cold chain {cold} 距离 {distance} km{usable}"
        )


__all__ = ["incoming", "outgoing", "receive", "sources", "transfers_app"]
