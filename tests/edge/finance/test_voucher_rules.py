"""Every voucher rule with its worked example in fen, exactly as docs/finance.md shows it.

The sample store's cola (A1) is 3.00 a can, 24 cans a case, VAT 13%; tea (G1) costs 7.77, VAT 3%.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from edge.finance import entries
from edge.finance.errors import ApprovalError
from edge.ledger.commands import DocType, Line, PostDocument, PostEntry, ReverseDocument
from edge.ledger.verify import verify_ledger
from tests.edge.finance.books_store import balance, context, open_books, post_one, voucher
from tests.edge.ledger.sample_store import COLA_CASE, NOW, TODAY


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = open_books(tmp_path / "books.db")
    yield connection
    connection.close()


def receive_two_cases(conn: sqlite3.Connection) -> int:
    result = post_one(
        conn, PostDocument("rc-1", DocType.RECEIPT, (Line(COLA_CASE, 2, price_fen=4800),), counterparty="sup1")
    )
    assert result.ok, result
    assert result.document_id is not None
    return result.document_id


def entry(conn: sqlite3.Connection, key: str, doc_type: DocType, **amounts: int) -> int:
    result = post_one(conn, PostEntry(key, doc_type, tuple(amounts.items()), counterparty="sup1"))
    assert result.ok, result
    assert result.document_id is not None
    return result.document_id


def test_receipt_before_invoice_is_estimated_and_the_invoice_reverses_the_estimate(conn: sqlite3.Connection) -> None:
    receipt = receive_two_cases(conn)
    # 2 cases at 48.00 incl. VAT: gross 9600, VAT 9600 x 13/113 = 1104.42 -> 1104, net 8496.
    assert voucher(conn, receipt) == [("1405", 8496, 0), ("220202", 0, 8496)]
    invoice = entry(conn, "pi-1", DocType.PURCHASE_INVOICE, estimate=8496, net=8496, tax=1104)
    assert voucher(conn, invoice) == [("220202", 8496, 0), ("22210101", 1104, 0), ("220201", 0, 9600)]
    assert balance(conn, "220202") == 0 and balance(conn, "220201") == -9600


def test_an_invoice_with_a_price_difference_books_the_difference_to_cost_of_sales(conn: sqlite3.Connection) -> None:
    receive_two_cases(conn)
    invoice = entry(conn, "pi-1", DocType.PURCHASE_INVOICE, estimate=8496, net=8500, tax=1105)
    assert voucher(conn, invoice) == [("220202", 8496, 0), ("22210101", 1105, 0), ("5401", 4, 0), ("220201", 0, 9605)]


def test_purchase_return_is_red_letter_and_the_credit_note_settles_it(conn: sqlite3.Connection) -> None:
    receive_two_cases(conn)
    entry(conn, "pi-1", DocType.PURCHASE_INVOICE, estimate=8496, net=8496, tax=1104)
    back = post_one(
        conn,
        PostDocument("sr-1", DocType.SUPPLIER_RETURN, (Line(COLA_CASE, 1, price_fen=4600),), counterparty="sup1"),
    )
    # One case back at 46.00: net 4071 (VAT 529); it cost 4248, so 177 more cost of sales.
    assert voucher(conn, back.document_id) == [("1405", -4248, 0), ("220202", 0, -4071), ("5401", 177, 0)]
    credit = entry(conn, "cn-1", DocType.CREDIT_NOTE, estimate=4071, net=4071, tax=529)
    assert voucher(conn, credit) == [("220202", -4071, 0), ("22210101", -529, 0), ("220201", 0, -4600)]
    assert balance(conn, "220202") == 0
    assert balance(conn, "220201") == -(9600 - 4600)  # AP = invoices - credit notes
    assert balance(conn, "22210101") == 1104 - 529


def test_sale_books_output_vat_and_cost_and_a_customer_return_takes_both_back(conn: sqlite3.Connection) -> None:
    receive_two_cases(conn)
    sale = post_one(conn, PostDocument("sa-1", DocType.SALE, (Line("A1", 5),)))
    # 5 cans at 3.00: gross 1500, VAT 172.57 -> 173, net 1327; cost 5 x 177 = 885.
    assert voucher(conn, sale.document_id) == [
        ("1001", 1500, 0),
        ("5001", 0, 1327),
        ("22210102", 0, 173),
        ("5401", 885, 0),
        ("1405", 0, 885),
    ]
    back = post_one(
        conn, PostDocument("cr-1", DocType.CUSTOMER_RETURN, (Line("A1", 1),), ref_id=sale.document_id, reason="taste")
    )
    # 1 can: gross 300, VAT 34.51 -> 35, net 265; at the sale's cost 177.
    assert voucher(conn, back.document_id) == [
        ("5001", 265, 0),
        ("22210102", 35, 0),
        ("1001", 0, 300),
        ("1405", 177, 0),
        ("5401", 0, 177),
    ]


def test_gifts_and_free_samples_given_out_are_a_deemed_sale_with_output_vat(conn: sqlite3.Connection) -> None:
    receive_two_cases(conn)
    gift = post_one(conn, PostDocument("go-1", DocType.GIFT_OUT, (Line("A1", 2),), reason_text="试饮 tasting"))
    # 2 cans at the selling price 3.00: deemed gross 600, output VAT 69.03 -> 69; cost 354.
    assert voucher(conn, gift.document_id) == [("5601", 423, 0), ("1405", 0, 354), ("22210102", 0, 69)]


def test_samples_received_free_go_into_stock_at_their_value_as_non_operating_income(conn: sqlite3.Connection) -> None:
    sample = post_one(conn, PostDocument("si-1", DocType.SAMPLE_IN, (Line("G1", 1),), counterparty="sup2"))
    assert voucher(conn, sample.document_id) == [("1405", 777, 0), ("5301", 0, 777)]


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("theft", [("1901", 400, 0), ("1405", 0, 354), ("22210103", 0, 46)]),
        ("spoiled", [("1901", 400, 0), ("1405", 0, 354), ("22210103", 0, 46)]),
        ("expired", [("1901", 400, 0), ("1405", 0, 354), ("22210103", 0, 46)]),
        ("natural_disaster", [("1901", 354, 0), ("1405", 0, 354)]),
        ("damaged", [("1901", 354, 0), ("1405", 0, 354)]),
        ("reasonable_loss", [("1901", 354, 0), ("1405", 0, 354)]),
        ("count_difference", [("1901", 354, 0), ("1405", 0, 354)]),
    ],
)
def test_write_offs_transfer_input_vat_out_only_for_abnormal_losses(
    conn: sqlite3.Connection, reason: str, expected: list[tuple[str, int, int]]
) -> None:
    receive_two_cases(conn)
    result = post_one(conn, PostDocument("wo-1", DocType.WRITE_OFF, (Line("A1", 2),), reason=reason, actor="keeper"))
    # 2 cans cost 354; 进项税额转出 354 x 13% = 46.02 -> 46.
    assert voucher(conn, result.document_id) == expected
    approval = post_one_approval(conn, result.document_id, "manager")
    loss = expected[0][1]
    assert voucher(conn, approval) == [("5711", loss, 0), ("1901", 0, loss)]
    assert balance(conn, "1901") == 0 and balance(conn, "5711") == loss


def post_one_approval(conn: sqlite3.Connection, document_id: int | None, approver: str, key: str = "la-1") -> int:
    assert document_id is not None
    ctx = context(conn)
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = entries.approve_losses(conn, ctx, key, document_id, approver)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    assert result.ok, result
    assert result.document_id is not None
    return result.document_id


def test_stocktake_gains_and_losses_wait_in_1901_until_approved(conn: sqlite3.Connection) -> None:
    receive_two_cases(conn)
    post_one(conn, PostDocument("rc-2", DocType.RECEIPT, (Line("G1", 10, price_fen=800),), counterparty="sup2"))
    counted = post_one(conn, PostDocument("st-1", DocType.STOCKTAKE, (Line("A1", 46), Line("G1", 11)), actor="keeper"))
    # Cola: 2 cans missing at 177 = 354 loss. Tea: 1 more than booked at 777 (10 x 8.00 incl. 3% VAT = 777 each).
    assert voucher(conn, counted.document_id) == [
        ("1405", 777, 0),
        ("1901", 0, 777),
        ("1901", 354, 0),
        ("1405", 0, 354),
    ]
    assert entries.pending_losses(conn)[0]["loss_fen"] == 354
    approval = post_one_approval(conn, counted.document_id, "manager")
    assert voucher(conn, approval) == [("5711", 354, 0), ("1901", 0, 354), ("1901", 777, 0), ("5301", 0, 777)]
    assert entries.pending_losses(conn) == [] and balance(conn, "1901") == 0


def test_losses_are_approved_once_and_never_by_the_person_who_posted_them(conn: sqlite3.Connection) -> None:
    receive_two_cases(conn)
    write_off = post_one(
        conn, PostDocument("wo-1", DocType.WRITE_OFF, (Line("A1", 1),), reason="damaged", actor="keeper")
    )
    with pytest.raises(ApprovalError, match="separation of duties"):
        post_one_approval(conn, write_off.document_id, "keeper")
    post_one_approval(conn, write_off.document_id, "manager")
    with pytest.raises(ApprovalError, match="approved by"):
        post_one_approval(conn, write_off.document_id, "accountant", key="la-2")
    # A replay of the same key answers the first result and books nothing more.
    assert post_one_approval(conn, write_off.document_id, "manager") == 3
    with pytest.raises(ApprovalError, match="not a write-off"):
        post_one_approval(conn, 1, "manager", key="la-3")
    # The approval refers to the write-off, so the write-off cannot be reversed before the approval is.
    refused = post_one(conn, ReverseDocument("rv-1", write_off.document_id or 0))
    assert refused.code == "not_reversible"


def test_transfers_between_stores_go_through_goods_in_transit(conn: sqlite3.Connection) -> None:
    receive_two_cases(conn)
    out = post_one(conn, PostDocument("to-1", DocType.TRANSFER_OUT, (Line("A1", 10),), counterparty="s2"))
    assert voucher(conn, out.document_id) == [("1402", 1770, 0), ("1405", 0, 1770)]
    back = post_one(
        conn, PostDocument("ti-1", DocType.TRANSFER_IN, (Line("A1", 10),), ref_id=out.document_id, counterparty="s2")
    )
    assert voucher(conn, back.document_id) == [("1405", 1770, 0), ("1402", 0, 1770)]


def test_supplier_payment_reduces_the_payable_and_a_prepayment_goes_to_1123(conn: sqlite3.Connection) -> None:
    paid = post_one(conn, PostEntry("py-1", DocType.SUPPLIER_PAYMENT, (("paid", 9600),), counterparty="sup1"))
    assert voucher(conn, paid.document_id) == [("220201", 9600, 0), ("1002", 0, 9600)]
    ahead = post_one(
        conn,
        PostEntry(
            "py-2",
            DocType.SUPPLIER_PAYMENT,
            (("paid", 5000),),
            counterparty="sup1",
            facts=(("prepayment", "true"),),
            payment="wechat",
        ),
    )
    assert voucher(conn, ahead.document_id) == [("1123", 5000, 0), ("1012", 0, 5000)]


def test_entries_refuse_unknown_amounts_suppliers_and_stock_types(conn: sqlite3.Connection) -> None:
    cases = [
        PostEntry("e-1", DocType.SUPPLIER_PAYMENT, (("bribe", 1),), counterparty="sup1"),
        PostEntry("e-2", DocType.SUPPLIER_PAYMENT, (("paid", 1),), counterparty="nobody"),
        PostEntry("e-3", DocType.SUPPLIER_PAYMENT, (("paid", 1),)),
        PostEntry("e-4", DocType.SALE, (("paid", 1),), counterparty="sup1"),
        PostEntry("e-5", DocType.SUPPLIER_PAYMENT, (("paid", 0),), counterparty="sup1"),
        PostEntry("e-6", DocType.SUPPLIER_PAYMENT, (("paid", 10**14),), counterparty="sup1"),
        PostEntry("e-7", DocType.SUPPLIER_PAYMENT, (("paid", 1),), counterparty="sup1", payment="gold"),
        PostEntry("e-8", DocType.PURCHASE_INVOICE, (("net", 1), ("net", 2)), counterparty="sup1"),
    ]
    for command in cases:
        result = post_one(conn, command)
        assert not result.ok and result.code == "invalid_command", (command, result)
    assert conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0] == 0
    refused = post_one(conn, PostDocument("x-1", DocType.SUPPLIER_PAYMENT, (Line("A1", 1),)))
    assert refused.code == "invalid_command"


def test_invoice_entries_are_corrected_by_credit_notes_not_reversed(conn: sqlite3.Connection) -> None:
    receive_two_cases(conn)
    invoice = entry(conn, "pi-1", DocType.PURCHASE_INVOICE, estimate=8496, net=8496, tax=1104)
    assert post_one(conn, ReverseDocument("rv-1", invoice)).code == "not_reversible"
    payment = entry(conn, "py-1", DocType.SUPPLIER_PAYMENT, paid=100)
    assert post_one(conn, ReverseDocument("rv-2", payment)).ok
    assert balance(conn, "220201") == -9600


def test_the_books_stay_whole_through_every_rule(conn: sqlite3.Connection) -> None:
    receive_two_cases(conn)
    entry(conn, "pi-1", DocType.PURCHASE_INVOICE, estimate=8496, net=8500, tax=1105)
    post_one(conn, PostDocument("sa-1", DocType.SALE, (Line("A1", 5),)))
    post_one(conn, PostDocument("go-1", DocType.GIFT_OUT, (Line("A1", 2),)))
    post_one(conn, PostDocument("si-1", DocType.SAMPLE_IN, (Line("G1", 1),)))
    wo = post_one(conn, PostDocument("wo-1", DocType.WRITE_OFF, (Line("A1", 2),), reason="theft", actor="k"))
    post_one_approval(conn, wo.document_id, "manager")
    entry(conn, "py-1", DocType.SUPPLIER_PAYMENT, paid=9605)
    report = verify_ledger(conn)
    assert report["ok"], report
    assert balance(conn, "220201") == 0
    total = conn.execute("SELECT SUM(debit_fen), SUM(credit_fen) FROM voucher_lines").fetchone()
    assert total[0] == total[1]


def test_vouchers_record_the_rule_version_in_effect_and_a_new_version_rewrites_nothing(
    conn: sqlite3.Connection,
) -> None:
    from edge.finance.errors import RuleTableError
    from edge.finance.rulebook import install_version, shipped_tables

    receipt = receive_two_cases(conn)
    before = conn.execute("SELECT * FROM voucher_lines ORDER BY rowid").fetchall()
    table = shipped_tables("small_enterprise")[-1]
    # From tomorrow, gifts are booked to 5602 (管理费用) instead of 5601.
    table = {**table, "version": "SE-2026.2", "effective_from": (TODAY + timedelta(days=1)).isoformat()}
    table["documents"] = {**table["documents"]}
    table["documents"]["gift_out"] = [
        {**line, "account": "5602" if line["account"] == "5601" else line["account"]}
        for line in table["documents"]["gift_out"]
    ]
    conn.execute("BEGIN IMMEDIATE")
    with pytest.raises(RuleTableError, match="too early"):
        install_version(conn, {**table, "effective_from": "2026-11-01"}, actor="acc", now=NOW, today=TODAY)
    install_version(conn, table, actor="acc", now=NOW, today=TODAY)
    with pytest.raises(RuleTableError, match="never changed"):
        install_version(conn, table, actor="acc", now=NOW, today=TODAY)
    conn.execute("COMMIT")
    assert conn.execute("SELECT * FROM voucher_lines ORDER BY rowid").fetchall() == before
    today_gift = post_one(conn, PostDocument("go-1", DocType.GIFT_OUT, (Line("A1", 1),)))
    tomorrow = context(conn, TODAY + timedelta(days=1))
    next_gift = post_one(conn, PostDocument("go-2", DocType.GIFT_OUT, (Line("A1", 1),)), tomorrow)
    assert voucher(conn, today_gift.document_id)[0][0] == "5601"
    assert voucher(conn, next_gift.document_id)[0][0] == "5602"
    versions = dict(conn.execute("SELECT document_id, rule_version FROM vouchers").fetchall())
    assert versions == {receipt: "SE-2026.1", today_gift.document_id: "SE-2026.1", next_gift.document_id: "SE-2026.2"}
    audit = conn.execute("SELECT action, object FROM audit WHERE action = 'rules.install'").fetchall()
    assert [tuple(r) for r in audit] == [("rules.install", "voucher_rules:SE-2026.2")]


def test_a_rule_version_that_would_unbalance_or_use_a_parent_account_is_refused(conn: sqlite3.Connection) -> None:
    from edge.finance.errors import RuleTableError
    from edge.finance.rulebook import install_version, shipped_tables

    table = {**shipped_tables("small_enterprise")[-1], "version": "X", "effective_from": "2027-01-01"}
    bad = {
        **table,
        "documents": {**table["documents"], "sale": [{"account": "2202", "side": "debit", "amount": "net"}]},
    }
    conn.execute("BEGIN IMMEDIATE")
    with pytest.raises(RuleTableError, match="leaf"):
        install_version(conn, bad, actor="acc", now=NOW, today=TODAY)
    with pytest.raises(RuleTableError, match="JSON object"):
        install_version(conn, ["not", "a", "table"], actor="acc", now=NOW, today=TODAY)
    conn.execute("ROLLBACK")


def test_the_enterprise_chart_books_the_same_documents_to_6001_and_6401(tmp_path: Path) -> None:
    conn = open_books(tmp_path / "enterprise.db", chart="enterprise")
    try:
        receive_two_cases(conn)
        sale = post_one(conn, PostDocument("sa-1", DocType.SALE, (Line("A1", 5),)))
        assert voucher(conn, sale.document_id) == [
            ("1001", 1500, 0),
            ("6001", 0, 1327),
            ("22210102", 0, 173),
            ("6401", 885, 0),
            ("1405", 0, 885),
        ]
        assert (
            conn.execute("SELECT rule_version FROM vouchers WHERE document_id = ?", (sale.document_id,)).fetchone()[0]
            == "EN-2026.1"
        )
        assert conn.execute("SELECT COUNT(*) FROM accounts WHERE code IN ('5001', '5401')").fetchone()[0] == 0
        # 企业会计准则: an approved loss goes to 6602 管理费用, a natural disaster's to 6711 营业外支出.
        for n, reason in enumerate(("theft", "natural_disaster"), start=1):
            written = post_one(
                conn, PostDocument(f"wo-{n}", DocType.WRITE_OFF, (Line("A1", 1),), reason=reason, actor="keeper")
            )
            approval = post_one_approval(conn, written.document_id, "manager", key=f"la-{n}")
            assert voucher(conn, approval)[0][0] == ("6602" if reason == "theft" else "6711")
    finally:
        conn.close()


def test_a_posting_before_any_rule_version_is_refused_clearly(conn: sqlite3.Connection) -> None:
    result = post_one(conn, PostDocument("rc-old", DocType.RECEIPT, (Line("A1", 1),)), context(conn, date(2019, 1, 1)))
    assert not result.ok and "no voucher rule version" in result.message_en
