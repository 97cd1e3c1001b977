"""A real store for the finance tests: every migration, the chart and shipped rules, the sample store's master data."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime
from pathlib import Path
from typing import Any

from edge.db import connect, migrate
from edge.finance.setup import posting_context
from edge.ledger.commands import Command, PostResult
from edge.ledger.posting import PostingContext
from tests.edge.ledger.sample_store import NOW, TODAY, post_committed, seed


def open_books(path: Path, chart: str = "small_enterprise") -> sqlite3.Connection:
    conn = connect(path, synchronous="NORMAL")
    migrate(conn)
    seed(conn, chart)
    return conn


def context(conn: sqlite3.Connection, business_date: date = TODAY, now: datetime = NOW, **kw: Any) -> PostingContext:
    return posting_context(conn, now, business_date, **kw)


def post_one(conn: sqlite3.Connection, command: Command, ctx: PostingContext | None = None) -> PostResult:
    result: PostResult = post_committed(conn, command, ctx or context(conn))
    return result


def voucher(conn: sqlite3.Connection, document_id: int | None) -> list[tuple[str, int, int]]:
    rows = conn.execute(
        "SELECT account, debit_fen, credit_fen FROM voucher_lines l JOIN vouchers v ON v.id = l.voucher_id"
        " WHERE v.document_id = ? ORDER BY line_no",
        (document_id,),
    ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def balance(conn: sqlite3.Connection, account: str) -> int:
    """Debit minus credit of an account over all vouchers, in fen."""
    return int(
        conn.execute(
            "SELECT COALESCE(SUM(debit_fen - credit_fen), 0) FROM voucher_lines WHERE account = ?", (account,)
        ).fetchone()[0]
    )
