"""Commands of `storebox replenish` (filled by its owner)."""

from __future__ import annotations

from edge.replenish_cli import replenish_app  # noqa: F401
