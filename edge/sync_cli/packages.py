"""`storebox packages ...` commands (issue 6, docs/packages.md): what is installed, install a package file (an
offline box, from a USB stick), roll back, history. Safe while the box runs: writes take SQLite's write lock."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from edge.sync_cli import packages_app

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config file (also STOREBOX_CONFIG).", dir_okay=False)
]
DataDirOption = Annotated[Path | None, typer.Option("--data-dir", help="Overrides STOREBOX_DATA_DIR.")]


def _transact(settings: Any) -> Any:
    """transact(fn, *args): fn(conn, *args) in one write transaction of its own (refusals roll back)."""
    from edge.cli import _open_db

    def transact(fn: Any, *args: Any) -> Any:
        conn: sqlite3.Connection = _open_db(settings, readonly=False)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn, *args)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result
        finally:
            conn.close()

    return transact


def _reconcile(settings: Any) -> None:
    from edge.cli import _reading
    from edge.sync.packages import reconcile

    if settings.db_path.exists():
        with _reading(settings) as conn:
            for line in reconcile(settings.packages_dir, conn):
                typer.echo(f"已修复链接 / link repaired: {line}", err=True)


@packages_app.command("list")
def list_(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """The version in force of every package (JSON lines)."""
    from edge.cli import _reading, _settings
    from edge.sync.packages import list_current

    settings = _settings(config, data_dir=data_dir)
    _reconcile(settings)
    with _reading(settings) as conn:
        for row in list_current(conn):
            typer.echo(json.dumps(row, ensure_ascii=False))


@packages_app.command()
def install(
    file: Annotated[Path, typer.Argument(help="a package file signed by HQ", exists=True, dir_okay=False)],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Verify and install a package file (the same checks as a pulled one: HQ's signature, store, version)."""
    from edge.cli import _open_db, _refused, _settings
    from edge.db import connect
    from edge.sync.packages import install_package

    settings = _settings(config, data_dir=data_dir)
    _open_db(settings, readonly=False).close()  # migrated
    _reconcile(settings)
    with _refused():
        outcome = install_package(
            file.read_bytes(),
            settings,
            _transact(settings),
            lambda: connect(settings.db_path, readonly=True),
            lambda: datetime.now(UTC),
            actor="cli",
            source="file",
        )
    typer.echo(
        json.dumps(
            {
                "kind": outcome.kind,
                "name": outcome.name,
                "version": outcome.version,
                "previous": outcome.previous,
                "directory": outcome.directory,
                **outcome.summary,
            },
            ensure_ascii=False,
        )
    )


@packages_app.command()
def rollback(
    kind: Annotated[str, typer.Argument(help="price_list | rule_pack | model | firmware_profile | module")],
    name: Annotated[str, typer.Argument(help="the package's name")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Return KIND NAME to the version in force before the current one (recorded, reported upstream)."""
    from edge.cli import _open_db, _refused, _settings
    from edge.sync.packages import rollback_package

    settings = _settings(config, data_dir=data_dir)
    _open_db(settings, readonly=False).close()
    _reconcile(settings)
    with _refused():
        result = rollback_package(
            settings, _transact(settings), kind, name, lambda: datetime.now(UTC), actor="cli", source="cli"
        )
    typer.echo(json.dumps(result, ensure_ascii=False))


@packages_app.command()
def history(
    limit: Annotated[int, typer.Option(help="newest first, at most this many")] = 50,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Installs, failures and rollbacks, newest first (JSON lines)."""
    from edge.cli import _reading, _settings
    from edge.sync.packages import list_history

    settings = _settings(config, data_dir=data_dir)
    with _reading(settings) as conn:
        for row in list_history(conn, limit):
            typer.echo(json.dumps(row, ensure_ascii=False))


__all__ = ["packages_app"]
