"""Aggregator schema: cross-store transfers (transfers, transfer_parts)."""

from __future__ import annotations

import sqlalchemy as sa

from cloud_sync.tables import metadata
from cloud_sync.transfers.tables import TABLES


def upgrade(conn: sa.Connection) -> None:
    """Create this migration's tables."""
    metadata.create_all(conn, tables=TABLES)
