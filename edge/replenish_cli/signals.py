"""Commands of `storebox signals`: import signal files and lead-time history, read what is stored, learned lead
times, return spikes and supplier quality (docs/signals.md)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from edge.replenish_cli import signals_app

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config file (also STOREBOX_CONFIG).", dir_okay=False)
]
DataDirOption = Annotated[Path | None, typer.Option("--data-dir", help="Overrides STOREBOX_DATA_DIR.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
FileArgument = Annotated[Path, typer.Argument(help="CSV (UTF-8, BOM ok) or JSON file", dir_okay=False)]


def _read(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        typer.echo(f"storebox: 文件无法读取 / cannot read {file}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))


@signals_app.command("import")
def import_signals(
    file: FileArgument,
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            "-k",
            help="weather, promotion, online_sales, supplier_delay, trend, search_bounce or cart_abandonment",
        ),
    ],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    actor: Annotated[str, typer.Option("--actor", help="who pushes the signals (audit trail)")] = "cli",
    as_json: JsonOption = False,
) -> None:
    """Import a signal file. The whole file is refused (exit 2, naming the line and field) when any record is
    bad; importing the same file again changes nothing (the key is the file's hash)."""
    from edge.cli import _refused, _settings, _write
    from edge.replenishment.signal_formats import kind_of, parse_signal_file
    from edge.replenishment.signals import record_signals, to_domain

    settings = _settings(config, data_dir=data_dir)
    data = _read(file)
    with _refused():
        name = kind_of(kind)
        parsed, lines = parse_signal_file(name, data, file.name)
        records = to_domain(name, parsed)
    key = f"file:{name}:{hashlib.sha256(data).hexdigest()}"
    result = _write(
        settings,
        lambda conn, now: record_signals(
            conn, name, records, key, actor, now, settings.business_date(now), "file", lines, settings.timezone
        ),
    )
    if as_json:
        _echo_json(result)
        return
    again = " (已导入过 / imported before)" if result["replayed"] else ""
    typer.echo(
        f"{file.name}: {result['records']} 条 {name} 信号, 新增 {result['accepted']}, 重复 {result['duplicates']}"
        f" / {result['records']} {name} records, {result['accepted']} new, {result['duplicates']} duplicates{again}"
    )


@signals_app.command("list")
def list_command(
    kind: Annotated[str, typer.Option("--kind", "-k", help="the signal kind")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_json: JsonOption = False,
) -> None:
    """Stored signals of a kind, newest first."""
    from edge.cli import _reading, _refused, _settings
    from edge.replenishment.signal_formats import kind_of
    from edge.replenishment.signals import list_signals

    settings = _settings(config, data_dir=data_dir)
    with _refused(), _reading(settings) as conn:
        rows = list_signals(conn, kind_of(kind), limit=limit)
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        typer.echo("没有记录 / nothing stored")
    for row in rows:
        typer.echo(" ".join(f"{k}={v}" for k, v in row.items() if v is not None))


@signals_app.command("import-lead-times")
def import_lead_times_command(
    file: FileArgument,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    actor: Annotated[str, typer.Option("--actor", help="who imports (audit trail)")] = "cli",
    as_json: JsonOption = False,
) -> None:
    """Import lead-time history from a previous system: columns supplier, po_ref, ordered_on, received_on, qty."""
    from edge.cli import _refused, _settings, _write
    from edge.replenishment.leadtime import import_lead_times
    from edge.replenishment.signal_formats import LeadTimeIn, parse_signal_file

    settings = _settings(config, data_dir=data_dir)
    data = _read(file)
    with _refused():
        parsed, lines = parse_signal_file("lead_time", data, file.name)
    records = [r for r in parsed if isinstance(r, LeadTimeIn)]
    key = f"file:lead_time:{hashlib.sha256(data).hexdigest()}"
    result = _write(
        settings,
        lambda conn, now: import_lead_times(conn, records, key, actor, now, settings.business_date(now), lines),
    )
    if as_json:
        _echo_json(result)
        return
    typer.echo(
        f"{file.name}: {result['records']} 条到货记录, 新增 {result['accepted']}"
        f" / {result['records']} deliveries, {result['accepted']} new"
    )


@signals_app.command("lead-times")
def lead_times_command(
    config: ConfigOption = None, data_dir: DataDirOption = None, as_json: JsonOption = False
) -> None:
    """Learned lead time per supplier (days from PO to receipt, shrunk towards the supplier default)."""
    from edge.cli import _reading, _settings
    from edge.replenishment.leadtime import LeadTimePolicy, supplier_lead_times

    settings = _settings(config, data_dir=data_dir)
    with _reading(settings) as conn:
        learned = supplier_lead_times(
            conn, settings.business_date(datetime.now(UTC)), LeadTimePolicy.from_settings(settings)
        )
    rows = [
        {"supplier": s, "mean_days": lt.mean, "std_days": lt.std, "observations": lt.n} for s, lt in learned.items()
    ]
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        typer.echo("没有供应商到货数据 / no lead times yet")
    for r in rows:
        typer.echo(f"{r['supplier']}: {r['mean_days']:.1f} ± {r['std_days']:.1f} 天/days (n={r['observations']})")


@signals_app.command("return-spikes")
def return_spikes_command(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    check: Annotated[bool, typer.Option("--check", help="check for new spikes as of today first")] = False,
    open_only: Annotated[bool, typer.Option("--open", help="only spikes still going on")] = False,
    as_json: JsonOption = False,
) -> None:
    """Customer-return spikes, newest first."""
    from edge.cli import _reading, _settings, _write
    from edge.replenishment.returns import ReturnSpikePolicy, detect_return_spikes, list_spikes

    settings = _settings(config, data_dir=data_dir)
    if check:
        policy = ReturnSpikePolicy.from_settings(settings)
        _write(settings, lambda conn, now: detect_return_spikes(conn, settings.business_date(now), policy))
    with _reading(settings) as conn:
        spikes = list_spikes(conn, open_only=open_only)
    if as_json:
        _echo_json([s.to_dict() for s in spikes])
        return
    if not spikes:
        typer.echo("没有退货激增 / no return spikes")
    for s in spikes:
        ended = f" (结束 / ended {s.ended_on})" if s.ended_on else ""
        typer.echo(f"#{s.id} {s.detected_on} {s.message} / {s.message_en}{ended}")


@signals_app.command("quality")
def quality_command(
    supplier: Annotated[str, typer.Argument(help="the supplier's id")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """A supplier's quality score 0..100 from return rates by reason and return spikes."""
    from edge.cli import _reading, _refused, _settings
    from edge.replenishment.returns import ReturnSpikePolicy, supplier_quality

    settings = _settings(config, data_dir=data_dir)
    policy = ReturnSpikePolicy.from_settings(settings)
    with _refused(), _reading(settings) as conn:
        result = supplier_quality(conn, supplier, settings.business_date(datetime.now(UTC)), policy)
    if as_json:
        _echo_json(result)
        return
    typer.echo(
        f"{supplier}: 质量分 / quality score {result['score']:.1f} (近 {result['window_days']} 天 / days,"
        f" 售 / sold {result['sold_qty']}, 退 / returned {result['returned_qty']})"
    )
    for r in result["by_reason"]:
        typer.echo(f"  {r['reason_name']} / {r['reason']}: {r['returned_qty']} ({r['rate'] * 100:.1f}%)")
