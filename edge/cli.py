"""`storebox ...` commands: one per capability of the box."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from edge.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from edge.ledger.errors import DomainError

app = typer.Typer(
    name="storebox",
    help="StoreBox 进销存一体机 / purchase-sales-inventory appliance.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
ledger_app = typer.Typer(help="账本 / the stock ledger.", no_args_is_help=True)
user_app = typer.Typer(help="用户 / users of the API and the page.", no_args_is_help=True)
device_app = typer.Typer(help="设备 / device credentials for the MQTT bus.", no_args_is_help=True)
books_app = typer.Typer(help="账簿 / the books: trial balance, ledgers, AP ageing, export.", no_args_is_help=True)
invoice_app = typer.Typer(help="进项发票 / purchase invoices and three-way match.", no_args_is_help=True)
supplier_app = typer.Typer(help="供应商 / suppliers: papers, freezes, bank accounts, prices.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
app.add_typer(books_app, name="books")
app.add_typer(invoice_app, name="invoice")
app.add_typer(supplier_app, name="supplier")
app.add_typer(user_app, name="user")
app.add_typer(device_app, name="device")
# issue 4 sub-apps: each part adds its typer here, commands in its own block at the end of this file.
# --- serial / profiles ---
serial_app = typer.Typer(help="串口设备 / serial devices bridged onto the bus.", no_args_is_help=True)
profiles_app = typer.Typer(help="固件档案 / firmware profiles of device models.", no_args_is_help=True)
app.add_typer(serial_app, name="serial")
app.add_typer(profiles_app, name="profiles")
# --- asn / receiving ---
supplier_key_app = typer.Typer(help="供应商接口密钥 / supplier API keys (X-Api-Key).", no_args_is_help=True)
asn_template_app = typer.Typer(help="发货通知对接模板 / ASN connector templates.", no_args_is_help=True)
supplier_app.add_typer(supplier_key_app, name="api-key")
supplier_app.add_typer(asn_template_app, name="asn-template")
signing_key_app = typer.Typer(help="送货单签名公钥 / suppliers' delivery-note signing keys.", no_args_is_help=True)
asn_app = typer.Typer(help="发货通知 / advance shipping notices (ASN).", no_args_is_help=True)
receiving_app = typer.Typer(help="扫码收货 / scan-to-receive: delivery notes and receipt drafts.", no_args_is_help=True)
supplier_app.add_typer(signing_key_app, name="signing-key")
app.add_typer(asn_app, name="asn")
app.add_typer(receiving_app, name="receiving")

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config file (also STOREBOX_CONFIG).", dir_okay=False)
]
DataDirOption = Annotated[Path | None, typer.Option("--data-dir", help="Overrides STOREBOX_DATA_DIR.")]
SupplierArgument = Annotated[str, typer.Argument(help="the supplier's id")]
DeviceIdArgument = Annotated[str, typer.Argument(help="The device's id.")]


def _settings(config: Path | None, **overrides: Any) -> Settings:
    """Load settings or stop with one clear line (exit code 2)."""
    try:
        return load_settings(config, **{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as err:
        typer.echo(f"storebox: {err}", err=True)
        raise typer.Exit(2) from None


def _open_db(settings: Settings, *, readonly: bool) -> Any:
    from edge.db import connect, migrate

    if readonly:
        if not settings.db_path.exists():
            typer.echo(f"storebox: no database at {settings.db_path} / 数据库不存在", err=True)
            raise typer.Exit(2)
        return connect(settings.db_path, readonly=True)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    conn = connect(settings.db_path, synchronous=settings.sqlite_synchronous)
    migrate(conn)
    return conn


@contextmanager
def _reading(settings: Settings) -> Iterator[Any]:
    """A read-only connection for one command, closed when it is done (exit 2 when there is no database)."""
    conn = _open_db(settings, readonly=True)
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def _refused(kind: type[DomainError] | None = None) -> Iterator[None]:
    """A refusal of the core (`kind`, default any DomainError) is one clear line and exit code 2."""
    from edge.ledger.errors import DomainError

    refusal = kind or DomainError
    try:
        yield
    except refusal as err:
        typer.echo(f"storebox: {err.message} / {err.message_en}", err=True)
        raise typer.Exit(2) from None


def _write(settings: Settings, act: Any) -> Any:
    """`act(conn, now)` in one transaction; a refusal is one clear line and exit code 2. Safe while the box
    runs: SQLite takes this writer after the box's, and the box sees the change at the next connect."""
    from datetime import UTC, datetime

    from edge.ledger.errors import DomainError

    conn = _open_db(settings, readonly=False)
    try:
        conn.execute("BEGIN IMMEDIATE")
        result = act(conn, datetime.now(UTC))
        conn.execute("COMMIT")
        return result
    except DomainError as err:
        conn.execute("ROLLBACK")
        typer.echo(f"storebox: {err.message} / {err.message_en}", err=True)
        raise typer.Exit(2) from None
    finally:
        conn.close()


@app.command()
def serve(
    config: ConfigOption = None,
    demo: Annotated[bool, typer.Option("--demo", help="Seed a demo store on an empty data dir.")] = False,
    data_dir: DataDirOption = None,
    http_host: Annotated[str | None, typer.Option(help="Overrides STOREBOX_HTTP_HOST.")] = None,
    http_port: Annotated[int | None, typer.Option(help="Overrides STOREBOX_HTTP_PORT.")] = None,
    mqtt_host: Annotated[str | None, typer.Option(help="Overrides STOREBOX_MQTT_HOST.")] = None,
    mqtt_port: Annotated[int | None, typer.Option(help="Overrides STOREBOX_MQTT_PORT.")] = None,
    store_id: Annotated[str | None, typer.Option(help="Overrides STOREBOX_STORE_ID.")] = None,
) -> None:
    """Run the box: HTTP API, embedded MQTT broker and device ingest in one process."""
    settings = _settings(
        config,
        data_dir=data_dir,
        http_host=http_host,
        http_port=http_port,
        mqtt_host=mqtt_host,
        mqtt_port=mqtt_port,
        store_id=store_id,
    )
    from edge.app import run_box

    try:
        code = asyncio.run(run_box(settings, demo=demo))
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)


@app.command()
def simulate(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    demo_json: Annotated[
        Path | None, typer.Option(help="demo.json of the box (default <data_dir>/demo.json).", dir_okay=False)
    ] = None,
    duration: Annotated[
        float | None, typer.Option(min=0.1, help="Stop after this many seconds (default: run until Ctrl-C).")
    ] = None,
) -> None:
    """Run simulated devices (POS, handheld, cold-room sensor) against a running box."""
    settings = _settings(config, data_dir=data_dir)
    from tools.sim import main as sim_main

    path = demo_json or settings.data_dir / "demo.json"
    raise typer.Exit(sim_main(path, duration=duration, wait_for_box=True) or 0)


@app.command()
def migrate(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Apply pending schema migrations, install the chart of accounts and its shipped voucher rules, and exit."""
    settings = _settings(config, data_dir=data_dir)
    from edge.db import connect
    from edge.db import migrate as apply
    from edge.finance.errors import FinanceError
    from edge.finance.setup import prepare_books

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    conn = connect(settings.db_path, synchronous=settings.sqlite_synchronous)
    try:
        applied = apply(conn)
        conn.execute("BEGIN IMMEDIATE")
        prepare_books(conn, settings.chart)
        conn.execute("COMMIT")
    except FinanceError as err:
        conn.execute("ROLLBACK")
        typer.echo(f"storebox: {err.message} / {err.message_en}", err=True)
        raise typer.Exit(2) from None
    finally:
        conn.close()
    typer.echo("\n".join(applied) if applied else "schema up to date / 数据库结构已是最新")


@ledger_app.command("verify")
def ledger_verify(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON.")] = False,
) -> None:
    """Rebuild balances from the moves, check vouchers, outbox and the audit chain. Exit 1 on mismatch."""
    settings = _settings(config, data_dir=data_dir)
    from edge.ledger.verify import verify_ledger

    with _reading(settings) as conn:
        report = verify_ledger(conn, allow_negative=settings.allow_negative_stock)
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        checked = ", ".join(f"{k} {v}" for k, v in report["checked"].items())
        if report["ok"]:
            typer.echo(f"账本正确 ledger OK ({checked})")
        else:
            for name, problems in report.items():
                if isinstance(problems, list) and problems:
                    typer.echo(f"{name}: {len(problems)} problem(s)")
                    for problem in problems[:20]:
                        typer.echo(f"  {json.dumps(problem, ensure_ascii=False)}")
    raise typer.Exit(0 if report["ok"] else 1)


@ledger_app.command("rebuild-balances")
def ledger_rebuild(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Recompute the balances table from the stock moves (run with the box stopped)."""
    settings = _settings(config, data_dir=data_dir)
    from edge.ledger.verify import rebuild_balances

    conn = _open_db(settings, readonly=False)
    conn.execute("BEGIN IMMEDIATE")
    count = rebuild_balances(conn)
    conn.execute("COMMIT")
    conn.close()
    typer.echo(f"rebuilt {count} balances / 已重建 {count} 条余额")


def _password(given: str | None) -> str:
    return given if given else secrets.token_urlsafe(12)


def _add_credential(settings: Settings, create: Any, name: str, secret: str) -> None:
    """Run `create(conn)` in one transaction; a refusal is one clear line and exit code 2."""
    from edge.security.errors import SecurityError

    conn = _open_db(settings, readonly=False)
    try:
        conn.execute("BEGIN IMMEDIATE")
        create(conn)
        conn.execute("COMMIT")
    except SecurityError as err:
        conn.execute("ROLLBACK")
        typer.echo(f"storebox: {name}: {err.message} / {err.message_en}", err=True)
        raise typer.Exit(2) from None
    finally:
        conn.close()


@user_app.command("add")
def user_add(
    username: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[str, typer.Option(help="admin, manager, clerk, purchaser, accountant or auditor.")],
    password: Annotated[str | None, typer.Option(help="Generated and printed when omitted.")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Add a user with a role."""
    from edge.security.users import create_user

    secret = _password(password)
    _add_credential(
        _settings(config, data_dir=data_dir), lambda c: create_user(c, username, secret, role), username, secret
    )
    typer.echo(json.dumps({"username": username, "role": role, "password": secret}, ensure_ascii=False))


@device_app.command("add")
def device_add(
    device_id: Annotated[str, typer.Argument(help="Device id, [a-z0-9-]+; also its MQTT username.")],
    kind: Annotated[str, typer.Option(help="pos, handheld, scale, scanner, sensor, ...")],
    password: Annotated[str | None, typer.Option(help="Generated and printed when omitted.")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Register a device and print its MQTT credentials."""
    from edge.bus.broker_credentials import set_broker_credential
    from edge.security.devices import create_device

    secret = _password(password)

    def create(conn: Any) -> None:
        create_device(conn, device_id, kind, secret)
        set_broker_credential(conn, device_id, secret)  # for an external broker's password file (docs/mqtt5.md)

    _add_credential(_settings(config, data_dir=data_dir), create, device_id, secret)
    typer.echo(json.dumps({"id": device_id, "kind": kind, "username": device_id, "password": secret}))


# --- books commands (storebox books ...) ---

PeriodOption = Annotated[str, typer.Option("--period", help="Accounting period YYYY-MM, e.g. 2026-11 / 会计期间.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the report as JSON (amounts in fen).")]


def _books_report(settings: Settings, build: Any) -> Any:
    """Run `build(conn)` on a read connection; a refusal (bad period, unknown account) is one line, exit 2."""
    with _reading(settings) as conn, _refused():
        return build(conn)


def _books_json(report: Any) -> None:
    from dataclasses import asdict

    typer.echo(json.dumps(asdict(report), ensure_ascii=False, indent=2))


def _books_width(text: str) -> int:
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _books_table(columns: list[tuple[str, str, bool]], rows: list[list[str]]) -> str:
    """An aligned text table: columns are (Chinese header, English header, right-aligned)."""
    widths = [
        max([_books_width(zh), _books_width(en), *(_books_width(row[i]) for row in rows)])
        for i, (zh, en, _) in enumerate(columns)
    ]

    def line(cells: list[str]) -> str:
        padded = []
        for (_, _, right), width, cell in zip(columns, widths, cells, strict=True):
            pad = " " * (width - _books_width(cell))
            padded.append(pad + cell if right else cell + pad)
        return "  ".join(padded).rstrip()

    out = [line([c[0] for c in columns]), line([c[1] for c in columns]), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in rows]
    return "\n".join(out)


def _yuan(fen: int) -> str:
    from edge.ledger.money import format_yuan

    return format_yuan(fen)


@books_app.command("trial-balance")
def books_trial_balance(
    period: PeriodOption,
    include_empty: Annotated[bool, typer.Option("--all", help="Also list accounts with nothing to show.")] = False,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Trial balance (科目余额表) of a period: opening, debits, credits and closing balance per account."""
    from edge.finance.books import trial_balance

    report = _books_report(
        _settings(config, data_dir=data_dir), lambda c: trial_balance(c, period, include_empty=include_empty)
    )
    if as_json:
        _books_json(report)
        return
    columns = [
        ("科目代码", "account", False),
        ("科目名称", "name", False),
        ("期初借方", "opening debit", True),
        ("期初贷方", "opening credit", True),
        ("本期借方", "period debit", True),
        ("本期贷方", "period credit", True),
        ("期末借方", "closing debit", True),
        ("期末贷方", "closing credit", True),
    ]
    rows = [
        [
            r.code,
            "  " * (r.level - 1) + r.name,
            *(
                _yuan(v)
                for v in (
                    r.opening_debit_fen,
                    r.opening_credit_fen,
                    r.debit_fen,
                    r.credit_fen,
                    r.closing_debit_fen,
                    r.closing_credit_fen,
                )
            ),
        ]
        for r in report.rows
    ]
    t = report.totals
    rows.append(
        [
            "合计",
            "total",
            *(
                _yuan(v)
                for v in (
                    t.opening_debit_fen,
                    t.opening_credit_fen,
                    t.debit_fen,
                    t.credit_fen,
                    t.closing_debit_fen,
                    t.closing_credit_fen,
                )
            ),
        ]
    )
    typer.echo(f"科目余额表 Trial balance {report.period} ({report.first_day} .. {report.last_day}), 元 yuan")
    typer.echo(_books_table(columns, rows))
    typer.echo("借贷平衡 balanced" if report.balanced else "借贷不平 NOT balanced")


@books_app.command("ledger")
def books_ledger(
    account: Annotated[str, typer.Option("--account", help="Account code, e.g. 1405 / 科目代码.")],
    period: PeriodOption,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """General ledger (明细账) of an account and the accounts under it: every line of the period."""
    from edge.finance.books import general_ledger

    report = _books_report(_settings(config, data_dir=data_dir), lambda c: general_ledger(c, account, period))
    if as_json:
        _books_json(report)
        return
    columns = [
        ("日期", "date", False),
        ("凭证号", "voucher", False),
        ("科目", "account", False),
        ("摘要", "memo", False),
        ("单据", "document", False),
        ("借方", "debit", True),
        ("贷方", "credit", True),
        ("方向", "side", False),
        ("余额", "balance", True),
    ]
    rows = [["", "", "", "期初余额 opening", "", "", "", report.opening_side, _yuan(report.opening_fen)]]
    rows += [
        [
            ln.date,
            ln.voucher_no,
            ln.account,
            ln.memo,
            ln.doc_no,
            _yuan(ln.debit_fen),
            _yuan(ln.credit_fen),
            ln.balance_side,
            _yuan(ln.balance_fen),
        ]
        for ln in report.lines
    ]
    rows.append(
        [
            "",
            "",
            "",
            "本期合计 period total",
            "",
            _yuan(report.debit_fen),
            _yuan(report.credit_fen),
            report.closing_side,
            _yuan(report.closing_fen),
        ]
    )
    typer.echo(
        f"明细账 General ledger {report.account} {report.name} {report.name_en}, {report.period}"
        f" ({report.first_day} .. {report.last_day}), 元 yuan"
    )
    typer.echo(_books_table(columns, rows))


@books_app.command("ap-ageing")
def books_ap_ageing(
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Date YYYY-MM-DD (default: today in the store's time zone).")
    ] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Accounts payable ageing (应付账款账龄) by supplier: what is owed, by the age of the open invoices."""
    from datetime import UTC, datetime

    from edge.finance.books import ap_ageing

    settings = _settings(config, data_dir=data_dir)
    day = as_of if as_of is not None else settings.business_date(datetime.now(UTC)).isoformat()
    report = _books_report(settings, lambda c: ap_ageing(c, day))
    if as_json:
        _books_json(report)
        return
    columns = [
        ("供应商", "supplier", False),
        ("名称", "name", False),
        ("应付余额", "balance", True),
        *((f"{label}天", f"{label} days", True) for label in report.bucket_labels),
        ("未核销付款", "unapplied", True),
    ]
    rows = [
        [
            s.supplier or "-",
            s.name,
            _yuan(s.balance_fen),
            *(_yuan(s.buckets[label]) for label in report.bucket_labels),
            _yuan(s.unapplied_fen),
        ]
        for s in report.suppliers
    ]
    rows.append(
        [
            "合计",
            "total",
            _yuan(report.total_fen),
            *(_yuan(report.buckets[label]) for label in report.bucket_labels),
            _yuan(report.unapplied_fen),
        ]
    )
    typer.echo(f"应付账款账龄 AP ageing as of {report.as_of}, 科目 account {report.account}, 元 yuan")
    typer.echo(_books_table(columns, rows))
    verdict = "一致 agrees" if report.agrees else "不一致 DOES NOT agree"
    typer.echo(f"总账余额 general ledger balance {_yuan(report.gl_balance_fen)}: {verdict}")


@books_app.command("valuation")
def books_valuation(as_json: JsonOption = False, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Stock valuation (存货余额表) by item and location at moving-average cost, checked against 1405/1402."""
    from edge.finance.books import stock_valuation

    report = _books_report(_settings(config, data_dir=data_dir), stock_valuation)
    if as_json:
        _books_json(report)
        return
    columns = [
        ("商品", "sku", False),
        ("名称", "name", False),
        ("库位", "location", False),
        ("数量", "qty", True),
        ("单位", "unit", False),
        ("单位成本", "unit cost", True),
        ("金额", "value", True),
    ]
    rows = [
        [
            r.sku,
            r.name,
            r.location,
            str(r.qty),
            r.base_unit,
            "-" if r.unit_cost_fen is None else _yuan(r.unit_cost_fen),
            _yuan(r.value_fen),
        ]
        for r in report.rows
    ]
    rows += [["小计", "subtotal", loc, "", "", "", _yuan(v)] for loc, v in report.by_location.items()]
    rows.append(["合计", "total", "", "", "", "", _yuan(report.total_fen)])
    typer.echo("存货余额表 Stock valuation, 元 yuan")
    typer.echo(_books_table(columns, rows))
    for account, gl, value in (
        (report.inventory_account, report.inventory_gl_fen, report.stock_fen),
        (
            report.transit_account,
            report.transit_gl_fen - report.received_from_other_stores_fen - report.settled_to_other_stores_fen,
            report.transit_fen,
        ),
    ):
        verdict = "一致 agrees" if gl == value else f"差 difference {_yuan(gl - value)}"
        typer.echo(f"科目 account {account}: {_yuan(gl)}, 库存 stock {_yuan(value)}: {verdict}")


@books_app.command("check")
def books_check_command(
    as_json: JsonOption = False, config: ConfigOption = None, data_dir: DataDirOption = None
) -> None:
    """Check the books: vouchers balance, 1405 = stock outside transit, 1402 = transit. Exit 1 on a difference."""
    from edge.finance.books import books_check

    report = _books_report(_settings(config, data_dir=data_dir), books_check)
    if as_json:
        _books_json(report)
    elif report.ok:
        checked = ", ".join(f"{k} {v}" for k, v in report.checked.items())
        typer.echo(f"账簿核对无误 books OK ({checked})")
    else:
        for problem in report.problems:
            typer.echo(f"{problem.message} / {problem.message_en}")
    raise typer.Exit(0 if report.ok else 1)


@books_app.command("export")
def books_export(
    period: PeriodOption,
    layout: Annotated[str, typer.Option("--layout", help="kingdee (金蝶 KIS) or yonyou (用友).")],
    fmt: Annotated[str, typer.Option("--format", help="csv or xlsx.")],
    out: Annotated[Path, typer.Option("--out", help="File to write (replaced atomically).", dir_okay=False)],
    encoding: Annotated[str, typer.Option("--encoding", help="CSV only: utf-8-sig (default) or gbk.")] = "utf-8-sig",
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Export the vouchers of a period in the general-voucher import layout of Kingdee KIS or Yonyou."""
    import os
    import tempfile

    from edge.finance.export import export_vouchers

    exported = _books_report(
        _settings(config, data_dir=data_dir), lambda c: export_vouchers(c, period, layout, fmt, encoding)
    )
    target = out.resolve()
    if not target.parent.is_dir():
        typer.echo(f"storebox: 目录不存在 / no such directory: {target.parent}", err=True)
        raise typer.Exit(2)
    # Written next to the target and renamed over it: a reader never sees half a file.
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)  # mkstemp makes it private; the export is an ordinary file
        with os.fdopen(fd, "wb") as handle:
            handle.write(exported.content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    typer.echo(
        f"已导出 {exported.vouchers} 张凭证 {exported.lines} 行 -> {target}"
        f" / exported {exported.vouchers} vouchers, {exported.lines} lines"
    )


# --- voucher rule versions (storebox books rules ...) ---

rules_app = typer.Typer(help="凭证规则版本 / voucher rule versions, effective-dated.", no_args_is_help=True)
books_app.add_typer(rules_app, name="rules")


@rules_app.command("list")
def rules_list(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The installed voucher rule versions, the date each takes effect and the vouchers each produced."""
    from edge.finance.rulebook import list_versions

    with _reading(_settings(config, data_dir=data_dir)) as conn:
        versions = list_versions(conn)
    if as_json:
        typer.echo(json.dumps(versions, ensure_ascii=False, indent=2))
        return
    typer.echo(f"{'版本 version':<16} {'生效 from':<12} {'科目表 chart':<18} {'凭证 vouchers':>14}  安装 installed")
    for v in versions:
        typer.echo(
            f"{v['version']:<16} {v['effective_from']:<12} {v['chart']:<18} {v['vouchers']:>14}"
            f"  {v['installed_at'][:19]} {v['installed_by']}"
        )


@rules_app.command("show")
def rules_show(version: str, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Print one installed rule table as JSON (a starting point for the next version)."""
    from edge.finance.rulebook import get_version

    with _reading(_settings(config, data_dir=data_dir)) as conn:
        table = get_version(conn, version)
    if table is None:
        typer.echo(f"storebox: 未知凭证规则版本 / unknown rule version: {version}", err=True)
        raise typer.Exit(2)
    typer.echo(json.dumps(table, ensure_ascii=False, indent=1))


@rules_app.command("install")
def rules_install(
    file: Annotated[Path, typer.Argument(help="the rule table (JSON)", exists=False, dir_okay=False)],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    actor: Annotated[str, typer.Option("--actor", help="who installs it (audit trail)")] = "cli",
) -> None:
    """Install a new rule version (run with the box stopped; a running box takes new versions over the API).

    It takes effect from its `effective_from` date, which must be after the last voucher and not before today;
    posted vouchers are never rewritten.
    """
    from datetime import UTC, datetime

    from edge.finance.errors import FinanceError
    from edge.finance.rulebook import install_version

    settings = _settings(config, data_dir=data_dir)
    try:
        data = json.loads(file.read_text("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        typer.echo(f"storebox: 文件无法读取 / cannot read {file}: {exc}", err=True)
        raise typer.Exit(2) from None
    except json.JSONDecodeError as exc:
        typer.echo(f"storebox: 不是有效的 JSON / {file} is not valid JSON (line {exc.lineno}): {exc.msg}", err=True)
        raise typer.Exit(2) from None
    conn = _open_db(settings, readonly=False)
    now = datetime.now(UTC)
    try:
        conn.execute("BEGIN IMMEDIATE")
        rules = install_version(conn, data, actor=actor, now=now, today=settings.business_date(now))
        conn.execute("COMMIT")
    except FinanceError as err:
        conn.execute("ROLLBACK")
        typer.echo(f"storebox: {err.message} / {err.message_en}", err=True)
        raise typer.Exit(2) from None
    finally:
        conn.close()
    typer.echo(
        f"已安装凭证规则 {rules.version}，自 {rules.effective_from} 生效 / installed, effective {rules.effective_from}"
    )


# --- invoice commands (storebox invoice ...) ---


def _invoice_context(settings: Settings) -> Any:
    """A posting context for invoice commands run from the shell (the same clock and rules as the box)."""
    from datetime import UTC, datetime

    from edge.finance.rulebook import rule_book
    from edge.ledger.posting import PostingContext

    now = datetime.now(UTC)
    return PostingContext(now=now, business_date=settings.business_date(now), rules=rule_book())


def _match_policy(settings: Settings) -> Any:
    from edge.finance.matching import MatchPolicy

    return MatchPolicy(
        qty_tolerance=settings.match_qty_tolerance,
        price_tolerance_fen=settings.match_price_tolerance_fen,
        tax_tolerance_fen=settings.match_tax_tolerance_fen,
        window_hours=settings.match_window_hours,
    )


def _invoice_line(invoice: dict[str, Any]) -> str:
    from edge.ledger.money import format_yuan

    reasons = "; ".join(r["message"] for r in (invoice.get("exception") or {}).get("reasons", []))
    total = format_yuan(int(invoice["net_fen"]) + int(invoice["tax_fen"]))
    status = invoice["status"]
    return f"{invoice['id']:>6} {invoice['invoice_no']} {status:<20} {total:>14}  {invoice['seller_name']}" + (
        f"\n       {reasons}" if reasons and status in ("exception", "pending_approval", "awaiting_credit_note") else ""
    )


@invoice_app.command("import")
def invoice_import(
    file: Annotated[Path, typer.Argument(help="CSV, XLSX or 数电票 XML file", dir_okay=False)],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    actor: Annotated[str, typer.Option("--actor", help="who enters the invoices (audit trail)")] = "cli",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Import purchase invoices and match them at once: matches post the AP entry, the rest go to the queue.

    The file is refused as a whole when a row is bad (exit 2, naming the row and field). Importing the same
    file again answers the first result (the idempotency key is the file's hash).
    """
    import hashlib

    from edge.finance.ap import EntryRequest, enter_invoices
    from edge.ledger.errors import DomainError

    settings = _settings(config, data_dir=data_dir)
    try:
        data = file.read_bytes()
    except OSError as exc:
        typer.echo(f"storebox: 文件无法读取 / cannot read {file}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None
    from edge.finance.invoices import parse_invoice_file

    conn = _open_db(settings, readonly=False)
    try:
        parsed = parse_invoice_file(data, file.name)
        request = EntryRequest(
            invoices=parsed.invoices,
            source=parsed.source,
            key=f"cli:import:{hashlib.sha256(data).hexdigest()}",
            actor=actor,
            policy=_match_policy(settings),
            company_credit_code=settings.company_credit_code,
            ignored_columns=parsed.ignored_columns,
            rows=parsed.rows,
        )
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = enter_invoices(conn, _invoice_context(settings), request)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    except DomainError as err:
        typer.echo(f"storebox: {file.name}: {err.message} / {err.message_en}", err=True)
        raise typer.Exit(2) from None
    finally:
        conn.close()
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False, indent=2))
        return
    invoices = result["invoices"]
    matched = sum(1 for i in invoices if i["status"] in ("matched", "credited", "posted"))
    again = " (已导入过 / imported before)" if result["replayed"] else ""
    typer.echo(f"{len(invoices)} 张发票, {matched} 张匹配入账 / {len(invoices)} invoices, {matched} matched{again}")
    for invoice in invoices:
        typer.echo(_invoice_line(invoice))
    if result["ignored_columns"]:
        typer.echo(f"未读取的列 / ignored columns: {', '.join(result['ignored_columns'])}")


@invoice_app.command("exceptions")
def invoice_exceptions(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    show_all: Annotated[bool, typer.Option("--all", help="Closed exceptions too.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The three-way-match exception queue, oldest first, with the reasons in words."""
    from edge.finance.ap import list_exceptions

    with _reading(_settings(config, data_dir=data_dir)) as conn:
        queue = list_exceptions(conn, open_only=not show_all, limit=10_000)
    if as_json:
        typer.echo(json.dumps(queue, ensure_ascii=False, indent=2))
        return
    if not queue:
        typer.echo("没有待处理的匹配异常 / no open match exceptions")
    for exc in queue:
        typer.echo(f"#{exc['id']} 发票 {exc['invoice_no']} {exc['status']} {exc['seller_name']}")
        for reason in exc["reasons"]:
            typer.echo(f"    {reason['message']} / {reason['message_en']}")


@invoice_app.command("show")
def invoice_show(
    invoice_id: Annotated[int, typer.Argument(help="the invoice's id")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """One invoice with its lines, match result and what it cleared, as JSON."""
    from edge.finance.ap import get_invoice
    from edge.finance.errors import FinanceError

    with _reading(_settings(config, data_dir=data_dir)) as conn, _refused(FinanceError):
        invoice = get_invoice(conn, invoice_id)
    typer.echo(json.dumps(invoice, ensure_ascii=False, indent=2))


@invoice_app.command("recheck")
def invoice_recheck(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    actor: Annotated[str, typer.Option("--actor", help="who rechecks (audit trail)")] = "cli",
) -> None:
    """Match every open exception again (e.g. after late receipts); the ones that now agree are posted."""
    from edge.finance.ap import Resolution, ResolutionRequest, list_exceptions, resolve_exception
    from edge.ledger.errors import DomainError

    settings = _settings(config, data_dir=data_dir)
    conn = _open_db(settings, readonly=False)
    matched = 0
    try:
        queue = [e for e in list_exceptions(conn, limit=100_000) if e["kind"] == "invoice"]
        for exc in queue:
            conn.execute("BEGIN IMMEDIATE")
            try:
                request = ResolutionRequest(exc["id"], Resolution.RECHECK, actor, _match_policy(settings))
                result = resolve_exception(conn, _invoice_context(settings), request)
                conn.execute("COMMIT")
            except DomainError as err:
                conn.execute("ROLLBACK")
                typer.echo(f"#{exc['id']}: {err.message} / {err.message_en}", err=True)
                continue
            if not result["open"]:
                matched += 1
    finally:
        conn.close()
    typer.echo(f"重新核对 {len(queue)} 张, {matched} 张已匹配入账 / rechecked {len(queue)}, {matched} now matched")


# --- supplier commands (storebox supplier ...) ---


def _supplier_today(settings: Settings, on: str | None) -> Any:
    from datetime import UTC, date, datetime

    if on is None:
        return settings.business_date(datetime.now(UTC))
    try:
        return date.fromisoformat(on)
    except ValueError:
        typer.echo(f"storebox: --on {on!r}: expected YYYY-MM-DD / 日期格式应为 YYYY-MM-DD", err=True)
        raise typer.Exit(2) from None


@supplier_app.command("papers")
def supplier_papers(
    supplier: SupplierArgument,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The supplier's qualification papers (资质证照): kind, state, confirmed fields and validity."""
    from edge.finance.compliance import get_supplier, list_papers
    from edge.finance.errors import FinanceError
    from edge.finance.papers import PAPER_NAMES, PaperKind

    with _reading(_settings(config, data_dir=data_dir)) as conn, _refused(FinanceError):
        get_supplier(conn, supplier)
        papers = list_papers(conn, supplier)
    if as_json:
        typer.echo(json.dumps(papers, ensure_ascii=False, indent=2))
        return
    if not papers:
        typer.echo(f"供应商 {supplier} 没有证照 / no papers for supplier {supplier}")
    for paper in papers:
        zh, en = PAPER_NAMES[PaperKind(paper["kind"])]
        fields = paper["fields"] or paper["proposed"]["fields"]
        until = "长期 long-term" if fields.get("long_term") else (fields.get("valid_to") or "-")
        typer.echo(
            f"#{paper['id']} {zh} {en} [{paper['state']}] {fields.get('name') or '-'} "
            f"{fields.get('credit_code') or '-'} valid to {until}"
        )


@supplier_app.command("status")
def supplier_status(
    supplier: SupplierArgument,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    on: Annotated[str | None, typer.Option("--on", help="judge on this day (YYYY-MM-DD), default today")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Whether the supplier's papers are complete and valid and payments may go out. Exit 1 when not payable."""
    from edge.finance.compliance import qualification_status
    from edge.finance.errors import FinanceError

    settings = _settings(config, data_dir=data_dir)
    today = _supplier_today(settings, on)
    with _reading(settings) as conn, _refused(FinanceError):
        status = qualification_status(conn, supplier, today)
    if as_json:
        typer.echo(json.dumps(status.to_json(), ensure_ascii=False, indent=2))
    else:
        verdict = "可付款 payable" if status.payable else "不可付款 not payable"
        typer.echo(f"{status.name} ({supplier}) {today}: {verdict}")
        zh, en = status.problems()
        for line_zh, line_en in zip(zh, en, strict=True):
            typer.echo(f"  {line_zh} / {line_en}")
        for state in status.expiring:
            typer.echo(f"  即将到期 expiring: {state.kind.value} on {state.expires_on} ({state.days_left} days)")
        if status.pending:
            typer.echo(f"  待确认 awaiting confirmation: {', '.join(f'#{p}' for p in status.pending)}")
    raise typer.Exit(0 if status.payable else 1)


@supplier_app.command("alerts")
def supplier_alerts(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    due: Annotated[
        bool, typer.Option("--due", help="First record the alerts due today (the box does this daily).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Paper expiry alerts (证照到期预警), newest first: 30 and 7 days ahead, and when expired."""
    from edge.finance.compliance import due_expiry_alerts, list_alerts

    settings = _settings(config, data_dir=data_dir)
    if due:
        conn = _open_db(settings, readonly=False)
        try:
            conn.execute("BEGIN IMMEDIATE")
            new = due_expiry_alerts(conn, _supplier_today(settings, None), tuple(settings.paper_expiry_warn_days))
            conn.execute("COMMIT")
        finally:
            conn.close()
        if not as_json:
            typer.echo(f"新预警 {len(new)} 条 / {len(new)} new alerts")
    with _reading(settings) as conn:
        alerts = list_alerts(conn, limit=10_000)
    if as_json:
        typer.echo(json.dumps([a.to_json() for a in alerts], ensure_ascii=False, indent=2))
        return
    if not alerts:
        typer.echo("没有证照到期预警 / no paper expiry alerts")
    for alert in alerts:
        typer.echo(f"#{alert.id} {alert.raised_on} {alert.message} / {alert.message_en}")


@app.command("config")
def show_config(config: ConfigOption = None) -> None:
    """Print the effective configuration (file < environment) as JSON."""
    settings = _settings(config)
    typer.echo(json.dumps(settings.model_dump(mode="json"), ensure_ascii=False, indent=2))


def main() -> None:
    app(prog_name="storebox")


# --- issue 4: device fleet commands (storebox device ...) ---


def _fleet_write(settings: Settings, fn: Any, *args: Any) -> Any:
    """`fn(conn, *args, "cli", now)` in one transaction (see `_write`)."""
    return _write(settings, lambda conn, now: fn(conn, *args, "cli", now))


@device_app.command("list")
def device_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print the devices as JSON.")] = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Devices with their status (online/offline as reported), last seen, room and open alert."""
    from edge.devices.fleet import device_records

    with _reading(_settings(config, data_dir=data_dir)) as conn:
        records = device_records(conn)
    if as_json:
        typer.echo(json.dumps(records, ensure_ascii=False, indent=2))
        return
    for r in records:
        state = r["status"]["state"] if r["status"] else "-"
        alert = f" ALERT:{r['alert']['state']}" if r["alert"] else ""
        typer.echo(
            f"{r['id']:<20} {r['kind']:<9} {'enabled' if r['enabled'] else 'DISABLED':<8} {state:<7}"
            f" seen {r['last_seen'] or '-':<25} room {r['location'] or '-'}{alert}"
        )


@device_app.command("rotate")
def device_rotate(
    device_id: DeviceIdArgument,
    password: Annotated[str | None, typer.Option(help="Generated and printed when omitted.")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Give a device a new MQTT password and print it; the old one stops working at once."""
    from edge.devices.fleet import new_device_password, rotate_credentials

    secret = password or new_device_password()
    _fleet_write(_settings(config, data_dir=data_dir), rotate_credentials, device_id, secret)
    typer.echo(json.dumps({"id": device_id, "username": device_id, "password": secret}))


def _set_enabled(device_id: str, enabled: bool, config: Path | None, data_dir: Path | None) -> None:
    from edge.devices.fleet import set_enabled

    record = _fleet_write(_settings(config, data_dir=data_dir), set_enabled, device_id, enabled)
    typer.echo(json.dumps({"id": record["id"], "enabled": record["enabled"]}))


@device_app.command("disable")
def device_disable(
    device_id: DeviceIdArgument,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Disable a device: it can no longer connect, and a running box closes its connection."""
    _set_enabled(device_id, False, config, data_dir)


@device_app.command("enable")
def device_enable(
    device_id: DeviceIdArgument,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Enable a disabled device again."""
    _set_enabled(device_id, True, config, data_dir)


@device_app.command("set")
def device_set(
    device_id: DeviceIdArgument,
    location: Annotated[str | None, typer.Option(help="The room it is in (a location code); '' clears.")] = None,
    profile: Annotated[str | None, typer.Option(help="Its firmware profile id; '' clears.")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Place a device in a room (a cold-room sensor's readings belong there) or name its firmware profile."""
    from edge.devices.fleet import update_placement

    changes = {k: v or None for k, v in (("location", location), ("profile", profile)) if v is not None}
    record = _fleet_write(_settings(config, data_dir=data_dir), update_placement, device_id, changes)
    typer.echo(json.dumps({k: record[k] for k in ("id", "kind", "location", "profile")}, ensure_ascii=False))


# --- issue 4: serial adapters and firmware profiles (storebox serial ..., storebox profiles ...) ---


def _profiles_folder(folder: Path | None, config: Path | None) -> Path | None:
    """The folder named, else the setting `firmware_profiles_dir` (None: the shipped firmware_profiles/)."""
    return folder if folder is not None else _settings(config).firmware_profiles_dir


@profiles_app.command("check")
def profiles_check(
    folder: Annotated[
        Path | None,
        typer.Argument(
            help="Folder of *.yaml profiles (default STOREBOX_FIRMWARE_PROFILES_DIR, else the shipped"
            " firmware_profiles/)."
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Validate every firmware profile of a folder; exit 2 with `file:line: reason` for each problem."""
    from edge.devices.profiles import read_profiles

    catalog = read_profiles(_profiles_folder(folder, config))
    for problem in catalog.problems:
        typer.echo(str(problem), err=True)
    if catalog.problems:
        typer.echo(f"固件档案有误 {len(catalog.problems)} 处 / {len(catalog.problems)} problems", err=True)
        raise typer.Exit(2)
    typer.echo(f"固件档案有效 / {len(catalog.profiles)} profiles ok in {catalog.folder}: {', '.join(catalog.profiles)}")


@profiles_app.command("list")
def profiles_list(
    folder: Annotated[
        Path | None, typer.Argument(help="Folder of *.yaml profiles (default STOREBOX_FIRMWARE_PROFILES_DIR).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOption = None,
) -> None:
    """List the firmware profiles: id, device kind, transport, events, commands, manual section."""
    from edge.devices.profiles import read_profiles

    catalog = read_profiles(_profiles_folder(folder, config))
    rows = [
        {
            "id": p.id,
            "device_kind": p.device_kind,
            "transport": p.transport.value,
            "vendor": p.vendor,
            "model": p.model,
            "events": list(p.emits),
            "commands": list(p.commands),
            "manual": {"document": p.manual.document, "section": p.manual.section},
        }
        for p in catalog.profiles.values()
    ]
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        for row in rows:
            events = ", ".join(row["events"]) or "-"
            typer.echo(f"{row['id']}  [{row['device_kind']}, {row['transport']}]  evt: {events}  {row['model']}")
    for problem in catalog.problems:
        typer.echo(str(problem), err=True)


@serial_app.command("run")
def serial_run(
    config: ConfigOption = None,
    mqtt_host: Annotated[str | None, typer.Option(help="Broker to publish to (default STOREBOX_MQTT_HOST).")] = None,
    mqtt_port: Annotated[int | None, typer.Option(help="Its port (default STOREBOX_MQTT_PORT).")] = None,
    profiles: Annotated[
        Path | None, typer.Option(help="Folder of firmware profiles (default STOREBOX_FIRMWARE_PROFILES_DIR).")
    ] = None,
    duration: Annotated[float | None, typer.Option(min=0.1, help="Stop after this many seconds.")] = None,
) -> None:
    """Run the serial adapters of `serial_devices` in this process (a gateway) until Ctrl-C or SIGTERM."""
    import logging
    import signal
    import threading

    from edge.devices.serial_adapter import run_gateway

    settings = _settings(config)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    if duration is not None:
        threading.Timer(duration, stop.set).start()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda signum, frame: stop.set())
    try:
        code = run_gateway(
            settings,
            mqtt_host=mqtt_host or settings.mqtt_host,
            mqtt_port=mqtt_port or settings.mqtt_port,
            stop=stop,
            profiles_dir=profiles,
            say=typer.echo,
        )
    finally:
        stop.set()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    raise typer.Exit(code)


# --- issue 4: ASNs, delivery notes, supplier API keys (storebox asn ..., storebox supplier ...) ---

# supplier API keys, supplier devices, connector templates, the OpenAPI subset (docs/supplier-api/README.md)
ScopeOption = Annotated[
    list[str] | None,
    typer.Option("--scope", help="Permission of the key (repeat); default all: supplier:asns:write, ..."),
]
KeyIdOption = Annotated[str | None, typer.Option("--key", help="Only this key id (default: every active key).")]
ActorOption = Annotated[str, typer.Option("--actor", help="who does it (audit trail)")]


def _issued(issued: Any, **extra: Any) -> None:
    shown = {**issued.info.to_json(issued.info.created_at), **extra, "api_key": issued.key}
    typer.echo(json.dumps(shown, ensure_ascii=False))
    typer.echo(
        "请立即把密钥交给供应商, 之后无法再次显示 / hand the key to the supplier now; it is not shown again", err=True
    )


@supplier_key_app.command("create")
def supplier_key_create(
    supplier: SupplierArgument,
    scope: ScopeOption = None,
    label: Annotated[str | None, typer.Option(help="what the key is for, e.g. the supplier's ERP")] = None,
    actor: ActorOption = "cli",
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Issue an API key for a supplier and print it once (JSON)."""
    from edge.devices.supplier_keys import create_api_key

    issued = _write(
        _settings(config, data_dir=data_dir),
        lambda conn, now: create_api_key(conn, supplier, now=now, actor=actor, scopes=scope, label=label),
    )
    _issued(issued)


@supplier_key_app.command("rotate")
def supplier_key_rotate(
    supplier: SupplierArgument,
    key: KeyIdOption = None,
    grace_minutes: Annotated[
        int, typer.Option(min=0, max=30 * 24 * 60, help="the old key keeps working this long (default 0: stops now)")
    ] = 0,
    actor: ActorOption = "cli",
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Rotate the supplier's keys one by one (or only --key): each active key gets a new key with its own label
    and scopes, never merged; print each new key once (one JSON line per key, `replaces` names the old one)."""
    from datetime import timedelta

    from edge.devices.supplier_keys import rotate_api_keys

    rotated = _write(
        _settings(config, data_dir=data_dir),
        lambda conn, now: rotate_api_keys(
            conn, supplier, now=now, actor=actor, key_id=key, grace=timedelta(minutes=grace_minutes)
        ),
    )
    for each in rotated:
        _issued(each.issued, replaces=each.replaces)


@supplier_key_app.command("revoke")
def supplier_key_revoke(
    supplier: SupplierArgument,
    key: KeyIdOption = None,
    actor: ActorOption = "cli",
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Revoke the supplier's active keys (or one) at once."""
    from edge.devices.supplier_keys import revoke_api_keys

    revoked = _write(
        _settings(config, data_dir=data_dir),
        lambda conn, now: revoke_api_keys(conn, supplier, now=now, actor=actor, key_id=key),
    )
    typer.echo(f"已吊销 {len(revoked)} 个密钥 / revoked {len(revoked)} keys: {' '.join(revoked)}")


@supplier_key_app.command("list")
def supplier_key_list(
    supplier: Annotated[str | None, typer.Argument(help="only this supplier")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """API keys (never their secrets) as JSON lines."""
    from datetime import UTC, datetime

    from edge.devices.supplier_keys import list_api_keys

    with _reading(_settings(config, data_dir=data_dir)) as conn:
        keys = list_api_keys(conn, supplier)
    now = datetime.now(UTC)
    for info in keys:
        typer.echo(json.dumps(info.to_json(now), ensure_ascii=False))


@supplier_app.command("link-device")
def supplier_link_device(
    supplier: SupplierArgument,
    device: Annotated[str, typer.Argument(help="a device of kind supplier (storebox device add ... --kind supplier)")],
    actor: ActorOption = "cli",
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Let a supplier device send ASNs (evt/asn) for the supplier over MQTT."""
    from edge.devices.supplier_keys import link_supplier_device

    _write(
        _settings(config, data_dir=data_dir),
        lambda conn, now: link_supplier_device(conn, device, supplier, now=now, actor=actor),
    )
    typer.echo(f"设备 {device} 代表供应商 {supplier} / device {device} speaks for supplier {supplier}")


@supplier_app.command("unlink-device")
def supplier_unlink_device(
    device: Annotated[str, typer.Argument(help="the supplier device")],
    actor: ActorOption = "cli",
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Stop a device sending ASNs for its supplier."""
    from edge.devices.supplier_keys import unlink_supplier_device

    supplier = _write(
        _settings(config, data_dir=data_dir),
        lambda conn, now: unlink_supplier_device(conn, device, now=now, actor=actor),
    )
    typer.echo(f"设备 {device} 不再代表供应商 {supplier} / device {device} no longer speaks for {supplier}")


@asn_template_app.command("list")
def asn_template_list(config: ConfigOption = None) -> None:
    """Connector templates the box offers (shipped and from asn_templates_dir); exit 2 if one is broken."""
    from edge.devices.asn_templates import list_templates

    loaded, issues = list_templates(_settings(config).asn_templates_dir)
    for template in loaded:
        typer.echo(f"{template.name}\t{template.format}\t{template.description}")
    for issue in issues:
        typer.echo(str(issue), err=True)
    if issues:
        raise typer.Exit(2)


@asn_template_app.command("check")
def asn_template_check(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="template files or folders (default: the box's own)")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Validate templates; each problem as file:line: reason, exit 2 when there is one."""
    from edge.devices.asn_templates import check_template_paths, packaged_templates

    if not paths:
        extra = _settings(config).asn_templates_dir
        paths = [Path(str(packaged_templates())), *([extra] if extra else [])]
    checked, issues = check_template_paths(paths)
    for issue in issues:
        typer.echo(str(issue), err=True)
    if issues:
        raise typer.Exit(2)
    typer.echo(f"{checked} 个模板无误 / {checked} templates ok")


@asn_template_app.command("convert")
def asn_template_convert(
    name: Annotated[str, typer.Argument(help="template name, or a path to a template file")],
    file: Annotated[Path, typer.Argument(help="the supplier's file", exists=True, dir_okay=False)],
    config: ConfigOption = None,
) -> None:
    """Read a supplier's file through a template and print the ASNs as JSON (nothing is recorded); exit 1 with
    every problem at its line when the file does not convert."""
    from datetime import date

    from edge.devices.asn_templates import AsnImportRejected, convert, find_template, load_template
    from edge.ledger.errors import DomainError

    try:
        as_path = Path(name)
        template = (
            load_template(as_path)
            if as_path.suffix == ".yaml"
            else find_template(name, _settings(config).asn_templates_dir)
        )
        found = convert(template, file.read_bytes(), today=date.today())
    except AsnImportRejected as err:
        for problem in err.problems:
            typer.echo(f"{file}: {problem.where}: {problem.message} / {problem.message_en}", err=True)
        raise typer.Exit(1) from None
    except DomainError as err:
        typer.echo(f"storebox: {err.message} / {err.message_en}", err=True)
        raise typer.Exit(2) from None
    body = [
        {
            "asn_id": a.asn_id,
            "po": a.po,
            "ship_date": a.ship_date.isoformat(),
            "note": a.note,
            "lines": [
                {
                    "code": ln.code,
                    "qty": ln.qty,
                    "unit": ln.unit,
                    "lot": ln.lot,
                    "expiry": ln.expiry.isoformat() if ln.expiry else None,
                    "price_fen": ln.price_fen,
                    "from": where,
                }
                for ln, where in zip(a.lines, a.line_sources, strict=True)
            ],
        }
        for a in found
    ]
    typer.echo(json.dumps(body, ensure_ascii=False, indent=2))


@supplier_app.command("openapi")
def supplier_openapi_command(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write here (default: print)")] = None,
) -> None:
    """The OpenAPI document of the supplier API only (docs/supplier-api/openapi.json)."""
    import tempfile
    from datetime import UTC, datetime

    from prometheus_client import CollectorRegistry

    from edge.web.api import create_api
    from edge.web.deps import ApiDeps
    from edge.web.routes.supplier_portal import supplier_openapi
    from edge.writer import LedgerWriter

    def unused() -> Any:
        raise RuntimeError("building the OpenAPI document needs no database")

    with tempfile.TemporaryDirectory() as folder:  # the app is only built, never served
        settings = Settings.model_validate({"data_dir": folder})
        deps = ApiDeps(
            settings=settings,
            writer=LedgerWriter(settings.db_path, context=unused),
            open_reader=unused,
            token_secret=b"-",
            metrics_registry=CollectorRegistry(),
            clock=lambda: datetime.now(UTC),
        )
        text = json.dumps(supplier_openapi(create_api(deps).openapi()), ensure_ascii=False, indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


# scan-to-receive: suppliers' signing keys, ASNs, delivery notes and drafts (docs/scan-to-receive.md)


@signing_key_app.command("set")
def signing_key_set(
    supplier: SupplierArgument,
    public_key: Annotated[str, typer.Option("--public-key", help="Ed25519 public key: base64url, hex or PEM")],
    replace: Annotated[bool, typer.Option("--replace", help="revoke the supplier's other keys")] = False,
    actor: ActorOption = "cli",
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Register the public key a supplier signs its delivery-note QR codes with (idempotent)."""
    from edge.devices.delivery_note import set_signing_key

    key = _write(
        _settings(config, data_dir=data_dir),
        lambda conn, now: set_signing_key(conn, supplier, public_key, actor, now, replace),
    )
    typer.echo(json.dumps(key.to_dict(), ensure_ascii=False))


@signing_key_app.command("revoke")
def signing_key_revoke(
    supplier: SupplierArgument,
    key_id: Annotated[str, typer.Argument(help="the key id (8 hex digits, printed in each note)")],
    actor: ActorOption = "cli",
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Revoke a signing key: notes signed with it are refused from now on."""
    from edge.devices.delivery_note import revoke_signing_key

    key = _write(
        _settings(config, data_dir=data_dir), lambda conn, now: revoke_signing_key(conn, supplier, key_id, actor, now)
    )
    typer.echo(json.dumps(key.to_dict(), ensure_ascii=False))


@signing_key_app.command("list")
def signing_key_list(
    supplier: Annotated[str | None, typer.Argument(help="only this supplier")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Signing keys on the box, as JSON lines."""
    from edge.devices.delivery_note import list_signing_keys

    with _reading(_settings(config, data_dir=data_dir)) as conn:
        keys = list_signing_keys(conn, supplier)
    for key in keys:
        typer.echo(json.dumps(key.to_dict(), ensure_ascii=False))


@asn_app.command("list")
def asn_list(
    supplier: Annotated[str | None, typer.Option(help="only this supplier's")] = None,
    po: Annotated[int | None, typer.Option(help="only ASNs of this purchase order (document id)")] = None,
    state: Annotated[str | None, typer.Option(help="open or received")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """ASNs, newest first, as JSON lines."""
    from edge.devices.asn import list_asns

    with _reading(_settings(config, data_dir=data_dir)) as conn:
        records = list_asns(conn, supplier=supplier, po_id=po, state=state, limit=10_000)
    for record in records:
        typer.echo(json.dumps(record.to_dict(), ensure_ascii=False))


@asn_app.command("show")
def asn_show(
    supplier: SupplierArgument,
    asn_id: Annotated[str, typer.Argument(help="the supplier's ASN id")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """One ASN with its lines, receipts and differences (JSON); exit 2 when there is none."""
    from edge.devices.asn import get_asn

    with _reading(_settings(config, data_dir=data_dir)) as conn:
        record = get_asn(conn, asn_id, supplier=supplier)
    if record is None:
        typer.echo(f"storebox: 发货通知不存在 / no such ASN: {supplier} {asn_id}", err=True)
        raise typer.Exit(2)
    typer.echo(json.dumps(record.to_dict(), ensure_ascii=False, indent=2))


@receiving_app.command("check-note")
def receiving_check_note(
    qr: Annotated[str, typer.Argument(help="the QR text as scanned (SBDN1:...)")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Read a delivery note and check its signature against the supplier's key on the box, without receiving it.

    Prints the note as JSON and whether it was already received; exit 2 (with the reason) for a note the box
    would refuse as forged, tampered, malformed or signed with an unknown or revoked key.
    """
    from edge.devices.delivery_note import check_note

    with _reading(_settings(config, data_dir=data_dir)) as conn, _refused():
        signed = check_note(conn, qr.strip("\r\n"))
        seen = conn.execute(
            "SELECT receipt_id FROM delivery_notes WHERE supplier = ? AND nonce = ?",
            (signed.note.supplier, signed.note.nonce),
        ).fetchone()
    note = signed.note
    body = {
        "supplier": note.supplier,
        "key_id": note.key_id,
        "asn_id": note.asn_id,
        "po_no": note.po_no,
        "issued_at": note.issued_at.isoformat(),
        "nonce": note.nonce,
        "lines": [
            [ln.item, ln.qty, ln.lot, ln.expiry.isoformat() if ln.expiry else None, ln.unit] for ln in note.lines
        ],
        "signature": "valid",
        "received": seen is not None and seen[0] is not None,
    }
    typer.echo(json.dumps(body, ensure_ascii=False, indent=2))


@receiving_app.command("drafts")
def receiving_drafts(
    state: Annotated[str | None, typer.Option(help="open, confirmed or cancelled")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Receipt drafts, newest first, as JSON lines."""
    from edge.devices.receiving import list_drafts

    with _reading(_settings(config, data_dir=data_dir)) as conn:
        drafts = list_drafts(conn, state=state, limit=10_000)
    for draft in drafts:
        typer.echo(json.dumps(draft, ensure_ascii=False))


# --- issue 5: replenishment and signals (storebox replenish ..., storebox signals ...), in edge/replenish_cli/ ---
# Imported last: the command modules use this module's options and helpers.
from edge.replenish_cli import replenish_app, signals_app  # noqa: E402

app.add_typer(replenish_app, name="replenish")
app.add_typer(signals_app, name="signals")

# --- issue 6: sync, cross-store transfers, HQ packages, backup (storebox sync|transfers|packages|backup ...) ---
from edge.sync_cli import backup_app, packages_app, sync_app, transfers_app  # noqa: E402

app.add_typer(sync_app, name="sync")
app.add_typer(transfers_app, name="transfers")
app.add_typer(packages_app, name="packages")
app.add_typer(backup_app, name="backup")

# --- issue 8: low-code rules and scenario modules (storebox rules|modules ...) ---
from edge.modules_cli import modules_app  # noqa: E402
from edge.rules_cli import rules_app as business_rules_app  # noqa: E402

app.add_typer(business_rules_app, name="rules")
app.add_typer(modules_app, name="modules")

if __name__ == "__main__":
    main()
