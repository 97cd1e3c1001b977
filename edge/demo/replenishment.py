"""Demo data for replenishment (补货演示数据): filled in by the planner's owner in issue 5."""

from __future__ import annotations

import sqlite3
from typing import Any

from edge.demo.catalog import Catalog
from edge.ledger.posting import PostingContext


def seed_replenishment(conn: sqlite3.Connection, ctx: PostingContext, catalog: Catalog, settings: Any) -> None:
    """Seed item suppliers, sales history, signals and peer stock inside the demo seed's transaction."""
