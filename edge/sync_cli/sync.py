"""`storebox sync ...` commands (issue 6)."""

from __future__ import annotations

from edge.sync_cli import sync_app

__all__ = ["sync_app"]
