"""Posting each document type: worked examples in fen, and refusals that leave nothing behind."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

import pytest

from edge.ledger.commands import DocType, Line, PostDocument, PostResult, ReverseDocument
from edge.ledger.posting import PostingContext, post
from edge.ledger.verify import verify_ledger
from tests.edge.ledger.sample_store import COLA_CAN, COLA_CASE, balances, context, dump

Post = Callable[..., PostResult]


def voucher_of(conn: sqlite3.Connection, document_id: int | None) -> list[tuple[str, int, int]]:
    return [
        tuple(r)
        for r in conn.execute(
            "SELECT l.account, l.debit_fen, l.credit_fen FROM voucher_lines l JOIN vouchers v ON v.id = l.voucher_id"
            " WHERE v.document_id = ? ORDER BY l.line_no",
            (document_id,),
        )
    ]


def moves_of(conn: sqlite3.Connection, document_id: int | None) -> list[tuple[Any, ...]]:
    return [
        tuple(r)
        for r in conn.execute(
            "SELECT sku, location, lot, qty, value_fen FROM stock_moves WHERE document_id = ? ORDER BY id",
            (document_id,),
        )
    ]


def receive_two_cases_of_cola(post: Post, key: str = "rc-1") -> PostResult:
    """扫码即入库: the case barcode, 2 cases at 48.00 a case incl. 13% VAT."""
    result = post(
        PostDocument(key, DocType.RECEIPT, (Line(COLA_CASE, 2, price_fen=4800),), counterparty="sup1", actor="keeper")
    )
    assert result.ok, result
    return result


def test_receipt_of_two_cases_at_48_yuan_books_8496_fen_inventory_estimated_until_invoiced(
    conn: sqlite3.Connection, posted: Post
) -> None:
    result = receive_two_cases_of_cola(posted)
    assert result.doc_no == "RC20261125-000001"
    line = conn.execute("SELECT unit, qty, qty_base, price_fen, gross_fen, tax_fen FROM document_lines").fetchone()
    assert tuple(line) == ("箱", 2, 48, 4800, 9600, 1104)
    assert moves_of(conn, result.document_id) == [("A1", "floor", "", 48, 8496)]
    assert balances(conn) == {("A1", "floor", ""): (48, 8496)}
    # 暂估入账: the input VAT (1104) is booked when the invoice is matched, not on receipt.
    assert voucher_of(conn, result.document_id) == [("1405", 8496, 0), ("220202", 0, 8496)]
    assert [(s.sku, s.on_hand) for s in result.stock] == [("A1", {"floor": 48})]


def test_sale_books_takings_revenue_output_vat_and_moving_average_cost(conn: sqlite3.Connection, posted: Post) -> None:
    receive_two_cases_of_cola(posted)
    sale = posted(PostDocument("sa-1", DocType.SALE, (Line(COLA_CAN, 5),), payment="wechat"))
    assert sale.ok
    # 5 cans at 3.00: gross 1500, VAT 172.57 -> 173, revenue 1327; cost 8496 * 5 / 48 = 885.
    assert voucher_of(conn, sale.document_id) == [
        ("1012", 1500, 0),
        ("5001", 0, 1327),
        ("22210102", 0, 173),
        ("5401", 885, 0),
        ("1405", 0, 885),
    ]
    assert balances(conn) == {("A1", "floor", ""): (43, 7611)}


def test_sale_cost_rounds_half_up_against_a_mixed_average(conn: sqlite3.Connection, posted: Post) -> None:
    receive_two_cases_of_cola(posted)
    posted(PostDocument("sa-1", DocType.SALE, (Line(COLA_CAN, 5),)))
    # 10 cans at 2.99: gross 2990, VAT 343.98 -> 344, value 2646; the balance becomes 53 cans for 10257.
    assert posted(PostDocument("rc-2", DocType.RECEIPT, (Line("A1", 10, price_fen=299),))).ok
    assert balances(conn) == {("A1", "floor", ""): (53, 10257)}
    sale = posted(PostDocument("sa-2", DocType.SALE, (Line("A1", 7),)))
    # 10257 * 7 / 53 = 1354.70 -> 1355
    assert moves_of(conn, sale.document_id) == [("A1", "floor", "", -7, -1355)]
    assert voucher_of(conn, sale.document_id)[0] == ("1001", 2100, 0)  # cash by default


def test_purchase_order_has_no_stock_effect_and_no_voucher_but_one_outbox_and_one_audit_row(
    conn: sqlite3.Connection, posted: Post
) -> None:
    result = posted(PostDocument("po-1", DocType.PURCHASE_ORDER, (Line(COLA_CASE, 10),), counterparty="sup1"))
    assert result.ok and result.doc_no == "PO20261125-000001"
    assert moves_of(conn, result.document_id) == [] and voucher_of(conn, result.document_id) == []
    assert conn.execute("SELECT gross_fen, tax_fen FROM documents").fetchone()[:] == (48000, 5522)
    assert conn.execute("SELECT COUNT(*) FROM outbox WHERE document_id = ?", (result.document_id,)).fetchone()[0] == 1
    assert conn.execute("SELECT action FROM audit").fetchall()[0][0] == "post.purchase_order"
    receipt = posted(
        PostDocument("rc-1", DocType.RECEIPT, (Line(COLA_CASE, 10),), counterparty="sup1", ref_id=result.document_id)
    )
    assert receipt.ok
    assert balances(conn) == {("A1", "floor", ""): (240, 48000 - 5522)}


def test_purchase_order_needs_a_known_supplier(posted: Post) -> None:
    assert posted(PostDocument("po-1", DocType.PURCHASE_ORDER, (Line("A1", 1),))).code == "invalid_command"
    unknown = posted(PostDocument("po-2", DocType.PURCHASE_ORDER, (Line("A1", 1),), counterparty="nobody"))
    assert (unknown.code, unknown.detail["field"]) == ("invalid_command", "counterparty")


def test_supplier_return_books_the_price_difference_to_cost_of_sales(conn: sqlite3.Connection, posted: Post) -> None:
    receive_two_cases_of_cola(posted)
    result = posted(
        PostDocument("sr-1", DocType.SUPPLIER_RETURN, (Line(COLA_CASE, 1, price_fen=4600),), counterparty="sup1")
    )
    assert result.ok
    # Returned at 46.00: VAT 529.20 -> 529, net 4071; the case cost 4248, so 177 more cost of sales. Red-letter:
    # the receipt's lines with negative figures; the supplier's credit note later settles 220201 and the VAT.
    assert voucher_of(conn, result.document_id) == [
        ("1405", -4248, 0),
        ("220202", 0, -4071),
        ("5401", 177, 0),
    ]
    assert balances(conn) == {("A1", "floor", ""): (24, 4248)}


def test_transfer_out_goes_into_transit_and_transfer_in_with_ref_takes_it_out(
    conn: sqlite3.Connection, posted: Post
) -> None:
    receive_two_cases_of_cola(posted)
    out = posted(PostDocument("to-1", DocType.TRANSFER_OUT, (Line("A1", 10),), counterparty="s2"))
    assert moves_of(conn, out.document_id) == [("A1", "floor", "", -10, -1770), ("A1", "transit", "", 10, 1770)]
    assert voucher_of(conn, out.document_id) == [("1402", 1770, 0), ("1405", 0, 1770)]
    assert [(s.sku, s.on_hand) for s in out.stock] == [("A1", {"floor": 38, "transit": 10})]
    back = posted(
        PostDocument("ti-1", DocType.TRANSFER_IN, (Line("A1", 4),), to_location="backroom", ref_id=out.document_id)
    )
    assert moves_of(conn, back.document_id) == [("A1", "transit", "", -4, -708), ("A1", "backroom", "", 4, 708)]
    assert voucher_of(conn, back.document_id) == [("1405", 708, 0), ("1402", 0, 708)]
    assert balances(conn) == {
        ("A1", "floor", ""): (38, 6726),
        ("A1", "transit", ""): (6, 1062),
        ("A1", "backroom", ""): (4, 708),
    }


def test_transfer_in_from_another_store_without_ref_is_valued_at_its_price(
    conn: sqlite3.Connection, posted: Post
) -> None:
    result = posted(PostDocument("ti-1", DocType.TRANSFER_IN, (Line(COLA_CASE, 1, price_fen=4100),), counterparty="s2"))
    assert moves_of(conn, result.document_id) == [("A1", "floor", "", 24, 4100)]
    assert voucher_of(conn, result.document_id) == [("1405", 4100, 0), ("1402", 0, 4100)]


def test_transfer_in_ref_must_be_a_transfer_out(posted: Post) -> None:
    receipt = receive_two_cases_of_cola(posted)
    result = posted(PostDocument("ti-1", DocType.TRANSFER_IN, (Line("A1", 1),), ref_id=receipt.document_id))
    assert (result.ok, result.code) == (False, "invalid_command")


def test_stocktake_gain_and_loss_go_through_pending_losses_and_gains(conn: sqlite3.Connection, posted: Post) -> None:
    receive_two_cases_of_cola(posted)
    gain = posted(PostDocument("st-1", DocType.STOCKTAKE, (Line("A1", 50),)))
    assert moves_of(conn, gain.document_id) == [("A1", "floor", "", 2, 354)]
    assert voucher_of(conn, gain.document_id) == [("1405", 354, 0), ("1901", 0, 354)]
    loss = posted(PostDocument("st-2", DocType.STOCKTAKE, (Line("A1", 45),)))
    assert moves_of(conn, loss.document_id) == [("A1", "floor", "", -5, -885)]
    assert voucher_of(conn, loss.document_id) == [("1901", 885, 0), ("1405", 0, 885)]
    same = posted(PostDocument("st-3", DocType.STOCKTAKE, (Line("A1", 45),)))
    assert same.ok and moves_of(conn, same.document_id) == [] and voucher_of(conn, same.document_id) == []


def test_stocktake_counting_zero_empties_the_balance_value_too(conn: sqlite3.Connection, posted: Post) -> None:
    receive_two_cases_of_cola(posted)
    posted(PostDocument("sa-1", DocType.SALE, (Line("A1", 7),)))
    assert posted(PostDocument("st-1", DocType.STOCKTAKE, (Line("A1", 0),))).ok
    assert balances(conn) == {}
    assert conn.execute("SELECT qty, value_fen FROM balances").fetchone()[:] == (0, 0)


def test_stocktake_refuses_the_same_item_location_and_lot_counted_twice(posted: Post) -> None:
    result = posted(PostDocument("st-1", DocType.STOCKTAKE, (Line("A1", 3), Line("A1", 4))))
    assert (result.code, result.detail["line"]) == ("invalid_command", 2)


def test_write_off_needs_a_reason_and_books_to_pending_losses(conn: sqlite3.Connection, posted: Post) -> None:
    receive_two_cases_of_cola(posted)
    refused = posted(PostDocument("wo-1", DocType.WRITE_OFF, (Line("A1", 2),), reason="lost it"))
    assert (refused.code, refused.detail["field"]) == ("invalid_command", "reason")
    assert "expired" in refused.detail["allowed"]
    assert posted(PostDocument("wo-2", DocType.WRITE_OFF, (Line("A1", 2),))).code == "invalid_command"
    other = posted(PostDocument("wo-3", DocType.WRITE_OFF, (Line("A1", 2),), reason="other"))
    assert (other.code, other.detail["field"]) == ("invalid_command", "reason_text")
    result = posted(PostDocument("wo-4", DocType.WRITE_OFF, (Line("A1", 2),), reason="spoiled"))
    # Spoiled (霉烂变质) is an abnormal loss: its input VAT (354 x 13% = 46.02 -> 46) is transferred out.
    assert voucher_of(conn, result.document_id) == [("1901", 400, 0), ("1405", 0, 354), ("22210103", 0, 46)]
    damaged = posted(PostDocument("wo-5", DocType.WRITE_OFF, (Line("A1", 2),), reason="damaged"))
    assert voucher_of(conn, damaged.document_id) == [("1901", 354, 0), ("1405", 0, 354)]


@pytest.mark.parametrize(
    ("reason", "stored"),
    [("包装破损", "damaged_packaging"), ("口味不符", "taste"), ("物流超时", "late_delivery"), ("quality", "quality")],
)
def test_customer_return_takes_a_structured_reason_in_chinese_or_as_a_code(
    conn: sqlite3.Connection, posted: Post, reason: str, stored: str
) -> None:
    result = posted(PostDocument("cr-1", DocType.CUSTOMER_RETURN, (Line(COLA_CAN, 1),), reason=reason))
    assert result.ok
    row = conn.execute("SELECT reason FROM documents WHERE id = ?", (result.document_id,)).fetchone()
    assert row[0] == stored


@pytest.mark.parametrize(("reason", "text", "field"), [(None, None, "reason"), ("bad", None, "reason")])
def test_customer_return_refuses_a_missing_or_unknown_reason(
    posted: Post, reason: str | None, text: str | None, field: str
) -> None:
    result = posted(PostDocument("cr-1", DocType.CUSTOMER_RETURN, (Line("A1", 1),), reason=reason, reason_text=text))
    assert (result.code, result.detail["field"]) == ("invalid_command", field)
    assert "taste" in result.detail["allowed"]


def test_customer_return_for_other_reason_needs_the_text(posted: Post) -> None:
    refused = posted(PostDocument("cr-1", DocType.CUSTOMER_RETURN, (Line("A1", 1),), reason="其他", reason_text=" "))
    assert (refused.code, refused.detail["field"]) == ("invalid_command", "reason_text")
    accepted = posted(
        PostDocument("cr-2", DocType.CUSTOMER_RETURN, (Line("A1", 1),), reason="其他", reason_text="买错了")
    )
    assert accepted.ok


def test_customer_return_against_a_sale_comes_back_at_the_sales_cost(conn: sqlite3.Connection, posted: Post) -> None:
    receive_two_cases_of_cola(posted)
    sale = posted(PostDocument("sa-1", DocType.SALE, (Line("A1", 5),)))
    back = posted(
        PostDocument("cr-1", DocType.CUSTOMER_RETURN, (Line("A1", 2),), ref_id=sale.document_id, reason="taste")
    )
    assert moves_of(conn, back.document_id) == [("A1", "floor", "", 2, 354)]
    assert voucher_of(conn, back.document_id) == [
        ("5001", 531, 0),
        ("22210102", 69, 0),
        ("1001", 0, 600),
        ("1405", 354, 0),
        ("5401", 0, 354),
    ]
    too_many = posted(
        PostDocument("cr-2", DocType.CUSTOMER_RETURN, (Line("A1", 4),), ref_id=sale.document_id, reason="taste")
    )
    assert (too_many.code, too_many.detail["item"]) == ("invalid_command", "A1")
    assert "exceeds 3 returnable" in too_many.message_en


def test_customer_return_cannot_return_more_than_sold_by_repeating_the_line(posted: Post) -> None:
    receive_two_cases_of_cola(posted)
    sale = posted(PostDocument("sa-1", DocType.SALE, (Line("A1", 3),)))
    twice = posted(
        PostDocument(
            "cr-1", DocType.CUSTOMER_RETURN, (Line("A1", 3), Line("A1", 3)), ref_id=sale.document_id, reason="taste"
        )
    )
    assert (twice.code, twice.detail["line"]) == ("invalid_command", 2)


def test_customer_return_after_its_earlier_return_was_reversed_is_accepted(posted: Post) -> None:
    receive_two_cases_of_cola(posted)
    sale = posted(PostDocument("sa-1", DocType.SALE, (Line("A1", 3),)))
    first = posted(
        PostDocument("cr-1", DocType.CUSTOMER_RETURN, (Line("A1", 3),), ref_id=sale.document_id, reason="taste")
    )
    assert posted(ReverseDocument("rv-1", first.document_id)).ok
    again = posted(
        PostDocument("cr-2", DocType.CUSTOMER_RETURN, (Line("A1", 1),), ref_id=sale.document_id, reason="quality")
    )
    assert again.ok, again.message_en


def test_returning_a_whole_sale_in_parts_gives_back_exactly_its_cost(conn: sqlite3.Connection, posted: Post) -> None:
    posted(PostDocument("rc-1", DocType.RECEIPT, (Line("A1", 3, price_fen=113),)))  # 3 cans worth 300 fen
    posted(PostDocument("rc-2", DocType.RECEIPT, (Line("A1", 4, price_fen=100),)))  # 4 cans worth 354 fen
    sale = posted(PostDocument("sa-1", DocType.SALE, (Line("A1", 3),)))
    sold_cost = -moves_of(conn, sale.document_id)[0][4]
    assert sold_cost == 280  # 654 * 3 / 7 = 280.29
    values = []
    for i in range(3):
        back = posted(
            PostDocument(f"cr-{i}", DocType.CUSTOMER_RETURN, (Line("A1", 1),), ref_id=sale.document_id, reason="taste")
        )
        values.append(moves_of(conn, back.document_id)[0][4])
    # 280/3 = 93.33 -> 93, then 187/2 = 93.5 -> 94, then the last takes the 93 left: 280 in all, not 3 x 93.
    assert values == [93, 94, 93]
    assert balances(conn) == {("A1", "floor", ""): (7, 654)}
    cost_of_sales = conn.execute("SELECT SUM(debit_fen - credit_fen) FROM voucher_lines WHERE account = '5401'")
    assert cost_of_sales.fetchone()[0] == 0


def test_unknown_item_is_refused_naming_the_code(posted: Post) -> None:
    result = posted(PostDocument("sa-1", DocType.SALE, (Line("6900000000000", 1),)))
    assert (result.ok, result.code, result.detail) == (False, "unknown_item", {"item": "6900000000000"})
    assert "6900000000000" in result.message and "6900000000000" in result.message_en


def test_unit_the_item_does_not_have_is_refused(posted: Post) -> None:
    result = posted(PostDocument("rc-1", DocType.RECEIPT, (Line("G1", 1, unit="箱"),)))
    assert (result.code, result.detail) == ("unknown_unit", {"item": "G1", "unit": "箱"})


def test_oversell_is_refused_naming_item_location_and_shortfall(posted: Post) -> None:
    receive_two_cases_of_cola(posted)
    result = posted(PostDocument("sa-1", DocType.SALE, (Line(COLA_CASE, 3),)))
    assert (result.ok, result.code) == (False, "insufficient_stock")
    assert result.detail == {
        "item": "A1",
        "location": "floor",
        "lot": None,
        "requested": 72,
        "available": 48,
        "shortfall": 24,
    }
    assert "A1" in result.message and "floor" in result.message and "缺 24" in result.message
    assert "short by 24" in result.message_en


def test_sale_from_a_location_without_stock_is_refused_even_if_another_has_it(posted: Post) -> None:
    receive_two_cases_of_cola(posted)
    result = posted(PostDocument("sa-1", DocType.SALE, (Line("A1", 1),), location="backroom"))
    assert (result.code, result.detail["location"], result.detail["shortfall"]) == ("insufficient_stock", "backroom", 1)


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (PostDocument("x", DocType.SALE, (Line("A1", 1),), location="nowhere"), "unknown_location"),
        (PostDocument("x", DocType.SALE, (Line("A1", 1, location="floor"),), location="nowhere"), "unknown_location"),
        (PostDocument("x", DocType.TRANSFER_OUT, (Line("A1", 1),), to_location="nowhere"), "unknown_location"),
        (
            PostDocument("x", DocType.PURCHASE_ORDER, (Line("A1", 1, location="nowhere"),), counterparty="sup1"),
            "unknown_location",
        ),
        (PostDocument("x", DocType.SALE, (Line("A1", 1),), ref_id=999), "unknown_document"),
        (PostDocument("x", DocType.SALE, (Line("A1", 1, location="transit"),)), "invalid_command"),
        (PostDocument("x", DocType.RECEIPT, (Line("A1", 1),), location="transit"), "invalid_command"),
        (PostDocument("x", DocType.SALE, (Line("A1", 1),), payment="bitcoin"), "invalid_command"),
        (PostDocument("x", DocType.SALE, ()), "invalid_command"),
        (PostDocument("", DocType.SALE, (Line("A1", 1),)), "invalid_command"),
        (PostDocument("x", DocType.SALE, (Line("A1", 0),)), "invalid_command"),
        (PostDocument("x", DocType.SALE, (Line("A1", -3),)), "invalid_command"),
        (PostDocument("x", DocType.RECEIPT, (Line("A1", 1, price_fen=-1),)), "invalid_command"),
        (PostDocument("x", DocType.RECEIPT, (Line("A1", 10_000_001),)), "invalid_command"),
        (PostDocument("x", DocType.SALE, (Line("A1", 1),), note="长" * 501), "invalid_command"),
        (PostDocument("x", DocType.REVERSAL, (Line("A1", 1),)), "invalid_command"),
    ],
)
def test_a_refused_command_is_answered_with_a_code_and_leaves_only_its_record(
    conn: sqlite3.Connection, posted: Post, command: PostDocument, code: str
) -> None:
    """Bad header locations and references used to escape as sqlite3.IntegrityError (foreign keys)."""
    receive_two_cases_of_cola(posted)
    before = dump(conn)
    result = posted(command)
    assert (result.ok, result.code) == (False, code)
    assert result.message and result.message_en
    after = dump(conn)
    assert after["commands"][: len(before["commands"])] == before["commands"]
    recorded = [] if not command.key else [(command.key, 0, None, code)]  # an empty key is not recorded
    assert [(r[0], r[2], r[3], r[4]) for r in after["commands"][len(before["commands"]) :]] == recorded
    assert {t: rows for t, rows in after.items() if t != "commands"} == {
        t: rows for t, rows in before.items() if t != "commands"
    }


def test_a_document_refused_on_its_last_line_writes_none_of_its_lines(conn: sqlite3.Connection, posted: Post) -> None:
    receive_two_cases_of_cola(posted)
    before = dump(conn)
    result = posted(PostDocument("sa-1", DocType.SALE, (Line("A1", 10), Line("E1", 1, price_fen=0), Line("A1", 39))))
    assert (result.code, result.detail["item"], result.detail["shortfall"]) == ("insufficient_stock", "E1", 1)
    result = posted(PostDocument("sa-2", DocType.SALE, (Line("A1", 10), Line("A1", 39))))
    assert (result.code, result.detail["shortfall"]) == ("insufficient_stock", 1)
    assert dump(conn)["stock_moves"] == before["stock_moves"]
    assert balances(conn) == {("A1", "floor", ""): (48, 8496)}


def test_a_receipt_refused_late_leaves_no_lot_behind(conn: sqlite3.Connection, posted: Post) -> None:
    lines = (Line("M1", 5, lot="B7", location="cold"), Line("NOPE", 1))
    assert posted(PostDocument("rc-1", DocType.RECEIPT, lines)).code == "unknown_item"
    lines = (Line("M1", 5, lot="B7", location="cold"), Line("A1", 1, location="nowhere"))
    assert posted(PostDocument("rc-2", DocType.RECEIPT, lines)).code == "unknown_location"
    assert conn.execute("SELECT COUNT(*) FROM lots").fetchone()[0] == 0


def test_every_posting_writes_one_outbox_row_with_integer_money_only(conn: sqlite3.Connection, posted: Post) -> None:
    result = receive_two_cases_of_cola(posted)
    rows = conn.execute("SELECT document_id, kind, payload FROM outbox").fetchall()
    assert [(r[0], r[1]) for r in rows] == [(result.document_id, "document.posted")]

    def no_float(text: str) -> float:
        raise AssertionError(f"float in the outbox: {text}")

    payload = json.loads(rows[0][2], parse_float=no_float)
    assert payload["document"]["gross_fen"] == 9600 and payload["document"]["tax_fen"] == 1104
    assert payload["moves"] == [[1, "A1", "floor", "", 48, 8496]]
    assert payload["voucher"]["lines"] == [["1405", 8496, 0], ["220202", 0, 8496]]
    assert payload["voucher"]["rule_version"] == "SE-2026.1"


def test_float_quantities_and_prices_are_refused(posted: Post) -> None:
    assert posted(PostDocument("sa-1", DocType.SALE, (Line("A1", 1.5),))).code == "invalid_command"  # type: ignore[arg-type]
    result = posted(PostDocument("rc-1", DocType.RECEIPT, (Line("A1", 1, price_fen=2.5),)))  # type: ignore[arg-type]
    assert (result.code, result.detail["field"]) == ("invalid_command", "price_fen")


def test_posting_inside_a_caller_transaction_keeps_refusals_from_undoing_neighbours(
    conn: sqlite3.Connection, ctx: PostingContext
) -> None:
    """Group commit: several commands in one transaction, a refused one in the middle."""
    conn.execute("BEGIN IMMEDIATE")
    first = post(conn, PostDocument("rc-1", DocType.RECEIPT, (Line("A1", 5, price_fen=100),)), ctx)
    middle = post(conn, PostDocument("sa-1", DocType.SALE, (Line("A1", 6),)), ctx)
    last = post(conn, PostDocument("sa-2", DocType.SALE, (Line("A1", 2),)), ctx)
    conn.execute("COMMIT")
    assert (first.ok, middle.code, last.ok) == (True, "insufficient_stock", True)
    assert balances(conn) == {("A1", "floor", ""): (3, 265)}


def test_negative_stock_is_allowed_only_when_the_store_policy_says_so(conn: sqlite3.Connection, posted: Post) -> None:
    assert posted(PostDocument("sa-1", DocType.SALE, (Line("A1", 2),))).code == "insufficient_stock"
    negative = context(allow_negative=True)
    assert posted(PostDocument("sa-2", DocType.SALE, (Line("A1", 2),)), negative).ok
    assert balances(conn) == {("A1", "floor", ""): (-2, 0)}
    assert verify_ledger(conn, allow_negative=True)["ok"]
    assert not verify_ledger(conn)["ok"]


@pytest.mark.xfail(
    strict=True,
    reason="known: with allow_negative, goods sold below zero are costed at 0 and the receipt that brings the"
    " balance back to zero leaves its whole value behind (qty 0 with value); needs a costing decision",
)
def test_with_negative_stock_allowed_a_balance_back_at_zero_holds_no_value(
    conn: sqlite3.Connection, posted: Post
) -> None:
    negative = context(allow_negative=True)
    posted(PostDocument("sa-1", DocType.SALE, (Line("A1", 2),)), negative)
    posted(PostDocument("rc-1", DocType.RECEIPT, (Line("A1", 2, price_fen=113),)), negative)  # 2 cans for 200
    assert conn.execute("SELECT qty, value_fen FROM balances").fetchone()[:] == (0, 0)
