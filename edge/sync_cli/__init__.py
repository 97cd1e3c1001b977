"""`storebox sync ...`, `storebox transfers ...`, `storebox packages ...`, `storebox backup` and `storebox restore`
(issue 6): each part adds its commands in its own module."""

from __future__ import annotations

import typer

sync_app = typer.Typer(
    help="同步 / sync with the aggregator: state, push now, keys, totals check.", no_args_is_help=True
)
transfers_app = typer.Typer(
    help="门店调拨 / cross-store transfers: other stores' stock, incoming and outgoing transfers.", no_args_is_help=True
)
packages_app = typer.Typer(
    help="总部下发包 / HQ packages: price lists, rule packs, models, firmware profiles, scenario modules.",
    no_args_is_help=True,
)
backup_app = typer.Typer(help="备份与恢复 / backup and restore of the data dir.", no_args_is_help=True)

# The command modules register on the apps above when imported.
from edge.sync_cli import backup, packages, sync, transfers  # noqa: E402

__all__ = ["backup", "backup_app", "packages", "packages_app", "sync", "sync_app", "transfers", "transfers_app"]
