"""`storebox backup ...` commands (issue 6)."""

from __future__ import annotations

from edge.sync_cli import backup_app

__all__ = ["backup_app"]
