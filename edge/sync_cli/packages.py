"""`storebox packages ...` commands (issue 6)."""

from __future__ import annotations

from edge.sync_cli import packages_app

__all__ = ["packages_app"]
