"""`storebox-cloud hq ...` commands."""

from __future__ import annotations

import typer

hq_app = typer.Typer(help="总部 / HQ: API tokens, queries, exports.", no_args_is_help=True)
