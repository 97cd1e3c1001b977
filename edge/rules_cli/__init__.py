"""`storebox rules ...`: low-code rules (docs/rules.md)."""

from __future__ import annotations

import typer

rules_app = typer.Typer(
    help="Low-code business rules: write, review, dry-run, activate, packs (业务规则).", no_args_is_help=True
)

# The commands register on the app above when imported.
from edge.rules_cli import commands  # noqa: E402

__all__ = ["commands", "rules_app"]
