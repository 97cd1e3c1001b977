"""Lots: first-expiry-first-out for sales and transfers without a lot; expired lots are never sold."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.ledger.commands import DocType, Line, PostDocument, PostResult
from tests.edge.ledger.sample_store import MILK_CARTON, TODAY, balances, context, fresh_ledger, post_committed

Post = Callable[..., PostResult]


def day(offset: int) -> date:
    return TODAY + timedelta(days=offset)


def receive_milk(post: Post, lots: list[tuple[str, int, int]], key: str = "rc-milk") -> None:
    """Receive milk into the cold room: (lot, quantity, days until expiry) per line."""
    lines = tuple(Line("M1", qty, price_fen=545, lot=lot, expiry=day(days)) for lot, qty, days in lots)
    result = post(PostDocument(key, DocType.RECEIPT, lines, location="cold", counterparty="sup1"))
    assert result.ok, result


def moved(conn: sqlite3.Connection, result: PostResult) -> list[tuple[str, str, int]]:
    return [
        tuple(r)
        for r in conn.execute(
            "SELECT location, lot, qty FROM stock_moves WHERE document_id = ? ORDER BY id", (result.document_id,)
        )
    ]


def test_sale_without_lot_takes_the_earliest_expiry_first(conn: sqlite3.Connection, posted: Post) -> None:
    receive_milk(posted, [("L1", 4, 5), ("L2", 3, 2), ("L3", 10, 9)])
    sale = posted(PostDocument("sa-1", DocType.SALE, (Line(MILK_CARTON, 5),), location="cold"))
    assert moved(conn, sale) == [("cold", "L2", -3), ("cold", "L1", -2)]


def test_lots_without_expiry_go_last_and_equal_expiries_go_by_lot_number(
    conn: sqlite3.Connection, posted: Post
) -> None:
    posted(PostDocument("rc-1", DocType.RECEIPT, (Line("A1", 2, lot="Z9"), Line("A1", 2, lot="B2", expiry=day(30)))))
    posted(PostDocument("rc-2", DocType.RECEIPT, (Line("A1", 2, lot="A1", expiry=day(30)),)))
    sale = posted(PostDocument("sa-1", DocType.SALE, (Line("A1", 5),)))
    assert moved(conn, sale) == [("floor", "A1", -2), ("floor", "B2", -2), ("floor", "Z9", -1)]


def test_sale_without_lot_skips_expired_lots(conn: sqlite3.Connection, posted: Post) -> None:
    receive_milk(posted, [("OLD", 5, -1), ("NEW", 2, 3)])
    sale = posted(PostDocument("sa-1", DocType.SALE, (Line("M1", 2),), location="cold"))
    assert moved(conn, sale) == [("cold", "NEW", -2)]


def test_sale_of_more_than_the_unexpired_stock_is_refused_counting_only_sellable_lots(
    conn: sqlite3.Connection, posted: Post
) -> None:
    receive_milk(posted, [("OLD", 5, -1), ("NEW", 2, 3)])
    result = posted(PostDocument("sa-1", DocType.SALE, (Line("M1", 3),), location="cold"))
    assert (result.code, result.detail["available"], result.detail["shortfall"]) == ("insufficient_stock", 2, 1)


def test_sale_of_an_expired_lot_is_refused_with_lot_expired(conn: sqlite3.Connection, posted: Post) -> None:
    receive_milk(posted, [("OLD", 5, -1), ("NEW", 2, 3)])
    before = balances(conn)
    result = posted(PostDocument("sa-1", DocType.SALE, (Line("M1", 1, lot="OLD"),), location="cold"))
    assert (result.ok, result.code) == (False, "lot_expired")
    assert result.detail == {"item": "M1", "lot": "OLD", "expiry": day(-1).isoformat()}
    assert "OLD" in result.message and "OLD" in result.message_en
    assert balances(conn) == before


def test_sale_when_only_expired_lots_remain_is_refused_with_lot_expired(posted: Post) -> None:
    receive_milk(posted, [("OLD", 5, -2), ("OLDER", 1, -3)])
    result = posted(PostDocument("sa-1", DocType.SALE, (Line("M1", 1),), location="cold"))
    assert (result.code, result.detail["lot"]) == ("lot_expired", "OLDER")


def test_a_lot_is_sellable_on_its_expiry_date_and_not_the_day_after(posted: Post) -> None:
    receive_milk(posted, [("L1", 5, 0)])
    assert posted(PostDocument("sa-1", DocType.SALE, (Line("M1", 1),), location="cold")).ok
    tomorrow = context(day(1))
    assert posted(PostDocument("sa-2", DocType.SALE, (Line("M1", 1),), location="cold"), tomorrow).code == "lot_expired"


def test_transfer_out_without_lot_skips_expired_lots_too(conn: sqlite3.Connection, posted: Post) -> None:
    receive_milk(posted, [("OLD", 5, -1), ("NEW", 2, 3)])
    out = posted(PostDocument("to-1", DocType.TRANSFER_OUT, (Line("M1", 2),), location="cold", counterparty="s2"))
    assert moved(conn, out) == [("cold", "NEW", -2), ("transit", "NEW", 2)]
    refused = posted(PostDocument("to-2", DocType.TRANSFER_OUT, (Line("M1", 1, lot="OLD"),), location="cold"))
    assert refused.code == "lot_expired"


def test_expired_lots_can_be_written_off_and_returned_to_the_supplier(conn: sqlite3.Connection, posted: Post) -> None:
    receive_milk(posted, [("OLD", 5, -1), ("NEW", 2, 3)])
    write_off = posted(
        PostDocument("wo-1", DocType.WRITE_OFF, (Line("M1", 3, lot="OLD"),), location="cold", reason="expired")
    )
    assert moved(conn, write_off) == [("cold", "OLD", -3)]
    # Without a lot a supplier return takes all lots first-expiry-first-out, expired ones included.
    back = posted(PostDocument("sr-1", DocType.SUPPLIER_RETURN, (Line("M1", 3),), location="cold", counterparty="sup1"))
    assert moved(conn, back) == [("cold", "OLD", -2), ("cold", "NEW", -1)]


def test_receipt_without_lot_makes_a_lot_from_the_shelf_life(conn: sqlite3.Connection, posted: Post) -> None:
    posted(PostDocument("rc-1", DocType.RECEIPT, (Line("M1", 6),), location="cold"))
    expiry = day(7)  # M1 keeps 7 days
    # 6 x 4.20 = 2520 fen, VAT at 9% 208.07 -> 208
    assert balances(conn) == {("M1", "cold", expiry.strftime("%Y%m%d")): (6, 2312)}
    assert conn.execute("SELECT lot, expiry FROM lots").fetchall()[0][:] == (expiry.strftime("%Y%m%d"), str(expiry))


def test_a_lot_keeps_the_expiry_it_was_first_received_with(conn: sqlite3.Connection, posted: Post) -> None:
    receive_milk(posted, [("L1", 5, 4)])
    conflict = posted(PostDocument("rc-2", DocType.RECEIPT, (Line("M1", 1, lot="L1", expiry=day(6)),), location="cold"))
    assert (conflict.code, conflict.detail["lot"]) == ("invalid_command", "L1")
    assert posted(PostDocument("rc-3", DocType.RECEIPT, (Line("M1", 1, lot="L1"),), location="cold")).ok
    assert conn.execute("SELECT expiry FROM lots WHERE lot = 'L1'").fetchone()[0] == day(4).isoformat()


lot_specs = st.lists(
    st.tuples(st.integers(1, 6), st.none() | st.integers(-4, 8)),  # quantity, days until expiry (None: no expiry)
    min_size=1,
    max_size=5,
)


@settings(max_examples=40, deadline=None)
@given(lots=lot_specs, qty=st.integers(1, 25), days_later=st.integers(0, 5))
def test_any_sale_without_lot_takes_sellable_lots_first_expiry_first(
    lots: list[tuple[int, int | None]], qty: int, days_later: int
) -> None:
    with fresh_ledger() as conn:
        lines = tuple(
            Line("A1", n, price_fen=339, lot=f"L{i}", expiry=None if d is None else day(d))
            for i, (n, d) in enumerate(lots)
        )
        assert post_committed(conn, PostDocument("rc", DocType.RECEIPT, lines), context()).ok
        today = day(days_later)
        sale = post_committed(conn, PostDocument("sa", DocType.SALE, (Line("A1", qty),)), context(today))

        order = sorted(
            ((d is None, d or 0, f"L{i}"), n) for i, (n, d) in enumerate(lots) if d is None or day(d) >= today
        )
        sellable = sum(n for _, n in order)
        expired = [f"L{i}" for i, (_, d) in enumerate(lots) if d is not None and day(d) < today]
        if qty > sellable:
            if sellable == 0:
                first_expired = min(expired, key=lambda lot: (lots[int(lot[1:])][1], lot))
                assert (sale.code, sale.detail["lot"]) == ("lot_expired", first_expired)
            else:
                assert (sale.code, sale.detail["shortfall"]) == ("insufficient_stock", qty - sellable)
            return
        want, left = [], qty
        for (_, _, lot), n in order:
            if left:
                want.append((lot, -min(n, left)))
                left -= min(n, left)
        got = conn.execute("SELECT lot, qty FROM stock_moves WHERE document_id = ? ORDER BY id", (sale.document_id,))
        assert [tuple(r) for r in got] == want
