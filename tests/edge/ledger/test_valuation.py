"""Moving-average valuation (移动加权平均): issue cost = round(value * qty_out / qty_on_hand), half-up."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.ledger.commands import DocType, Line, PostDocument, PostResult
from tests.edge.ledger.reference import half_up, vat_included
from tests.edge.ledger.sample_store import balances, context, fresh_ledger, post_committed

Post = Callable[..., PostResult]


def move_values(conn: sqlite3.Connection, result: PostResult) -> list[int]:
    rows = conn.execute("SELECT value_fen FROM stock_moves WHERE document_id = ? ORDER BY id", (result.document_id,))
    return [r[0] for r in rows]


def test_issue_that_empties_balance_takes_remaining_value(conn: sqlite3.Connection, posted: Post) -> None:
    # 3 cans worth 100 fen: one at 1.13 (VAT 13 fen) and two free ones.
    posted(PostDocument("rc-1", DocType.RECEIPT, (Line("A1", 1, price_fen=113), Line("A1", 2, price_fen=0))))
    assert balances(conn) == {("A1", "floor", ""): (3, 100)}
    taken = [move_values(conn, posted(PostDocument(f"sa-{i}", DocType.SALE, (Line("A1", 1),))))[0] for i in range(3)]
    # 100/3 = 33.33 -> 33; 67/2 = 33.5 -> 34; the last can takes the 33 that are left.
    assert taken == [-33, -34, -33]
    assert conn.execute("SELECT qty, value_fen FROM balances").fetchone()[:] == (0, 0)


def test_stocktake_gain_is_valued_at_the_balances_average(conn: sqlite3.Connection, posted: Post) -> None:
    posted(PostDocument("rc-1", DocType.RECEIPT, (Line("A1", 7, price_fen=250),)))  # 1750 gross, VAT 201, 1549
    gain = posted(PostDocument("st-1", DocType.STOCKTAKE, (Line("A1", 10),)))
    assert move_values(conn, gain) == [half_up(1549 * 3, 7)] == [664]


def test_stocktake_gain_where_the_item_is_not_is_valued_at_its_average_elsewhere(
    conn: sqlite3.Connection, posted: Post
) -> None:
    posted(PostDocument("rc-1", DocType.RECEIPT, (Line("A1", 7, price_fen=250),)))
    gain = posted(PostDocument("st-1", DocType.STOCKTAKE, (Line("A1", 2),), location="backroom"))
    assert move_values(conn, gain) == [half_up(1549 * 2, 7)] == [443]


def test_stocktake_gain_of_an_item_never_stocked_is_valued_at_its_net_cost_price(
    conn: sqlite3.Connection, posted: Post
) -> None:
    gain = posted(PostDocument("st-1", DocType.STOCKTAKE, (Line("G1", 4),)))
    net_cost = 777 - vat_included(777, 300)  # tea: cost 7.77 incl. 3% VAT -> 23 fen VAT
    assert move_values(conn, gain) == [4 * net_cost] == [4 * 754]


def test_customer_return_without_a_sale_comes_back_at_the_average(conn: sqlite3.Connection, posted: Post) -> None:
    posted(PostDocument("rc-1", DocType.RECEIPT, (Line("A1", 7, price_fen=250),)))
    back = posted(PostDocument("cr-1", DocType.CUSTOMER_RETURN, (Line("A1", 2),), reason="taste"))
    assert move_values(conn, back) == [443]


def test_lines_of_one_document_are_costed_one_after_the_other(conn: sqlite3.Connection, posted: Post) -> None:
    posted(PostDocument("rc-1", DocType.RECEIPT, (Line("A1", 7, price_fen=250),)))
    sale = posted(PostDocument("sa-1", DocType.SALE, (Line("A1", 2), Line("A1", 5))))
    assert move_values(conn, sale) == [-half_up(1549 * 2, 7), -(1549 - half_up(1549 * 2, 7))]
    assert balances(conn) == {}


# One item at one place: receipts at random prices, issues of random sizes by sale, write-off and stocktake.
steps = st.lists(
    st.one_of(
        st.tuples(st.just("receive"), st.integers(1, 40), st.integers(0, 5000)),
        st.tuples(st.just("sell"), st.integers(1, 40), st.just(0)),
        st.tuples(st.just("write_off"), st.integers(1, 40), st.just(0)),
        st.tuples(st.just("count"), st.integers(0, 60), st.just(0)),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=40, deadline=None)
@given(steps)
def test_every_issue_is_costed_at_the_moving_average_of_an_independent_model(steps: list[tuple[str, int, int]]) -> None:
    with fresh_ledger() as conn:
        qty, value = 0, 0  # the model
        for i, (kind, n, price) in enumerate(steps):
            if kind == "receive":
                command = PostDocument(f"k{i}", DocType.RECEIPT, (Line("E1", n, price_fen=price),))
            elif kind == "sell":
                command = PostDocument(f"k{i}", DocType.SALE, (Line("E1", n),))
            elif kind == "write_off":
                command = PostDocument(f"k{i}", DocType.WRITE_OFF, (Line("E1", n),), reason="damaged")
            else:
                command = PostDocument(f"k{i}", DocType.STOCKTAKE, (Line("E1", n),))
            result = post_committed(conn, command, context())
            if kind == "receive":
                want = [n * price]  # eggs carry 0% VAT
            elif kind == "count" and n > qty:
                gain = n - qty
                want = [half_up(value * gain, qty) if qty else gain * 45]
            else:
                out = qty - n if kind == "count" else n
                if out > qty:
                    assert (result.code, result.detail["shortfall"]) == ("insufficient_stock", out - qty)
                    continue
                want = [-(value if out == qty else half_up(value * out, qty))] if out else []
            assert result.ok, result
            assert move_values(conn, result) == want
            if kind == "receive":
                qty += n
            elif kind == "count":
                qty = n
            else:
                qty -= n
            value += sum(want)
            assert balances(conn) == ({("E1", "floor", ""): (qty, value)} if (qty, value) != (0, 0) else {})
            assert qty > 0 or value == 0
