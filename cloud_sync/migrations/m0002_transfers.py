"""Aggregator schema: transfers (filled by the transfers part)."""

from __future__ import annotations

import sqlalchemy as sa


def upgrade(conn: sa.Connection) -> None:
    """Create this migration's tables."""
