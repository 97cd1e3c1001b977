"""`storebox modules ...` commands (docs/modules.md): list, show, install a module directory, install the shipped
modules, enable, disable, roll back, remove. Safe while the box runs: each write is one SQLite transaction, and the
running box's module host follows the database within `modules_refresh_seconds`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from edge.modules_cli import modules_app
from edge.sync_cli.packages import _transact  # the CLI's one write transaction per command

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config file (also STOREBOX_CONFIG).", dir_okay=False)
]
DataDirOption = Annotated[Path | None, typer.Option("--data-dir", help="Overrides STOREBOX_DATA_DIR.")]
NameArgument = Annotated[str, typer.Argument(help="the module's name, e.g. near-expiry")]


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _echo(value: Any) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False, default=str))


@modules_app.command("list")
def list_(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Every module: name, version in force, state (JSON lines)."""
    from edge.cli import _open_db, _settings
    from edge.modules.store import list_modules

    settings = _settings(config, data_dir=data_dir)
    conn = _open_db(settings, readonly=False)
    try:
        for row in list_modules(conn):
            _echo(
                {
                    "name": row["name"],
                    "version": row["version"],
                    "state": row["state"],
                    "reason": row["reason"],
                    "source": row["source"],
                    "since": row["since"],
                }
            )
    finally:
        conn.close()


@modules_app.command()
def show(name: NameArgument, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """One module: state, versions, KPIs, recent decisions and failures (JSON)."""
    from edge.cli import _open_db, _refused, _settings
    from edge.modules.kpis import module_kpis
    from edge.modules.manifest import parse_manifest
    from edge.modules.store import history, module_row, recent_decisions, recent_failures

    settings = _settings(config, data_dir=data_dir)
    conn = _open_db(settings, readonly=False)
    try:
        with _refused():
            row = module_row(conn, name)
        out: dict[str, Any] = {k: v for k, v in row.items() if k != "directory"}
        if row["manifest"] and row["version"]:
            manifest = parse_manifest(row["manifest"])
            out["kpis"] = module_kpis(conn, name, int(row["version"]), manifest.kpis.window).to_dict()
        out["decisions"] = recent_decisions(conn, name, 20)
        out["failures"] = recent_failures(conn, name, 10)
        out["history"] = history(conn, name, 20)
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2, default=str))
    finally:
        conn.close()


@modules_app.command()
def install(
    directory: Annotated[Path, typer.Argument(help="a module directory (manifest.yaml + entry file)", file_okay=False)],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Install or upgrade a module from a directory (copied into the modules dir; a local, unsigned install)."""
    from edge.cli import _refused, _settings
    from edge.modules.host import install_from_dir, modules_dir_of

    settings = _settings(config, data_dir=data_dir)
    with _refused():
        _echo(install_from_dir(directory, modules_dir_of(settings), _transact(settings), _now(), actor="cli"))


@modules_app.command("install-shipped")
def install_shipped_(
    names: Annotated[list[str] | None, typer.Argument(help="only these (default: every shipped module)")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Install the modules shipped with the box (near-expiry, recipe-loss, new-product-burst) as local installs."""
    from edge.cli import _refused, _settings
    from edge.modules.host import install_shipped, modules_dir_of

    settings = _settings(config, data_dir=data_dir)
    with _refused():
        results = install_shipped(
            modules_dir_of(settings), _transact(settings), _now(), actor="cli", names=tuple(names or ())
        )
    for result in results:
        _echo(result)
    if any("error" in r for r in results):
        raise typer.Exit(2)


def _change(name: str, config: Path | None, data_dir: Path | None, fn: Any, *args: Any) -> None:
    from edge.cli import _refused, _settings

    settings = _settings(config, data_dir=data_dir)
    with _refused():
        _echo(_transact(settings)(fn, name, *args))


@modules_app.command()
def enable(name: NameArgument, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Enable a module (a failed one too, after its cause was fixed): its worker starts."""
    from edge.modules.store import set_state

    _change(name, config, data_dir, set_state, "enabled", "cli", _now(), None)


@modules_app.command()
def disable(name: NameArgument, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Disable a module: its worker stops, its decisions and KPIs stay."""
    from edge.modules.store import set_state

    _change(name, config, data_dir, set_state, "disabled", "cli", _now(), None)


@modules_app.command()
def rollback(name: NameArgument, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Return to the version in force before the current one (its files, its state, its params)."""
    from edge.modules.store import rollback_module

    _change(name, config, data_dir, rollback_module, "cli", _now(), None)


@modules_app.command()
def remove(name: NameArgument, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Take a module out of force; its versions, decisions and history stay on record."""
    from edge.modules.store import remove_by_user as remove_module

    _change(name, config, data_dir, remove_module, "cli", _now())
