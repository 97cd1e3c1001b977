"""A small real store with two months of business for the books tests (a temp SQLite file, real posting).

The worked example (all amounts in fen; cola A1 costs 2.00 excl. VAT, sells at 3.00 incl. 13% VAT):

- 2026-10-05 receipt of 100 A1 at 2.26 incl. VAT from sup1: Dr 1405 20000 / Cr 220202 20000
- 2026-10-06 purchase invoice of sup1, net 20000, VAT 2600: Dr 220202 20000, Dr 22210101 2600 / Cr 220201 22600
- 2026-11-05 sale of 10 A1 by WeChat: Dr 1012 3000 / Cr 5001 2655, Cr 22210102 345; Dr 5401 2000 / Cr 1405 2000
- 2026-11-06 payment of 100.00 to sup1: Dr 220201 10000 / Cr 1002 10000
- 2026-11-07 transfer out of 5 A1 to store s2: Dr 1402 1000 / Cr 1405 1000
- 2026-11-08 credit note (红字发票) of sup1, net 400, VAT 52: Dr 220202 -400, Dr 22210101 -52 / Cr 220201 -452
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime, time
from pathlib import Path

from edge.finance.setup import posting_context
from edge.ledger.commands import Command, DocType, Line, PostDocument, PostEntry, PostResult
from edge.ledger.posting import PostingContext
from tests.edge.ledger.sample_store import open_ledger, post_committed

OCT = date(2026, 10, 1)


def on(conn: sqlite3.Connection, day: date) -> PostingContext:
    """A posting context for a business day (the time of day does not matter to the books)."""
    return posting_context(conn, datetime.combine(day, time(10), tzinfo=UTC), day)


def post_ok(conn: sqlite3.Connection, command: Command, day: date) -> PostResult:
    result: PostResult = post_committed(conn, command, on(conn, day))
    assert result.ok, (command, result.message_en)
    return result


def receipt(key: str, qty: int, price_fen: int = 226, supplier: str = "sup1", sku: str = "A1") -> PostDocument:
    return PostDocument(key, DocType.RECEIPT, (Line(sku, qty, price_fen=price_fen),), counterparty=supplier)


def invoice(key: str, supplier: str, net: int, tax: int, estimate: int | None = None) -> PostEntry:
    amounts = (("estimate", net if estimate is None else estimate), ("net", net), ("tax", tax))
    return PostEntry(key, DocType.PURCHASE_INVOICE, amounts, counterparty=supplier, actor="会计小王")


def credit_note(key: str, supplier: str, net: int, tax: int) -> PostEntry:
    return PostEntry(key, DocType.CREDIT_NOTE, (("estimate", net), ("net", net), ("tax", tax)), counterparty=supplier)


def payment(key: str, supplier: str, paid: int) -> PostEntry:
    return PostEntry(key, DocType.SUPPLIER_PAYMENT, (("paid", paid),), counterparty=supplier)


def open_sample(path: Path) -> sqlite3.Connection:
    """The sample store of tests/edge/ledger with the worked example above posted."""
    conn = open_ledger(path)
    post_ok(conn, receipt("rc-1", 100), date(2026, 10, 5))
    post_ok(conn, invoice("pi-1", "sup1", 20000, 2600), date(2026, 10, 6))
    post_ok(conn, PostDocument("sa-1", DocType.SALE, (Line("A1", 10),), payment="wechat"), date(2026, 11, 5))
    post_ok(conn, payment("py-1", "sup1", 10000), date(2026, 11, 6))
    post_ok(conn, PostDocument("to-1", DocType.TRANSFER_OUT, (Line("A1", 5),), counterparty="s2"), date(2026, 11, 7))
    post_ok(conn, credit_note("cn-1", "sup1", 400, 52), date(2026, 11, 8))
    return conn
