"""`storebox replenish ...` and `storebox signals ...`: each part of issue 5 adds its commands in its own module."""

from __future__ import annotations

import typer

replenish_app = typer.Typer(
    help="补货 / replenishment: policies, the plan, suggestions, emergency requests.", no_args_is_help=True
)
signals_app = typer.Typer(
    help="外部信号 / outside signals: weather, promotions, online sales, delays, lead indicators.", no_args_is_help=True
)

# The command modules register on the two apps above when imported.
from edge.replenish_cli import emergency, plan, policy, signals  # noqa: E402

__all__ = ["emergency", "plan", "policy", "replenish_app", "signals", "signals_app"]
