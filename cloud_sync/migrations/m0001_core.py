"""Aggregator schema 1: stores and keys, batches and sync state, the facts HQ reads."""

from __future__ import annotations

import sqlalchemy as sa

from cloud_sync.tables import CORE_TABLES, metadata


def upgrade(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=list(CORE_TABLES))
