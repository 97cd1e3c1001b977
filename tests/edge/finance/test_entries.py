"""Supplier payments: booked by rule, and only to suppliers whose papers are complete and who are not frozen."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.finance import compliance as cab
from edge.finance import entries
from edge.finance.errors import PapersIncomplete, SupplierFrozen
from edge.ledger.commands import PostResult
from tests.edge.finance.books_store import balance, context, open_books, voucher
from tests.edge.finance.test_compliance import complete_cabinet, confirm
from tests.edge.ledger.sample_store import NOW


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = open_books(tmp_path / "books.db")
    yield connection
    connection.close()


def pay(conn: sqlite3.Connection, key: str, amount_fen: int, **kw: object) -> PostResult:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = entries.pay_supplier(conn, context(conn), entries.Payment(key, "sup1", amount_fen, **kw))  # type: ignore[arg-type]
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def test_a_supplier_with_complete_papers_is_paid_by_bank(conn: sqlite3.Connection) -> None:
    complete_cabinet(conn)
    result = pay(conn, "py-1", 9600, actor="accountant")
    assert result.ok, result
    assert voucher(conn, result.document_id) == [("220201", 9600, 0), ("1002", 0, 9600)]
    assert balance(conn, "220201") == 9600  # paid ahead of any invoice: the supplier owes us


def test_payment_is_refused_with_what_is_missing_and_nothing_is_written(conn: sqlite3.Connection) -> None:
    confirm(conn, "sup1", cab.PaperKind.BUSINESS_LICENCE)
    documents = conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
    with pytest.raises(PapersIncomplete) as refused:
        pay(conn, "py-1", 9600)
    assert "bank_account" in str(refused.value.detail) and "general_taxpayer" in str(refused.value.detail)
    assert conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0] == documents


def test_a_frozen_supplier_is_not_paid_but_a_replay_answers_the_first_payment(conn: sqlite3.Connection) -> None:
    complete_cabinet(conn)
    first = pay(conn, "py-1", 500)
    conn.execute("BEGIN IMMEDIATE")
    cab.freeze_supplier(conn, "sup1", "对账差异待查 reconciliation difference", "manager", NOW)
    conn.execute("COMMIT")
    with pytest.raises(SupplierFrozen):
        pay(conn, "py-2", 500)
    again = pay(conn, "py-1", 500)
    assert again.replayed and again.document_id == first.document_id


@pytest.mark.parametrize("amount", [0, -1, 10**13])
def test_a_payment_amount_outside_1_fen_to_ten_billion_yuan_is_refused(conn: sqlite3.Connection, amount: int) -> None:
    complete_cabinet(conn)
    with pytest.raises(entries.InvalidPayment):
        pay(conn, "py-1", amount)
