"""Reversal (冲销): a mistake is corrected by a reversing document, never by changing the original."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.ledger.commands import DocType, Line, PostDocument, PostResult, ReverseDocument
from edge.ledger.verify import verify_ledger
from tests.edge.ledger.reference import ReferenceLedger
from tests.edge.ledger.sample_store import (
    ITEMS,
    LOCATIONS,
    STORES,
    SUPPLIERS,
    TODAY,
    balances,
    context,
    dump,
    fresh_ledger,
    post_committed,
)

Post = Callable[..., PostResult]


def account_totals(conn: sqlite3.Connection) -> dict[str, int]:
    rows = conn.execute("SELECT account, SUM(debit_fen - credit_fen) FROM voucher_lines GROUP BY account")
    return {r[0]: r[1] for r in rows if r[1]}


def voucher_lines(conn: sqlite3.Connection, document_id: int | None) -> list[tuple[str, int, int]]:
    return [
        tuple(r)
        for r in conn.execute(
            "SELECT l.account, l.debit_fen, l.credit_fen FROM voucher_lines l JOIN vouchers v ON v.id = l.voucher_id"
            " WHERE v.document_id = ? ORDER BY l.line_no",
            (document_id,),
        )
    ]


def stock_up(post: Post) -> None:
    """Cola on the floor and in the back room, milk in two lots in the cold room."""
    lines = (
        Line("A1", 30, price_fen=250),
        Line("A1", 12, price_fen=260, location="backroom"),
        Line("M1", 8, price_fen=545, lot="L1", location="cold"),
        Line("M1", 5, price_fen=550, lot="L2", location="cold"),
    )
    assert post(PostDocument("stock-up", DocType.RECEIPT, lines, counterparty="sup1")).ok


def test_reversing_a_receipt_right_away_restores_stock_and_every_account(
    conn: sqlite3.Connection, posted: Post
) -> None:
    stock_up(posted)
    before, accounts = balances(conn), account_totals(conn)
    receipt = posted(PostDocument("rc-2", DocType.RECEIPT, (Line("A1", 7, price_fen=299),), counterparty="sup2"))
    reversal = posted(ReverseDocument("rv-1", receipt.document_id, reason_text="供应商送错货"))
    assert reversal.ok and reversal.doc_no is not None and reversal.doc_no.startswith("RV")
    assert balances(conn) == before and account_totals(conn) == accounts
    # A red-letter voucher: the original's lines with negative figures.
    original = voucher_lines(conn, receipt.document_id)
    assert voucher_lines(conn, reversal.document_id) == [(a, -d, -c) for a, d, c in original]
    header = conn.execute("SELECT type, reverses_id, gross_fen FROM documents WHERE id = ?", (reversal.document_id,))
    assert tuple(header.fetchone()) == ("reversal", receipt.document_id, -7 * 299)


def test_reversing_twice_is_refused_as_already_reversed(conn: sqlite3.Connection, posted: Post) -> None:
    stock_up(posted)
    sale = posted(PostDocument("sa-1", DocType.SALE, (Line("A1", 3),)))
    first = posted(ReverseDocument("rv-1", sale.document_id))
    before = dump(conn)
    second = posted(ReverseDocument("rv-2", sale.document_id))
    assert (second.ok, second.code) == (False, "already_reversed")
    assert second.detail == {"document": sale.document_id, "reversed_by": first.document_id}
    assert {t: r for t, r in dump(conn).items() if t != "commands"} == {
        t: r for t, r in before.items() if t != "commands"
    }


def test_a_reversal_cannot_itself_be_reversed(posted: Post) -> None:
    stock_up(posted)
    sale = posted(PostDocument("sa-1", DocType.SALE, (Line("A1", 3),)))
    reversal = posted(ReverseDocument("rv-1", sale.document_id))
    result = posted(ReverseDocument("rv-2", reversal.document_id))
    assert (result.code, result.detail["document"]) == ("not_reversible", reversal.document_id)


def test_reversing_an_unknown_document_is_refused(posted: Post) -> None:
    result = posted(ReverseDocument("rv-1", 42))
    assert (result.code, result.detail) == ("unknown_document", {"document": 42})


def test_a_sale_with_a_standing_return_is_reversed_only_after_the_return(posted: Post) -> None:
    stock_up(posted)
    sale = posted(PostDocument("sa-1", DocType.SALE, (Line("A1", 3),)))
    back = posted(
        PostDocument("cr-1", DocType.CUSTOMER_RETURN, (Line("A1", 1),), ref_id=sale.document_id, reason="taste")
    )
    refused = posted(ReverseDocument("rv-1", sale.document_id))
    assert (refused.code, refused.detail["referenced_by"]) == ("not_reversible", back.doc_no)
    assert posted(ReverseDocument("rv-2", back.document_id)).ok
    assert posted(ReverseDocument("rv-3", sale.document_id)).ok


def test_a_transfer_out_received_at_the_other_end_is_reversed_only_after_the_transfer_in(posted: Post) -> None:
    stock_up(posted)
    out = posted(PostDocument("to-1", DocType.TRANSFER_OUT, (Line("A1", 5),), counterparty="s2"))
    into = posted(PostDocument("ti-1", DocType.TRANSFER_IN, (Line("A1", 5),), ref_id=out.document_id))
    assert posted(ReverseDocument("rv-1", out.document_id)).code == "not_reversible"
    assert posted(ReverseDocument("rv-2", into.document_id)).ok
    assert posted(ReverseDocument("rv-3", out.document_id)).ok


def test_a_purchase_order_can_be_reversed_even_after_goods_were_received_against_it(posted: Post) -> None:
    order = posted(PostDocument("po-1", DocType.PURCHASE_ORDER, (Line("A1", 24),), counterparty="sup1"))
    assert posted(PostDocument("rc-1", DocType.RECEIPT, (Line("A1", 24),), ref_id=order.document_id)).ok
    assert posted(ReverseDocument("rv-1", order.document_id)).ok
    late = posted(PostDocument("rc-2", DocType.RECEIPT, (Line("A1", 24),), ref_id=order.document_id))
    assert late.code == "invalid_command"  # the order is reversed


def test_reversing_a_receipt_whose_goods_were_sold_is_refused_for_want_of_stock(posted: Post) -> None:
    receipt = posted(PostDocument("rc-1", DocType.RECEIPT, (Line("A1", 10, price_fen=113),)))
    posted(PostDocument("sa-1", DocType.SALE, (Line("A1", 4),)))
    result = posted(ReverseDocument("rv-1", receipt.document_id))
    assert (result.code, result.detail["shortfall"]) == ("insufficient_stock", 4)


def test_reversing_a_receipt_takes_its_goods_back_at_their_original_value_where_it_can(
    conn: sqlite3.Connection, posted: Post
) -> None:
    cheap = posted(PostDocument("rc-1", DocType.RECEIPT, (Line("A1", 10, price_fen=113),)))  # 1000 fen
    posted(PostDocument("rc-2", DocType.RECEIPT, (Line("A1", 10, price_fen=339),)))  # 3000 fen
    posted(PostDocument("sa-1", DocType.SALE, (Line("A1", 5),)))  # at 200 each: 1000
    reversal = posted(ReverseDocument("rv-1", cheap.document_id))
    assert balances(conn) == {("A1", "floor", ""): (5, 2000)}
    assert [a for a, _, _ in voucher_lines(conn, reversal.document_id)] == ["1405", "220202"]


def test_reversal_that_empties_a_balance_takes_its_value_and_books_the_difference(
    conn: sqlite3.Connection, posted: Post
) -> None:
    posted(PostDocument("rc-1", DocType.RECEIPT, (Line("A1", 4, price_fen=113),)))  # 4 for 400
    dear = posted(PostDocument("rc-2", DocType.RECEIPT, (Line("A1", 4, price_fen=339),)))  # 4 for 1200
    posted(PostDocument("sa-1", DocType.SALE, (Line("A1", 4),)))  # at the average: 800, leaving 4 for 800
    reversal = posted(ReverseDocument("rv-1", dear.document_id))
    assert conn.execute("SELECT qty, value_fen FROM balances").fetchone()[:] == (0, 0)
    # The receipt's red-letter lines, then 400 less inventory taken than came in: a cost reduction.
    assert voucher_lines(conn, reversal.document_id) == [
        ("1405", -1200, 0),
        ("220202", 0, -1200),
        ("1405", 400, 0),
        ("5401", 0, 400),
    ]
    assert verify_ledger(conn)["ok"]


def test_a_stocktake_that_adds_to_and_takes_from_one_lot_is_reversed_right_away(
    conn: sqlite3.Connection, posted: Post
) -> None:
    """The reversal used to take back the gain before giving back the loss, and failed for want of stock."""
    posted(PostDocument("rc-1", DocType.RECEIPT, (Line("A1", 10, price_fen=113, lot="L"),)))
    before = balances(conn)
    counted = posted(PostDocument("st-1", DocType.STOCKTAKE, (Line("A1", 15, lot="L"), Line("A1", 0))))
    assert balances(conn) == {}
    reversal = posted(ReverseDocument("rv-1", counted.document_id))
    assert reversal.ok, reversal.message_en
    assert balances(conn) == before


# A document of any type posted on a stocked store, then reversed at once.
documents = st.sampled_from(
    [
        PostDocument("doc", DocType.RECEIPT, (Line("A1", 5, price_fen=277), Line("M1", 2, lot="L3", location="cold"))),
        PostDocument("doc", DocType.SALE, (Line("A1", 21), Line("M1", 9, location="cold")), payment="alipay"),
        PostDocument("doc", DocType.SALE, (Line("M1", 1, lot="L2"),), location="cold"),
        PostDocument("doc", DocType.CUSTOMER_RETURN, (Line("A1", 2),), reason="quality"),
        PostDocument("doc", DocType.SUPPLIER_RETURN, (Line("A1", 12, price_fen=199),), location="backroom"),
        PostDocument("doc", DocType.TRANSFER_OUT, (Line("M1", 10),), location="cold", counterparty="s2"),
        PostDocument("doc", DocType.TRANSFER_IN, (Line("A1", 6, price_fen=230),), counterparty="s2"),
        PostDocument("doc", DocType.STOCKTAKE, (Line("A1", 28), Line("A1", 15, location="backroom"))),
        PostDocument("doc", DocType.STOCKTAKE, (Line("M1", 0, location="cold"),)),
        PostDocument("doc", DocType.WRITE_OFF, (Line("M1", 13),), location="cold", reason="spoiled"),
        PostDocument("doc", DocType.WRITE_OFF, (Line("A1", 21), Line("A1", 12, location="backroom")), reason="theft"),
    ]
)


@settings(max_examples=30, deadline=None)
@given(documents, st.integers(0, 9))
def test_reversal_restores_stock_and_accounts_exactly_when_nothing_happened_in_between(
    document: PostDocument, sold_before: int
) -> None:
    with fresh_ledger() as conn:

        def post(command: PostDocument | ReverseDocument) -> PostResult:
            result: PostResult = post_committed(conn, command, context())
            return result

        stock_up(post)
        if sold_before:  # leave an uneven average behind
            assert post(PostDocument("sa-0", DocType.SALE, (Line("A1", sold_before),))).ok
        before, accounts = balances(conn), account_totals(conn)
        result = post(document)
        assert result.ok, result
        reversal = post(ReverseDocument("rv", result.document_id))
        assert reversal.ok, reversal
        assert balances(conn) == before
        assert account_totals(conn) == accounts
        assert verify_ledger(conn)["ok"]


trading = st.lists(
    st.one_of(
        st.tuples(st.just(DocType.RECEIPT), st.integers(1, 12), st.integers(0, 900)),
        st.tuples(st.just(DocType.SALE), st.integers(1, 12), st.none()),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(trading, st.data())
def test_reversing_a_receipt_after_other_trading_takes_back_what_the_reference_says(
    steps: list[tuple[DocType, int, int | None]], data: st.DataObject
) -> None:
    """At its original value while the balance keeps enough value, else at the average; emptying takes all."""
    reference = ReferenceLedger(ITEMS, {code: kind for code, (kind, _) in LOCATIONS.items()}, SUPPLIERS, STORES)
    with fresh_ledger() as conn:
        receipts = []
        for i, (doc_type, qty, price) in enumerate(steps):
            command = PostDocument(f"k{i}", doc_type, (Line("A1", qty, price_fen=price),))
            expected = reference.expect(command, TODAY)
            result = post_committed(conn, command, context())
            assert result.ok == (expected.refusal is None)
            if result.ok:
                reference.apply(result.document_id or 0, expected)
                if doc_type is DocType.RECEIPT:
                    receipts.append(result.document_id)
        if not receipts:
            return
        target = data.draw(st.sampled_from(receipts), label="reversed receipt")
        on_hand = reference.balances.get(("A1", "floor", ""), (0, 0))[0]
        received = reference.documents[target].moves[0].qty
        leave = data.draw(st.sampled_from([None, received, received + 1, received + 5]), label="leave on hand")
        if leave is not None and on_hand > leave:  # sell down to just what the receipt brought, or a little more
            command = PostDocument("sell-down", DocType.SALE, (Line("A1", on_hand - leave),))
            expected = reference.expect(command, TODAY)
            result = post_committed(conn, command, context())
            assert result.ok and expected.refusal is None
            reference.apply(result.document_id or 0, expected)
        reversal = ReverseDocument("rv", target)
        expected = reference.expect(reversal, TODAY)
        result = post_committed(conn, reversal, context())
        if expected.refusal is not None:
            assert (result.code, result.detail["shortfall"]) == (
                "insufficient_stock",
                expected.refusal.detail["shortfall"],
            )
            return
        assert result.ok, result
        moves = conn.execute("SELECT qty, value_fen FROM stock_moves WHERE document_id = ?", (result.document_id,))
        assert [tuple(m) for m in moves] == [(m.qty, m.value_fen) for m in expected.moves]
        reference.apply(result.document_id or 0, expected)
        assert balances(conn) == reference.balances
        assert verify_ledger(conn)["ok"]
