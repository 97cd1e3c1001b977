"""`storebox-cloud packages ...` commands."""

from __future__ import annotations

import typer

packages_app = typer.Typer(help="下发包 / packages: signing keys, publish, list.", no_args_is_help=True)
