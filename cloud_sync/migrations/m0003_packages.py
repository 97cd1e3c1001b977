"""Aggregator schema: signed packages and what each store did with them (docs/packages.md)."""

from __future__ import annotations

import sqlalchemy as sa

from cloud_sync.packages.tables import TABLES
from cloud_sync.tables import metadata


def upgrade(conn: sa.Connection) -> None:
    """Create this migration's tables."""
    metadata.create_all(conn, tables=TABLES)
