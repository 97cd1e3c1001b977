"""Commands of `storebox signals` (filled by its owner)."""

from __future__ import annotations

from edge.replenish_cli import signals_app  # noqa: F401
