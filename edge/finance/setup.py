"""Setting up the books of a database: the chart of accounts and the shipped voucher rule versions."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime
from typing import Any

from edge.finance.chart import install_chart, load_chart
from edge.finance.rulebook import install_shipped, rule_book
from edge.ledger.posting import PostingContext
from edge.ledger.vouchers import RuleBook


def prepare_books(conn: sqlite3.Connection, chart: str = "small_enterprise", now: datetime | None = None) -> RuleBook:
    """Install the chart (a template name or a JSON file) and its shipped rule versions; idempotent.

    The caller owns the transaction. Returns the rule book that reads the versions from the database.
    """
    loaded = load_chart(chart)
    install_chart(conn, loaded)
    install_shipped(conn, loaded.standard or "small_enterprise", now or datetime.now(UTC))
    return rule_book()


def posting_context(
    conn: sqlite3.Connection,
    now: datetime,
    business_date: date | None = None,
    *,
    rules: RuleBook | None = None,
    **kw: Any,
) -> PostingContext:
    """A posting context over the rule book of this database (for scripts and tests)."""
    del conn  # the rule book reads the database it is used with
    return PostingContext(now=now, business_date=business_date or now.date(), rules=rules or rule_book(), **kw)
