"""`storebox sync ...` (issue 6, docs/sync.md): the state of the upload, one round now, the totals check against
the aggregator, the store key (set, rotate) and compaction of acknowledged outbox rows.

Exit codes: 0 done, 1 `verify` found differences, 2 refused (by the aggregator or the box: bad key, conflict,
not configured), 3 the aggregator could not be reached.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from edge.config import Settings
from edge.sync_cli import sync_app

T = TypeVar("T")
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
# The same options as edge/cli.py's (that module imports this package, so they are repeated, not imported).
ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config file (also STOREBOX_CONFIG).", dir_okay=False)
]
DataDirOption = Annotated[Path | None, typer.Option("--data-dir", help="Overrides STOREBOX_DATA_DIR.")]


def _now() -> datetime:
    return datetime.now(UTC)


class _DirectWriter:
    """The writer's `execute` for a one-shot command: each call in its own IMMEDIATE transaction on the box's
    database (SQLite queues it behind the running box's writer)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def add_listener(self, _listener: Callable[[Any], None]) -> None:
        return None

    async def execute(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(self._run, fn, *args)

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


def exit_with_error(error: Exception) -> NoReturn:
    """A sync error is one line (Chinese / English) and exit 2 (refused) or 3 (unreachable)."""
    from edge.sync.errors import SyncUnavailable

    message = getattr(error, "message", str(error))
    message_en = getattr(error, "message_en", str(error))
    typer.echo(f"storebox: {message} / {message_en}", err=True)
    raise typer.Exit(3 if isinstance(error, SyncUnavailable) else 2)


def _service(settings: Settings) -> Any:
    from prometheus_client import CollectorRegistry

    from edge.db import connect
    from edge.sync.service import SyncService

    if not settings.db_path.exists():
        typer.echo(f"storebox: no database at {settings.db_path} / 数据库不存在", err=True)
        raise typer.Exit(2)
    return SyncService(
        settings,
        _DirectWriter(settings),
        lambda: connect(settings.db_path, readonly=True),
        _now,
        CollectorRegistry(),
    )


def run_with_client(settings: Settings, act: Callable[[Any], Any]) -> Any:
    """`await act(client)` with a signed client of the aggregator; sync errors end the command."""
    from edge.ledger.errors import DomainError
    from edge.sync.client import SyncClient
    from edge.sync.keys import load_key
    from edge.sync.protocol import ProtocolError

    async def go() -> Any:
        client = SyncClient(settings, lambda: load_key(settings), _now)
        try:
            return await act(client)
        finally:
            await client.aclose()

    try:
        return asyncio.run(go())
    except (DomainError, ProtocolError) as error:
        exit_with_error(error)


@sync_app.command("status")
def sync_status(
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Pending outbox rows, the last batch, what the aggregator acknowledged and applied, lag, the last error."""
    from edge.cli import _reading, _settings
    from edge.sync.service import local_status

    settings = _settings(config, data_dir=data_dir)
    with _reading(settings) as conn:
        report = {"configured": settings.sync_url is not None, "url": settings.sync_url, **local_status(conn, _now())}
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    typer.echo(f"汇总服务 aggregator: {settings.sync_url or '未配置 not configured'}")
    typer.echo(f"待上传 pending rows: {report['pending_rows']} (outbox head {report['head_seq']})")
    typer.echo(
        f"最早待传 oldest pending: {report['oldest_pending_at'] or '-'}  延迟 lag: {report['lag_seconds']:.0f} s"
    )
    typer.echo(
        f"批次 batches: last {report['last_batch'] or '-'}, acknowledged {report['last_acked_batch'] or '-'}"
        f" at {report['last_ack_at'] or '-'}, applied through {report['applied_through']}"
    )
    typer.echo(f"已压缩 compacted through outbox row: {report['compacted_through_row']}")
    error = report["last_batch_error"]
    shown = "-" if error is None else f"batch {error['batch']}: {error['error']}"
    typer.echo(f"最近错误 last error: {shown}")


@sync_app.command("push")
def sync_push(
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Upload everything pending now (one round). Exit 2 when refused, 3 when the aggregator is unreachable."""
    from edge.cli import _settings
    from edge.ledger.errors import DomainError
    from edge.sync.protocol import ProtocolError

    settings = _settings(config, data_dir=data_dir)
    service = _service(settings)

    async def go() -> dict[str, Any]:
        try:
            result: dict[str, Any] = await service.push_now()
            return result
        finally:
            await service.client.aclose()

    try:
        sent = asyncio.run(go())
    except (DomainError, ProtocolError) as error:
        exit_with_error(error)
    if as_json:
        typer.echo(json.dumps(sent, ensure_ascii=False))
    else:
        typer.echo(
            f"已上传 sent {sent['batches']} batch(es), {sent['rows']} row(s); answers {sent['answers']};"
            f" applied through {sent['applied_through']}"
        )


@sync_app.command("verify")
def sync_verify(
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Compare the box's ledger totals with the aggregator's for this store; exit 1 naming each difference."""
    from edge.cli import _reading, _settings
    from edge.sync.totals import differences, ledger_totals

    settings = _settings(config, data_dir=data_dir)

    async def fetch(client: Any) -> Any:
        return await client.get_json("/api/v1/sync/totals")

    theirs = run_with_client(settings, fetch)
    with _reading(settings) as conn:
        mine = ledger_totals(conn)
    found = differences(mine, theirs if isinstance(theirs, dict) else {})
    if as_json:
        typer.echo(json.dumps({"ok": not found, "differences": found, "box": mine}, ensure_ascii=False))
    elif found:
        typer.echo(f"总数不一致 totals differ ({len(found)}):")
        for line in found:
            typer.echo(f"  {line}")
    else:
        typer.echo(f"总数一致 totals agree ({mine['documents']} documents)")
    raise typer.Exit(1 if found else 0)


@sync_app.command("set-key")
def sync_set_key(
    key: Annotated[str, typer.Argument(help="the store key <key_id>.<secret> from `storebox-cloud stores add`")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Write the store key to <data_dir>/sync.key (mode 0600, atomically)."""
    from edge.cli import _settings
    from edge.sync.keys import write_key
    from edge.sync.protocol import ProtocolError, parse_store_key

    settings = _settings(config, data_dir=data_dir)
    try:
        parsed = parse_store_key(key)
    except ProtocolError as error:
        exit_with_error(error)
    write_key(settings.sync_key_path, parsed)
    typer.echo(f"门店密钥已保存 store key {parsed.key_id} saved to {settings.sync_key_path}")


@sync_app.command("rotate-key")
def sync_rotate_key(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Ask the aggregator for a new store key and write it to the key file; the old key keeps working for the
    aggregator's grace period, so a box still using it is not cut off."""
    from edge.cli import _settings
    from edge.sync.errors import SyncUnavailable
    from edge.sync.keys import write_key
    from edge.sync.protocol import ProtocolError, parse_store_key

    settings = _settings(config, data_dir=data_dir)

    async def rotate(client: Any) -> Any:
        return await client.post_json("/api/v1/sync/keys/rotate", b"{}", gzip=False)

    answer = run_with_client(settings, rotate)
    try:
        new = parse_store_key(answer["key"] if isinstance(answer, dict) else "")
    except (ProtocolError, KeyError, TypeError):
        exit_with_error(SyncUnavailable("汇总服务的应答无法识别", "unrecognised answer from the aggregator"))
    write_key(settings.sync_key_path, new)
    expires = answer.get("old_key_expires_at")
    typer.echo(
        f"新密钥 {new.key_id} 已保存 new key saved to {settings.sync_key_path};"
        f" old key {answer.get('old_key_id')} works until {expires}"
    )


@sync_app.command("compact")
def sync_compact(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Delete outbox rows acknowledged and applied by the aggregator more than outbox_retention_days ago."""
    from edge.cli import _settings, _write
    from edge.sync.outbox import compact

    settings = _settings(config, data_dir=data_dir)

    def act(conn: sqlite3.Connection, now: datetime) -> int:
        return compact(conn, now, settings.outbox_retention_days)

    deleted = _write(settings, act)
    typer.echo(f"已压缩 {deleted} 条发件箱记录 compacted {deleted} outbox row(s)")


__all__ = ["sync_app"]
