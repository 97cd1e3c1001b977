"""Transfers derived from ingested outbox rows (filled by the transfers part)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa


def apply_rows(conn: sa.Connection, store: str, rows: Sequence[dict[str, Any]]) -> None:
    """Called by the ingest inside the batch's transaction, after the core facts, with the batch's rows in order."""
