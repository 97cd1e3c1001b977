"""Aggregator schema: scenario-module rollouts, the stores' KPI reports and the rollouts' events (docs/canary.md)."""

from __future__ import annotations

import sqlalchemy as sa

from cloud_sync.modules.tables import TABLES
from cloud_sync.tables import metadata


def upgrade(conn: sa.Connection) -> None:
    """Create this migration's tables."""
    metadata.create_all(conn, tables=TABLES)
