"""Price agreements: the price list, the contract, open POs revised (old and new kept), and the match base."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge.finance import prices
from edge.finance.errors import ContractSupplierMismatch, InvalidPriceAgreement, UnknownContract, UnknownSupplier
from edge.finance.invoices import InvoiceLine
from edge.finance.prices import PriceAgreementIn
from edge.ledger.commands import Line
from edge.ledger.errors import IdempotencyKeyReused, UnknownItem
from tests.edge.finance.test_ap import Store, cola, invoice, net_tax, open_store

JUNE = (date(2024, 6, 1), date(2024, 6, 30))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(tmp_path / "books.db")
    yield opened
    opened.conn.close()


def agree(
    store: Store, price_fen: int = 215, *, key: str | None = None, sku: str = "COLA", **kw: Any
) -> dict[str, Any]:
    valid_from, valid_to = kw.pop("valid", JUNE)
    agreement = PriceAgreementIn(
        supplier_id=kw.pop("supplier_id", "sup-1"),
        sku=sku,
        price_fen=price_fen,
        valid_from=valid_from,
        valid_to=valid_to,
        contract_no=kw.pop("contract_no", "HT-2024-001"),
        note=kw.pop("note", None),
    )
    store.conn.execute("BEGIN IMMEDIATE")
    try:
        result = prices.record_agreement(store.conn, agreement, key or f"pa-{next(store.keys)}", "purchaser", store.now)
    except BaseException:
        store.conn.execute("ROLLBACK")
        raise
    store.conn.execute("COMMIT")
    return result


def po_lines(store: Store, po_id: int) -> list[tuple[Any, ...]]:
    return [
        tuple(r)
        for r in store.conn.execute(
            "SELECT line_no, sku, qty, price_fen, gross_fen FROM document_lines WHERE document_id = ?", (po_id,)
        )
    ]


def test_an_agreement_revises_open_orders_and_keeps_the_old_price(store: Store) -> None:
    open_po = store.order(cola(2), Line("MILK", 5, price_fen=900))
    received_po = store.order(cola(1))
    store.receive(received_po, cola(1))
    other_supplier = store.order(cola(1), supplier="sup-2")
    before = po_lines(store, open_po)
    recorded = agree(store, 215, note="年度谈判")
    assert recorded["replayed"] is False and recorded["price"] == "2.15"
    assert [
        (r["po_id"], r["po_line_no"], r["unit"], r["old_price_fen"], r["new_price_fen"]) for r in recorded["revisions"]
    ] == [(open_po, 1, "case", 5424, 215 * 24)]
    assert po_lines(store, open_po) == before  # the ledger's PO lines stay as posted
    assert prices.list_revisions(store.conn, po_id=received_po) == []
    assert prices.list_revisions(store.conn, po_id=other_supplier) == []
    again = agree(store, 210, contract_no="HT-2024-001")
    assert [(r["old_price_fen"], r["new_price_fen"]) for r in again["revisions"]] == [(215 * 24, 210 * 24)]
    actions = [
        r[0]
        for r in store.conn.execute(
            "SELECT action FROM audit WHERE action LIKE 'price%' OR action LIKE 'purchase_order%'"
            " OR action LIKE 'contract%' ORDER BY seq"
        )
    ]
    assert actions == [
        "contract.record",
        "price_agreement.record",
        "purchase_order.price_revised",
        "price_agreement.record",
        "purchase_order.price_revised",
    ]


def test_orders_outside_the_validity_are_not_revised(store: Store) -> None:
    store.order(cola(2))  # business date 2024-06-01
    recorded = agree(store, 215, valid=(date(2024, 7, 1), date(2024, 12, 31)))
    assert recorded["revisions"] == []


def test_the_match_takes_the_revised_price_as_its_base(store: Store) -> None:
    po = store.order(cola(2))
    agree(store, 215)
    store.receive(po, cola(2))
    net, tax = net_tax(48 * 215, 1300)
    at_new = store.one(invoice(InvoiceLine(1, "可乐 330ml", 48, net, 1300, tax)))
    assert at_new["status"] == "matched"
    old_net, old_tax = net_tax(2 * 5424, 1300)
    at_old = store.one(invoice(InvoiceLine(1, "可乐 330ml", 48, old_net, 1300, old_tax), number="24312000000012345679"))
    assert at_old["status"] == "exception"
    codes = [r["code"] for r in at_old["exception"]["reasons"]]
    assert codes[0] == "short_delivery"  # the first invoice took the receipt; and the price is the old one:
    assert "price_difference" in codes


def test_a_po_created_after_the_agreement_is_matched_at_the_agreed_price(store: Store) -> None:
    """The review's case, end to end without HTTP: an agreement at 2.15 a can revises the open PO; a PO placed
    afterwards within the validity at the old 54.24 a case gets no revision, yet the match expects the agreed
    price of it: an invoice at the old price is a price difference naming the agreed price, one at the agreed
    price matches and is tax-trusted."""
    open_po = store.order(cola(2))
    store.now += timedelta(minutes=5)
    recorded = agree(store, 215)
    assert [r["po_id"] for r in recorded["revisions"]] == [open_po]
    store.now += timedelta(minutes=5)
    later_po = store.order(cola(2))  # at the old price, within the validity
    assert prices.list_revisions(store.conn, po_id=later_po) == []
    store.receive(later_po, cola(2))
    store.now += timedelta(hours=1)
    old_net, old_tax = net_tax(2 * 5424, 1300)
    at_old = store.one(invoice(InvoiceLine(1, "可乐 330ml", 2, old_net, 1300, old_tax, unit="case"), po_id=later_po))
    assert at_old["status"] == "exception" and at_old["tax_trusted"] is False
    reasons = {r["code"]: r for r in at_old["exception"]["reasons"]}
    assert set(reasons) == {"price_difference", "tax_difference"}
    net, tax = net_tax(48 * 215, 1300)
    assert reasons["price_difference"]["detail"]["expected_fen"] == net
    assert reasons["price_difference"]["detail"]["difference_fen"] == old_net - net
    assert "按协议价 2.15 元应为 91.33 元" in reasons["price_difference"]["message"]
    assert "at the agreed price 2.15" in reasons["price_difference"]["message_en"]
    store.resolve(at_old, "reject", "purchaser")
    at_agreed = store.one(
        invoice(InvoiceLine(1, "可乐 330ml", 48, net, 1300, tax), number="24312000000012345679", po_id=later_po)
    )
    assert at_agreed["status"] == "matched" and at_agreed["tax_trusted"] is True
    assert store.voucher(at_agreed["document_id"])["tax_trusted"] is True


def test_a_po_created_before_the_agreement_and_received_keeps_its_price(store: Store) -> None:
    po = store.order(cola(2))
    store.receive(po, cola(2))
    store.now += timedelta(minutes=5)
    assert agree(store, 215)["revisions"] == []
    net, tax = net_tax(2 * 5424, 1300)
    assert store.one(invoice(InvoiceLine(1, "可乐 330ml", 2, net, 1300, tax, unit="case")))["status"] == "matched"


def test_a_po_created_outside_the_validity_keeps_its_price(store: Store) -> None:
    agree(store, 215, valid=(date(2024, 7, 1), date(2024, 7, 31)))
    store.now += timedelta(minutes=5)
    po = store.order(cola(2))  # business date 2024-06-01: before the validity
    store.receive(po, cola(2))
    net, tax = net_tax(2 * 5424, 1300)
    assert store.one(invoice(InvoiceLine(1, "可乐 330ml", 2, net, 1300, tax, unit="case")))["status"] == "matched"


def test_a_new_agreement_revises_a_po_created_under_the_previous_one_from_the_agreed_price(store: Store) -> None:
    agree(store, 215)
    store.now += timedelta(minutes=5)
    po = store.order(cola(2))  # 54.24 a case on the PO, 51.60 agreed
    store.now += timedelta(minutes=5)
    revised = agree(store, 210)
    assert [(r["po_id"], r["old_price_fen"], r["new_price_fen"]) for r in revised["revisions"]] == [
        (po, 215 * 24, 210 * 24)
    ]
    store.now += timedelta(minutes=5)
    assert agree(store, 210)["revisions"] == []  # the same price again: nothing to revise
    store.receive(po, cola(2))
    net, tax = net_tax(48 * 210, 1300)
    assert store.one(invoice(InvoiceLine(1, "可乐 330ml", 48, net, 1300, tax)))["status"] == "matched"


def test_the_price_list_shows_the_agreement_in_effect(store: Store) -> None:
    agree(store, 215)
    agree(store, 205, sku="COLA", valid=(date(2024, 6, 15), date(2024, 6, 30)))
    agree(store, 880, sku="MILK", valid=(date(2024, 6, 1), date(2024, 6, 10)))
    on_first = prices.supplier_price_list(store.conn, "sup-1", date(2024, 6, 1))
    assert [(p["sku"], p["price_fen"], p["item_name"]) for p in on_first] == [
        ("COLA", 215, "可乐 330ml"),
        ("MILK", 880, "鲜牛奶 1L"),
    ]
    later = prices.supplier_price_list(store.conn, "sup-1", date(2024, 6, 20))
    assert [(p["sku"], p["price_fen"]) for p in later] == [("COLA", 205)]
    assert prices.supplier_price_list(store.conn, "sup-2", date(2024, 6, 20)) == []
    assert prices.agreed_price_fen(store.conn, "sup-1", "COLA", date(2024, 6, 16)) == 205
    with pytest.raises(UnknownSupplier):
        prices.supplier_price_list(store.conn, "nobody", date(2024, 6, 1))


def test_the_contract_record_lists_its_agreements(store: Store) -> None:
    po = store.order(cola(2))
    agree(store, 215)
    agree(store, 880, sku="MILK")
    contract = prices.get_contract(store.conn, "HT-2024-001")
    assert contract["supplier_id"] == "sup-1" and contract["supplier_name"] == "华润饮料"
    assert [(a["sku"], len(a["revisions"])) for a in contract["agreements"]] == [("COLA", 1), ("MILK", 0)]
    assert contract["agreements"][0]["revisions"][0]["po_id"] == po
    with pytest.raises(UnknownContract):
        prices.get_contract(store.conn, "HT-none")
    with pytest.raises(ContractSupplierMismatch):
        agree(store, 300, supplier_id="sup-2")


@pytest.mark.parametrize(
    ("kw", "error"),
    [
        ({"price_fen": 0}, InvalidPriceAgreement),
        ({"price_fen": 10**10}, InvalidPriceAgreement),
        ({"valid": (date(2024, 6, 30), date(2024, 6, 1))}, InvalidPriceAgreement),
        ({"contract_no": "HT 2024/1"}, InvalidPriceAgreement),
        ({"note": "x" * 501}, InvalidPriceAgreement),
        ({"supplier_id": "nobody"}, UnknownSupplier),
        ({"sku": "NOPE"}, UnknownItem),
    ],
)
def test_bad_agreements_are_refused_and_nothing_is_written(store: Store, kw: dict[str, Any], error: type) -> None:
    price = kw.pop("price_fen", 215)
    with pytest.raises(error):
        agree(store, price, **kw)
    assert store.conn.execute("SELECT COUNT(*) FROM price_agreements").fetchone()[0] == 0
    assert store.conn.execute("SELECT COUNT(*) FROM contracts").fetchone()[0] == 0


def test_recording_is_idempotent_on_its_key(store: Store) -> None:
    first = agree(store, 215, key="same")
    again = agree(store, 215, key="same")
    assert again["replayed"] is True and again["id"] == first["id"]
    with pytest.raises(IdempotencyKeyReused):
        agree(store, 216, key="same")
    assert len(prices.list_agreements(store.conn)) == 1


def test_agreements_are_append_only(store: Store) -> None:
    agree(store, 215)
    with pytest.raises(sqlite3.IntegrityError):
        store.conn.execute("UPDATE price_agreements SET price_fen = 1")
    store.now += timedelta(days=1)
    assert prices.list_agreements(store.conn, supplier_id="sup-1", sku="COLA")[0]["price_fen"] == 215
