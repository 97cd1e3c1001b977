"""`storebox transfers ...` commands (issue 6)."""

from __future__ import annotations

from edge.sync_cli import transfers_app

__all__ = ["transfers_app"]
