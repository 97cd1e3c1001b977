"""A line's total as charged (`Line.amount_fen`, a scale label's amount) is its gross; commands without it keep
the fingerprints they were posted with."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.ledger.commands import DocType, Line, PostDocument, PostResult
from edge.ledger.money import tax_included
from edge.ledger.posting import _fingerprint
from tests.edge.ledger.sample_store import context, fresh_ledger, post_committed

# Posted before amount_fen existed: this fingerprint is stored in the commands table of every box.
OLD_COMMAND = PostDocument(
    key="dev:pos-1:e-1",
    type=DocType.SALE,
    lines=(Line("6901234567892", 2, 350), Line("FR0011", 1250, None, "g", "L1", date(2024, 6, 1), "cold")),
    location="floor",
    payment="wechat",
    actor="pos-1",
    device="pos-1",
)
OLD_FINGERPRINT = "1217ef8bcdc43fed63354a6c66902401d689aa270e7656f4e4cbdcb37faab303"
OLD_LINE_REPR = "Line(code='x', qty=1, price_fen=None, unit=None, lot=None, expiry=None, location=None)"


def test_commands_without_an_amount_keep_their_fingerprint_and_repr() -> None:
    assert _fingerprint(OLD_COMMAND) == OLD_FINGERPRINT == hashlib.sha256(repr(OLD_COMMAND).encode()).hexdigest()
    assert repr(Line("x", 1)) == OLD_LINE_REPR
    assert repr(Line("x", 1, amount_fen=None)) == OLD_LINE_REPR


def test_a_line_with_an_amount_shows_it_and_changes_the_fingerprint() -> None:
    line = Line("x", 1, amount_fen=1999)
    assert repr(line) == OLD_LINE_REPR.removesuffix(")") + ", amount_fen=1999)"
    changed = PostDocument(key=OLD_COMMAND.key, type=DocType.SALE, lines=(line,))
    assert _fingerprint(changed) != _fingerprint(
        PostDocument(key=OLD_COMMAND.key, type=DocType.SALE, lines=(Line("x", 1),))
    )


def test_a_sale_line_with_an_amount_books_the_amount_as_its_gross(
    conn: sqlite3.Connection, posted: Callable[..., PostResult]
) -> None:
    posted(PostDocument(key="in", type=DocType.RECEIPT, lines=(Line("R1", 20000, price_fen=1),)))
    result = posted(PostDocument(key="s", type=DocType.SALE, lines=(Line("R1", 1250, unit="g", amount_fen=1999),)))
    assert result.ok, result
    line = conn.execute(
        "SELECT qty_base, gross_fen, tax_fen FROM document_lines WHERE document_id = ?", (result.document_id,)
    ).fetchone()
    assert tuple(line) == (1250, 1999, tax_included(1999, 900))
    header = conn.execute("SELECT gross_fen FROM documents WHERE id = ?", (result.document_id,)).fetchone()
    assert header[0] == 1999  # price 1 fen/g x 1250 g would be 1250
    revenue = conn.execute(
        "SELECT SUM(credit_fen) FROM voucher_lines l JOIN vouchers v ON v.id = l.voucher_id"
        " WHERE v.document_id = ? AND account = '5001'",
        (result.document_id,),
    ).fetchone()
    assert revenue[0] == 1999 - tax_included(1999, 900)


def test_a_receipt_line_with_an_amount_values_the_stock_at_it_net_of_tax(
    conn: sqlite3.Connection, posted: Callable[..., PostResult]
) -> None:
    result = posted(PostDocument(key="in", type=DocType.RECEIPT, lines=(Line("R1", 5000, amount_fen=4360),)))
    assert result.ok, result
    value = conn.execute("SELECT SUM(value_fen) FROM balances WHERE sku = 'R1'").fetchone()[0]
    assert value == 4360 - tax_included(4360, 900)


@pytest.mark.parametrize(
    ("doc_type", "amount", "field"),
    [
        (DocType.STOCKTAKE, 100, "amount_fen"),
        (DocType.WRITE_OFF, 100, "amount_fen"),
        (DocType.TRANSFER_OUT, 100, "amount_fen"),
        (DocType.SALE, -1, "amount_fen"),
        (DocType.SALE, True, "amount_fen"),
        (DocType.SALE, 10**14, "amount_fen"),
    ],
)
def test_an_amount_is_refused_where_lines_have_no_price_or_when_it_is_not_fen(
    posted: Callable[..., PostResult], doc_type: DocType, amount: object, field: str
) -> None:
    line = Line("R1", 10, amount_fen=amount)  # type: ignore[arg-type]
    result = posted(PostDocument(key="bad", type=doc_type, lines=(line,), reason="damaged", to_location="backroom"))
    assert not result.ok and result.code == "invalid_command"
    assert result.detail["field"] == field


@settings(max_examples=25, deadline=None)
@given(qty=st.integers(1, 5000), amount=st.integers(0, 10**7))
def test_the_gross_of_a_priced_line_is_its_amount_and_splits_into_net_and_tax(qty: int, amount: int) -> None:
    with fresh_ledger() as conn:
        ctx = context()
        post_committed(conn, PostDocument(key="in", type=DocType.RECEIPT, lines=(Line("R1", 5000, price_fen=1),)), ctx)
        result = post_committed(
            conn, PostDocument(key="s", type=DocType.SALE, lines=(Line("R1", qty, amount_fen=amount),)), ctx
        )
        assert result.ok, result
        gross, tax = conn.execute(
            "SELECT gross_fen, tax_fen FROM documents WHERE id = ?", (result.document_id,)
        ).fetchone()
        assert (gross, tax) == (amount, tax_included(amount, 900))
        debit, credit = conn.execute(
            "SELECT SUM(debit_fen), SUM(credit_fen) FROM voucher_lines l JOIN vouchers v ON v.id = l.voucher_id"
            " WHERE v.document_id = ?",
            (result.document_id,),
        ).fetchone()
        assert debit == credit
