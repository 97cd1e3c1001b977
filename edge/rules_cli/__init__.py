"""`storebox rules ...`: low-code rules (docs/rules.md)."""

from __future__ import annotations

import typer

rules_app = typer.Typer(
    help="Low-code business rules: write, review, dry-run, activate, packs (业务规则).", no_args_is_help=True
)
