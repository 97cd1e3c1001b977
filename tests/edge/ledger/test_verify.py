"""`ledger verify`: balances rebuilt from moves, balanced vouchers, one outbox row per document, 1405 reconciled."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.ledger.commands import DocType, Line, PostDocument, PostResult
from edge.ledger.verify import rebuild_balances, rebuilt_balances, verify_ledger
from tests.edge.ledger.sample_store import balances, copy_ledger

Post = Callable[..., PostResult]
REPORT_LISTS = ("balances", "invariants", "vouchers", "missing_vouchers", "outbox", "inventory_account", "audit")


def problems(report: dict[str, object]) -> dict[str, object]:
    return {k: report[k] for k in REPORT_LISTS if report[k]}


@pytest.fixture
def busy(conn: sqlite3.Connection, posted: Post) -> sqlite3.Connection:
    """A ledger that has seen a few documents of each kind."""
    for command in (
        PostDocument("rc-1", DocType.RECEIPT, (Line("A1", 48, price_fen=200), Line("M1", 12, location="cold"))),
        PostDocument("sa-1", DocType.SALE, (Line("A1", 5), Line("M1", 2, location="cold")), payment="card"),
        PostDocument("to-1", DocType.TRANSFER_OUT, (Line("A1", 10),), counterparty="s2"),
        PostDocument("st-1", DocType.STOCKTAKE, (Line("A1", 30),)),
        PostDocument("wo-1", DocType.WRITE_OFF, (Line("M1", 1),), location="cold", reason="damaged"),
        PostDocument("po-1", DocType.PURCHASE_ORDER, (Line("A1", 48),), counterparty="sup2"),
    ):
        assert posted(command).ok
    return conn


def test_a_posted_ledger_verifies_clean(busy: sqlite3.Connection) -> None:
    report = verify_ledger(busy)
    assert report["ok"], problems(report)
    assert all(report[k] == [] for k in REPORT_LISTS)
    assert report["checked"] == {"moves": 8, "balances": 3, "vouchers": 5, "documents": 6, "audit_rows": 6}


def test_an_empty_ledger_verifies_clean(conn: sqlite3.Connection) -> None:
    assert verify_ledger(conn)["ok"]


def test_balances_are_the_sums_of_their_moves(busy: sqlite3.Connection) -> None:
    stored = {k: v for k, v in rebuilt_balances(busy).items() if v != (0, 0)}
    assert stored == balances(busy)
    assert stored[("A1", "transit", "")] == (10, 1770)


def test_a_tampered_balance_is_reported_and_rebuild_restores_it(busy: sqlite3.Connection) -> None:
    right = balances(busy)
    busy.execute("UPDATE balances SET qty = qty - 3 WHERE sku = 'A1' AND location = 'floor'")
    busy.execute("DELETE FROM balances WHERE location = 'transit'")
    report = verify_ledger(busy)
    assert not report["ok"]
    assert [(m["location"], m["qty"], m["qty_from_moves"]) for m in report["balances"]] == [
        ("floor", 27, 30),
        ("transit", 0, 10),
    ]
    busy.execute("BEGIN")
    assert rebuild_balances(busy) == 3
    busy.execute("COMMIT")
    assert balances(busy) == right
    assert verify_ledger(busy)["ok"]


def test_a_voucher_line_added_by_hand_unbalances_the_voucher_and_the_inventory_account(
    busy: sqlite3.Connection,
) -> None:
    busy.execute("INSERT INTO voucher_lines (voucher_id, line_no, account, debit_fen) VALUES (1, 99, '1405', 100)")
    report = verify_ledger(busy)
    assert [(v["voucher_id"], v["debit_fen"] - v["credit_fen"]) for v in report["vouchers"]] == [(1, 100)]
    assert (
        report["inventory_account"][0]["account_balance_fen"] - report["inventory_account"][0]["stock_value_fen"] == 100
    )


def test_inventory_account_out_of_step_with_stock_value_is_reported_even_when_vouchers_balance(
    busy: sqlite3.Connection,
) -> None:
    busy.execute("INSERT INTO voucher_lines (voucher_id, line_no, account, debit_fen) VALUES (2, 98, '1405', 50)")
    busy.execute("INSERT INTO voucher_lines (voucher_id, line_no, account, credit_fen) VALUES (2, 99, '1901', 50)")
    report = verify_ledger(busy)
    assert problems(report).keys() == {"inventory_account"}


def test_a_document_without_its_voucher_or_outbox_row_is_reported(busy: sqlite3.Connection, tmp_path: Path) -> None:
    copy = copy_ledger(busy, tmp_path / "copy.db")
    copy.execute("PRAGMA foreign_keys = OFF")
    copy.execute("DELETE FROM vouchers WHERE document_id = 2")
    copy.execute("DELETE FROM outbox WHERE document_id = 3")
    report = verify_ledger(copy)
    assert [d["document_id"] for d in report["missing_vouchers"]] == [2]
    assert [(d["document_id"], d["outbox_rows"]) for d in report["outbox"]] == [(3, 0)]
    copy.close()


def test_a_stocktake_with_prices_but_no_difference_needs_no_voucher(conn: sqlite3.Connection, posted: Post) -> None:
    """verify used to demand a voucher of any document with a gross amount, a stocktake's included."""
    posted(PostDocument("rc-1", DocType.RECEIPT, (Line("A1", 5),)))
    counted = posted(PostDocument("st-1", DocType.STOCKTAKE, (Line("A1", 5, price_fen=300),)))
    assert counted.ok
    assert conn.execute("SELECT gross_fen FROM documents WHERE id = ?", (counted.document_id,)).fetchone()[0] == 1500
    report = verify_ledger(conn)
    assert report["ok"], problems(report)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE stock_moves SET qty = 0",
        "UPDATE stock_moves SET value_fen = value_fen + 1 WHERE id = 1",
        "DELETE FROM stock_moves WHERE id = 1",
        "UPDATE voucher_lines SET credit_fen = 0",
        "DELETE FROM voucher_lines",
        "UPDATE audit SET detail = '{}'",
        "DELETE FROM audit WHERE seq = 1",
        "DELETE FROM documents WHERE id = 1",
    ],
)
def test_moves_voucher_lines_audit_rows_and_documents_cannot_be_changed_or_deleted(
    busy: sqlite3.Connection, statement: str
) -> None:
    with pytest.raises(sqlite3.IntegrityError, match=r"append-only|never deleted"):
        busy.execute(statement)
    assert verify_ledger(busy)["ok"]
