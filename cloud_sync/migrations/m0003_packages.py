"""Aggregator schema: packages (filled by the packages part)."""

from __future__ import annotations

import sqlalchemy as sa


def upgrade(conn: sa.Connection) -> None:
    """Create this migration's tables."""
