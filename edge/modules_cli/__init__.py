"""`storebox modules ...`: scenario modules (docs/modules.md)."""

from __future__ import annotations

import typer

modules_app = typer.Typer(
    help="Scenario modules: install, enable, disable, remove, KPIs (场景模块).", no_args_is_help=True
)

# The commands register on modules_app when imported.
from edge.modules_cli import commands  # noqa: E402

__all__ = ["commands", "modules_app"]
