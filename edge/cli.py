"""`storebox ...` commands: one per capability of the box."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path
from typing import Annotated, Any

import typer

from edge.config import ConfigError, Settings, load_settings

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
app.add_typer(ledger_app, name="ledger")
app.add_typer(user_app, name="user")
app.add_typer(device_app, name="device")

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config file (also STOREBOX_CONFIG).", dir_okay=False)
]
DataDirOption = Annotated[Path | None, typer.Option("--data-dir", help="Overrides STOREBOX_DATA_DIR.")]


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
    """Apply pending schema migrations and exit."""
    settings = _settings(config, data_dir=data_dir)
    from edge.db import connect
    from edge.db import migrate as apply

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    conn = connect(settings.db_path, synchronous=settings.sqlite_synchronous)
    applied = apply(conn)
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

    conn = _open_db(settings, readonly=True)
    report = verify_ledger(conn, allow_negative=settings.allow_negative_stock)
    conn.close()
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
    from edge.security.devices import create_device

    secret = _password(password)
    _add_credential(
        _settings(config, data_dir=data_dir), lambda c: create_device(c, device_id, kind, secret), device_id, secret
    )
    typer.echo(json.dumps({"id": device_id, "kind": kind, "username": device_id, "password": secret}))


@app.command("config")
def show_config(config: ConfigOption = None) -> None:
    """Print the effective configuration (file < environment) as JSON."""
    settings = _settings(config)
    typer.echo(json.dumps(settings.model_dump(mode="json"), ensure_ascii=False, indent=2))


def main() -> None:
    app(prog_name="storebox")


if __name__ == "__main__":
    main()
