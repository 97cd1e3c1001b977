"""The pure three-way match: plain facts in, a result with reasons in words out (no database here)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from edge.finance.errors import InvalidInvoice
from edge.finance.invoices import Invoice, InvoiceLine
from edge.finance.matching import (
    ItemFact,
    MatchFacts,
    MatchPolicy,
    POLine,
    ReceiptLine,
    ReturnLine,
    clear_returns,
    match_invoice,
    match_invoices,
    net_credit_notes,
    normalize_item_name,
)
from edge.ledger.money import tax_included

SELLER = "91310000MA1FL0000N"
BUYER = "91110000100000000R"
RECEIVED_AT = datetime(2024, 6, 1, 2, 0, tzinfo=UTC)
ARRIVED = RECEIVED_AT + timedelta(hours=5)
POLICY = MatchPolicy(qty_tolerance=0, price_tolerance_fen=100, tax_tolerance_fen=10, window_hours=72)
COLA = ItemFact("COLA", "可乐 330ml", 1300, "piece", {"piece": 1, "case": 24})
MILK = ItemFact("MILK", "鲜牛奶 1L", 900, "bottle", {"bottle": 1})
EGGS = ItemFact("EGGS", "土鸡蛋", 0, "piece", {"piece": 1})


def receipt_line(receipt_id: int, line_no: int, po_id: int, sku: str, qty: int, gross: int, rate: int, **kw: object):
    net = gross - tax_included(gross, rate)
    return ReceiptLine(receipt_id, line_no, po_id, sku, qty, net, kw.pop("posted_at", RECEIVED_AT), **kw)  # type: ignore[arg-type]


def facts(
    po_lines: tuple[POLine, ...] | None = None,
    receipts: tuple[ReceiptLine, ...] | None = None,
    named: dict[int, int | None] | None = None,
) -> MatchFacts:
    """Supplier sup-1 ordered 2 cases of cola at 54.24 (incl. 13% VAT) and 20 bottles of milk at 9.00 (9%),
    PO 1, and received all of it on receipt 2."""
    if po_lines is None:
        po_lines = (
            POLine(1, 1, "sup-1", "COLA", 48, 5424, 24),
            POLine(1, 2, "sup-1", "MILK", 20, 900, 1),
        )
    if receipts is None:
        receipts = (
            receipt_line(2, 1, 1, "COLA", 48, 10848, 1300),
            receipt_line(2, 2, 1, "MILK", 20, 18000, 900),
        )
    return MatchFacts.build({SELLER: "sup-1"}, (COLA, MILK, EGGS), {"6901234567892": "COLA"}, po_lines, receipts, named)


def line(line_no: int, name: str, qty: int, amount: int, rate: int, tax: int, **kw: object) -> InvoiceLine:
    return InvoiceLine(line_no, name, qty, amount, rate, tax, **kw)  # type: ignore[arg-type]


def invoice(*lines: InvoiceLine, **kw: object) -> Invoice:
    fields: dict[str, object] = {
        "invoice_no": "24312000000012345678",
        "issue_date": date(2024, 6, 2),
        "seller_name": "华润饮料",
        "seller_credit_code": SELLER,
        "buyer_name": "演示商贸",
        "buyer_credit_code": BUYER,
        "lines": lines
        or (
            line(1, "*饮料*可乐 330ml", 2, 9600, 1300, 1248, unit="case"),
            line(2, "*乳制品*鲜牛奶 1L", 20, 16514, 900, 1486),
        ),
    }
    fields.update(kw)
    return Invoice(**fields)  # type: ignore[arg-type]


def codes(result: object) -> list[str]:
    return [r.code for r in result.reasons]  # type: ignore[attr-defined]


# --- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["*饮料*可乐 330ml", "可乐330ml", "可乐 330ML", "*饮料*可乐３３０ｍｌ", "  可乐\t330ml "],
)
def test_invoice_names_match_item_names_without_category_spaces_or_width(name: str) -> None:
    assert normalize_item_name(name) == normalize_item_name("可乐 330ml")


# --- a full match -------------------------------------------------------------------------------


def test_matching_invoice_matches_and_clears_the_receipts_net_value() -> None:
    result = match_invoice(invoice(), facts(), POLICY, arrived_at=ARRIVED)
    assert result.ok, result.reasons
    assert result.supplier_id == "sup-1"
    # Cola: 2 cases x 54.24 = 108.48 incl. VAT -> tax 12.48, net 96.00; milk: 20 x 9.00 = 180.00 -> 14.86, 165.14.
    assert [(m.sku, m.qty_base, m.expected_net_fen, m.expected_tax_fen) for m in result.lines] == [
        ("COLA", 48, 9600, 1248),
        ("MILK", 20, 16514, 1486),
    ]
    assert [(c.receipt_id, c.receipt_line_no, c.qty_base, c.net_fen) for c in result.clearances] == [
        (2, 1, 48, 9600),
        (2, 2, 20, 16514),
    ]
    assert result.estimate_fen == 26114
    assert (result.net_fen, result.tax_fen) == (26114, 2734)
    assert result.first_receipt_id == 2


def test_worked_example_of_the_docs() -> None:
    """docs/three-way-match.md: 10 cases of cola ordered at 54.24 per case, 10 received, invoice 480.30 + 62.44."""
    po = (POLine(7, 1, "sup-1", "COLA", 240, 5424, 24),)
    rc = (receipt_line(8, 1, 7, "COLA", 240, 54240, 1300),)
    inv = invoice(line(1, "*饮料*可乐 330ml", 10, 48030, 1300, 6244, unit="case"))
    result = match_invoice(inv, facts(po, rc), POLICY, arrived_at=ARRIVED)
    assert result.lines[0].expected_net_fen == 48000 and result.lines[0].expected_tax_fen == 6240
    assert result.ok  # 30 fen and 4 fen are within the tolerances of 100 and 10
    assert result.estimate_fen == 48000
    strict = match_invoice(inv, facts(po, rc), replace(POLICY, price_tolerance_fen=20), arrived_at=ARRIVED)
    assert codes(strict) == ["price_difference"]
    assert strict.reasons[0].message.startswith("第 1 行: 价差 30 分")
    assert "price difference of 30 fen" in strict.reasons[0].message_en


def test_a_sku_or_a_barcode_on_the_line_wins_over_its_name() -> None:
    inv = invoice(
        line(1, "饮品一批", 48, 9600, 1300, 1248, sku="6901234567892"),
        line(2, "奶", 20, 16514, 900, 1486, sku="MILK"),
    )
    assert match_invoice(inv, facts(), POLICY, arrived_at=ARRIVED).ok


def test_the_po_and_receipts_the_invoice_names_limit_what_it_may_clear() -> None:
    assert match_invoice(invoice(po_id=1), facts(), POLICY, arrived_at=ARRIVED).ok
    assert match_invoice(invoice(receipt_ids=(2,)), facts(named={2: 1}), POLICY, arrived_at=ARRIVED).ok
    other_po = match_invoice(invoice(po_id=99), facts(), POLICY, arrived_at=ARRIVED)
    assert codes(other_po) == ["no_po", "no_po"]
    assert "(发票指定订单 99)" in other_po.reasons[0].message
    unknown = match_invoice(invoice(receipt_ids=(5,)), facts(named={2: 1}), POLICY, arrived_at=ARRIVED)
    assert codes(unknown)[0] == "unknown_receipt"


# --- each reason --------------------------------------------------------------------------------


def test_more_invoiced_than_received_is_a_short_delivery_with_the_numbers() -> None:
    inv = invoice(line(1, "可乐 330ml", 50, 10000, 1300, 1300))
    result = match_invoice(inv, facts(), POLICY, arrived_at=ARRIVED)
    assert codes(result) == ["short_delivery"]
    reason = result.reasons[0]
    assert reason.message == "第 1 行: 发票数量多于实收: 商品 COLA 发票 50，实收未开票 48，多 2"
    assert reason.message_en == (
        "line 1: short delivery: item COLA invoiced 50, received and not yet invoiced 48, 2 more"
    )
    assert reason.detail == {"sku": "COLA", "invoiced": 50, "received": 48, "difference": 2}


def test_quantity_tolerance_lets_a_small_excess_through() -> None:
    inv = invoice(line(1, "可乐 330ml", 50, 10000, 1300, 1300))
    assert match_invoice(inv, facts(), replace(POLICY, qty_tolerance=2), arrived_at=ARRIVED).ok


def test_received_more_than_ordered_and_invoiced_it_all_is_over_the_order() -> None:
    rc = (receipt_line(2, 1, 1, "COLA", 60, 13560, 1300),)
    inv = invoice(line(1, "可乐 330ml", 60, 12000, 1300, 1560))
    result = match_invoice(inv, facts(receipts=rc), POLICY, arrived_at=ARRIVED)
    assert codes(result) == ["over_order"]
    assert result.reasons[0].detail == {"sku": "COLA", "invoiced": 60, "ordered": 48}


def test_nothing_received_yet_is_a_short_delivery_priced_at_the_order() -> None:
    result = match_invoice(invoice(), facts(receipts=()), POLICY, arrived_at=ARRIVED)
    assert codes(result) == ["short_delivery", "short_delivery"]
    assert result.lines[0].expected_net_fen == 9600
    assert result.clearances == ()


@pytest.mark.parametrize(
    ("delta", "expected"), [(100, []), (-100, []), (101, ["price_difference"]), (-101, ["price_difference"])]
)
def test_price_tolerance_is_inclusive(delta: int, expected: list[str]) -> None:
    inv = invoice(line(1, "可乐 330ml", 48, 9600 + delta, 1300, 1248))
    assert codes(match_invoice(inv, facts(), POLICY, arrived_at=ARRIVED)) == expected


@pytest.mark.parametrize(
    ("delta", "expected"), [(10, []), (-10, []), (11, ["tax_difference"]), (-11, ["tax_difference"])]
)
def test_tax_tolerance_is_inclusive(delta: int, expected: list[str]) -> None:
    inv = invoice(line(1, "可乐 330ml", 48, 9600, 1300, 1248 + delta))
    result = match_invoice(inv, facts(), POLICY, arrived_at=ARRIVED)
    assert codes(result) == expected
    if expected:
        assert result.reasons[0].detail["difference_fen"] == delta
        assert f"税差 {delta} 分" in result.reasons[0].message


def test_an_invoice_after_the_window_is_late() -> None:
    on_time = match_invoice(invoice(), facts(), POLICY, arrived_at=RECEIVED_AT + timedelta(hours=72))
    assert on_time.ok
    late = match_invoice(invoice(), facts(), POLICY, arrived_at=RECEIVED_AT + timedelta(hours=73))
    assert codes(late) == ["late_invoice"]
    assert late.reasons[0].message == "发票超时: 收货后 73 小时才到，超过 72 小时"
    assert late.reasons[0].detail["hours"] == 73


def test_an_invoice_before_the_goods_is_not_late() -> None:
    assert match_invoice(invoice(), facts(), POLICY, arrived_at=RECEIVED_AT - timedelta(days=3)).ok


def test_an_item_without_a_po_is_no_po() -> None:
    inv = invoice(line(1, "土鸡蛋", 30, 1800, 0, 0))
    result = match_invoice(inv, facts(), POLICY, arrived_at=ARRIVED)
    assert codes(result) == ["no_po"]
    assert result.reasons[0].message == "第 1 行: 无采购订单: 供应商 sup-1 没有商品 EGGS 的采购订单"


def test_unknown_and_ambiguous_items_are_named() -> None:
    unknown = match_invoice(invoice(line(1, "*饮料*雪碧", 1, 100, 1300, 13)), facts(), POLICY, arrived_at=ARRIVED)
    assert codes(unknown) == ["unknown_item"]
    assert "雪碧" in unknown.reasons[0].message
    by_sku = match_invoice(invoice(line(1, "x", 1, 100, 1300, 13, sku="NOPE")), facts(), POLICY, arrived_at=ARRIVED)
    assert codes(by_sku) == ["unknown_item"] and by_sku.reasons[0].detail["sku"] == "NOPE"
    twins = MatchFacts.build(
        {SELLER: "sup-1"},
        (COLA, ItemFact("COLA2", "可乐330ml", 1300, "piece", {"piece": 1})),
        {},
        (),
        (),
    )
    ambiguous = match_invoice(invoice(line(1, "可乐 330ml", 1, 100, 1300, 13)), twins, POLICY, arrived_at=ARRIVED)
    assert codes(ambiguous) == ["unknown_item"]
    assert ambiguous.reasons[0].detail["candidates"] == ["COLA", "COLA2"]


def test_unknown_supplier_is_the_one_reason_for_a_stranger() -> None:
    stranger = invoice(seller_credit_code="91440300MA5F000007", seller_name="陌生公司")
    result = match_invoice(stranger, facts(), POLICY, arrived_at=ARRIVED)
    assert codes(result) == ["unknown_supplier"]
    assert "陌生公司 (91440300MA5F000007)" in result.reasons[0].message


def test_a_rate_other_than_the_items_is_a_rate_mismatch() -> None:
    inv = invoice(line(1, "可乐 330ml", 48, 9600, 900, 1248))
    result = match_invoice(inv, facts(), POLICY, arrived_at=ARRIVED)
    assert codes(result) == ["rate_mismatch"]
    assert result.reasons[0].message == "第 1 行: 税率不符: 发票 9%，商品 COLA 为 13%"


def test_a_unit_the_item_does_not_have_is_refused_by_the_match() -> None:
    result = match_invoice(
        invoice(line(1, "可乐 330ml", 2, 9600, 1300, 1248, unit="pallet")), facts(), POLICY, arrived_at=ARRIVED
    )
    assert codes(result) == ["unknown_unit"]


# --- several receipts and invoices -------------------------------------------------------------


def test_receipts_are_cleared_oldest_first_and_partly() -> None:
    rc = (
        receipt_line(3, 1, 1, "COLA", 24, 5424, 1300, posted_at=RECEIVED_AT + timedelta(hours=1)),
        receipt_line(2, 1, 1, "COLA", 24, 5424, 1300),
    )
    inv = invoice(line(1, "可乐 330ml", 30, 6000, 1300, 780))
    result = match_invoice(inv, facts(receipts=rc), POLICY, arrived_at=ARRIVED)
    assert result.ok, result.reasons
    assert [(c.receipt_id, c.qty_base, c.net_fen) for c in result.clearances] == [(2, 24, 4800), (3, 6, 1200)]


def test_already_invoiced_receipt_quantity_is_not_there_for_another_invoice() -> None:
    rc = (receipt_line(2, 1, 1, "COLA", 48, 10848, 1300, invoiced_qty=48, invoiced_net_fen=9600),)
    result = match_invoice(
        invoice(line(1, "可乐 330ml", 48, 9600, 1300, 1248)), facts(receipts=rc), POLICY, arrived_at=ARRIVED
    )
    assert codes(result) == ["short_delivery"]
    assert result.reasons[0].detail["received"] == 0


def test_bulk_matching_never_clears_the_same_receipt_quantity_twice() -> None:
    first = invoice(line(1, "可乐 330ml", 30, 6000, 1300, 780))
    second = replace(first, invoice_no="24312000000012345679", lines=(line(1, "可乐 330ml", 18, 3600, 1300, 468),))
    third = replace(first, invoice_no="24312000000012345680", lines=(line(1, "可乐 330ml", 1, 200, 1300, 26),))
    results = match_invoices([(first, ARRIVED), (second, ARRIVED), (third, ARRIVED)], facts(), POLICY)
    assert [r.ok for r in results] == [True, True, False]
    assert sum(c.qty_base for r in results[:2] for c in r.clearances) == 48
    # The last part takes all the net value that is left, so the receipt is cleared to the fen.
    assert sum(r.estimate_fen for r in results[:2]) == 9600
    assert codes(results[2]) == ["short_delivery"]


def test_a_mismatching_invoice_in_bulk_takes_nothing() -> None:
    bad = invoice(line(1, "可乐 330ml", 48, 1, 1300, 1248))
    good = replace(bad, invoice_no="24312000000012345679", lines=(line(1, "可乐 330ml", 48, 9600, 1300, 1248),))
    results = match_invoices([(bad, ARRIVED), (good, ARRIVED)], facts(), POLICY)
    assert [r.ok for r in results] == [False, True]


def test_a_revised_po_price_is_the_expected_price() -> None:
    po = (POLine(1, 1, "sup-1", "COLA", 48, 5160, 24, revised=True),)  # 2.15 per can
    at_new = invoice(line(1, "可乐 330ml", 48, 9133, 1300, 1187))
    assert match_invoice(at_new, facts(po), POLICY, arrived_at=ARRIVED).lines[0].expected_net_fen == 9133
    assert match_invoice(at_new, facts(po), POLICY, arrived_at=ARRIVED).ok
    at_old = invoice(line(1, "可乐 330ml", 48, 9600, 1300, 1248))
    assert codes(match_invoice(at_old, facts(po), POLICY, arrived_at=ARRIVED)) == ["price_difference", "tax_difference"]


def test_a_po_created_under_an_agreement_is_expected_at_the_agreed_price_and_says_so() -> None:
    # The PO line says 54.24 a case; it was placed under an agreement of 2.15 a can: 51.60 a case.
    po = (POLine(1, 1, "sup-1", "COLA", 48, 5160, 24, agreed_price_fen=215),)
    at_old = invoice(line(1, "可乐 330ml", 2, 9600, 1300, 1248, unit="case"))
    result = match_invoice(at_old, facts(po), POLICY, arrived_at=ARRIVED)
    assert codes(result) == ["price_difference", "tax_difference"]
    price = result.reasons[0]
    assert price.message == "第 1 行: 价差 467 分: 商品 COLA 发票金额 96.00 元，按协议价 2.15 元应为 91.33 元 (不含税)"
    assert price.message_en == (
        "line 1: price difference of 467 fen: item COLA invoice amount 96.00, expected 91.33 at the agreed price 2.15"
        " (excl. VAT)"
    )
    assert price.detail["agreed_price_fen"] == 215 and price.detail["expected_fen"] == 9133
    at_agreed = invoice(line(1, "可乐 330ml", 48, 9133, 1300, 1187))
    assert match_invoice(at_agreed, facts(po), POLICY, arrived_at=ARRIVED).ok


def test_the_order_price_is_named_when_no_agreement_or_several_prices_are_behind_the_expectation() -> None:
    at_old = invoice(line(1, "可乐 330ml", 48, 9133, 1300, 1187))
    plain = match_invoice(at_old, facts(), POLICY, arrived_at=ARRIVED).reasons[0]
    assert "按订单价应为 96.00 元" in plain.message and plain.detail["agreed_price_fen"] is None
    # Two POs, one under an agreement and one not, each half received: the expectation mixes both prices.
    po = (
        POLine(1, 1, "sup-1", "COLA", 24, 5160, 24, agreed_price_fen=215),
        POLine(3, 1, "sup-1", "COLA", 24, 5424, 24),
    )
    rc = (receipt_line(2, 1, 1, "COLA", 24, 5160, 1300), receipt_line(4, 1, 3, "COLA", 24, 5424, 1300))
    mixed = match_invoice(invoice(line(1, "可乐 330ml", 48, 1, 1300, 1187)), facts(po, rc), POLICY, arrived_at=ARRIVED)
    assert "按订单价" in mixed.reasons[0].message and mixed.reasons[0].detail["agreed_price_fen"] is None
    # Nothing received yet: the expectation rests on the oldest PO, here the agreed one.
    early = match_invoice(
        invoice(line(1, "可乐 330ml", 48, 1, 1300, 1187)), facts(po, ()), POLICY, arrived_at=ARRIVED
    ).reasons
    price = next(r for r in early if r.code == "price_difference")
    assert "按协议价 2.15 元" in price.message


# --- credit notes -------------------------------------------------------------------------------


def credit(*lines: InvoiceLine, number: str = "24312000000099999999") -> Invoice:
    return invoice(*lines, invoice_no=number, original_invoice_no="24312000000012345678")


def test_a_credit_note_is_netted_into_the_invoice_line_of_its_item() -> None:
    over = invoice(line(1, "可乐 330ml", 50, 10000, 1300, 1300), line(2, "鲜牛奶 1L", 20, 16514, 900, 1486))
    assert codes(match_invoice(over, facts(), POLICY, arrived_at=ARRIVED)) == ["short_delivery"]
    netted = net_credit_notes(over, [credit(line(1, "*饮料*可乐330ml", -2, -400, 1300, -52))])
    assert [(x.qty, x.amount_fen, x.tax_fen) for x in netted.lines] == [(48, 9600, 1248), (20, 16514, 1486)]
    assert match_invoice(netted, facts(), POLICY, arrived_at=ARRIVED).ok


def test_a_credit_note_cancelling_a_line_drops_it() -> None:
    netted = net_credit_notes(invoice(), [credit(line(1, "鲜牛奶 1L", -20, -16514, 900, -1486))])
    assert [x.line_no for x in netted.lines] == [1]


@pytest.mark.parametrize(
    "bad",
    [
        line(1, "雪碧", -1, -100, 1300, -13),  # not on the invoice
        line(1, "鲜牛奶 1L", -21, -17000, 900, -1530),  # more than the line
        line(1, "鲜牛奶 1L", -1, -800, 1300, -104),  # another rate
    ],
)
def test_a_credit_note_that_does_not_fit_its_invoice_is_refused(bad: InvoiceLine) -> None:
    with pytest.raises(InvalidInvoice):
        net_credit_notes(invoice(), [credit(bad)])


# --- properties ---------------------------------------------------------------------------------

RATES = st.sampled_from([1300, 900, 600, 300, 0])


@st.composite
def consistent_purchase(draw: st.DrawFn) -> tuple[MatchFacts, Invoice, int]:
    """A PO, its receipts and an invoice that agree, line by line; returns the receipts' total net."""
    n = draw(st.integers(1, 5))
    items, po_lines, receipts, lines = [], [], [], []
    received_net = 0
    for i in range(1, n + 1):
        rate = draw(RATES)
        factor = draw(st.sampled_from([1, 6, 12, 24]))
        sku = f"I{i}"
        items.append(ItemFact(sku, f"商品{i}", rate, "piece", {"piece": 1, "case": factor}))
        units = draw(st.integers(1, 50))
        price = draw(st.integers(1, 200_000))  # per case, incl. VAT
        po_lines.append(POLine(1, i, "sup-1", sku, units * factor, price, factor))
        # The goods come in one to three receipts; the receipt is valued at the PO price.
        parts = draw(st.lists(st.integers(1, units), min_size=0, max_size=2, unique=True).map(sorted))
        bounds = [0, *parts, units] if parts and parts[-1] < units else [0, units]
        for k in range(len(bounds) - 1):
            cases = bounds[k + 1] - bounds[k]
            if cases <= 0:
                continue
            gross = cases * price
            rec = receipt_line(
                10 + k, i, 1, sku, cases * factor, gross, rate, posted_at=RECEIVED_AT + timedelta(minutes=k)
            )
            receipts.append(rec)
            received_net += rec.net_fen
        gross = units * price
        tax = tax_included(gross, rate)
        lines.append(InvoiceLine(i, f"*类*商品{i}", units, gross - tax, rate, tax, unit="case"))
    built = MatchFacts.build({SELLER: "sup-1"}, items, {}, po_lines, receipts)
    return built, invoice(*lines), received_net


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(consistent_purchase(), st.integers(0, 72 * 60))
def test_a_matching_invoice_always_matches_and_clears_every_fen_received(
    purchase: tuple[MatchFacts, Invoice, int], minutes: int
) -> None:
    built, inv, received_net = purchase
    result = match_invoice(inv, built, POLICY, arrived_at=RECEIVED_AT + timedelta(minutes=minutes))
    assert result.ok, result.reasons
    assert result.estimate_fen == received_net
    assert sum(c.qty_base for c in result.clearances) == sum(m.qty_base or 0 for m in result.lines)
    assert all(isinstance(c.net_fen, int) for c in result.clearances)


PERTURBATIONS = ("qty", "amount", "tax", "late", "rate")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(consistent_purchase(), st.sampled_from(PERTURBATIONS), st.integers(1, 10_000), st.data())
def test_a_perturbation_beyond_tolerance_gives_exactly_its_reason(
    purchase: tuple[MatchFacts, Invoice, int], what: str, by: int, data: st.DataObject
) -> None:
    built, inv, _ = purchase
    index = data.draw(st.integers(0, len(inv.lines) - 1))
    target = inv.lines[index]
    item = built.items[f"I{target.line_no}"]
    arrived = ARRIVED
    expected = {"qty": "short_delivery", "amount": "price_difference", "tax": "tax_difference"}.get(what, what)
    if what == "qty":
        # One more case than received, billed at the PO price: only the quantity disagrees.
        po = built.po_lines[("sup-1", item.sku)][0]
        cases = target.qty + 1
        gross = cases * po.price_fen
        tax = tax_included(gross, item.vat_rate_bp)
        changed = replace(target, qty=cases, amount_fen=gross - tax, tax_fen=tax)
    elif what == "amount":
        sign = data.draw(st.sampled_from([1, -1]))
        delta = POLICY.price_tolerance_fen + by
        assume(target.amount_fen + sign * delta >= 0)
        changed = replace(target, amount_fen=target.amount_fen + sign * delta)
    elif what == "tax":
        sign = data.draw(st.sampled_from([1, -1]))
        delta = POLICY.tax_tolerance_fen + by
        assume(target.tax_fen + sign * delta >= 0)
        changed = replace(target, tax_fen=target.tax_fen + sign * delta)
    elif what == "late":
        changed = target
        arrived = RECEIVED_AT + timedelta(hours=POLICY.window_hours, minutes=3, seconds=by)
        expected = "late_invoice"
    else:
        other = data.draw(RATES.filter(lambda r: r != item.vat_rate_bp))
        changed = replace(target, tax_rate_bp=other)
        expected = "rate_mismatch"
    lines = tuple(changed if x.line_no == target.line_no else x for x in inv.lines)
    result = match_invoice(replace(inv, lines=lines), built, POLICY, arrived_at=arrived)
    assert codes(result) == [expected], result.reasons
    reason = result.reasons[0]
    if expected != "late_invoice":
        assert reason.line_no == target.line_no
    if what in ("amount", "tax"):
        difference = (
            (changed.amount_fen - target.amount_fen) if what == "amount" else (changed.tax_fen - target.tax_fen)
        )
        assert reason.detail["difference_fen"] == difference
        assert f"{difference} 分" in reason.message and f"{difference} fen" in reason.message_en
    if what == "qty":
        assert reason.detail["difference"] == item.units["case"]


# --- credit notes and supplier returns ----------------------------------------------------------


def returns(*specs: tuple[int, str, int]) -> tuple[ReturnLine, ...]:
    return tuple(ReturnLine(rid, 1, sku, net) for rid, sku, net in specs)


def test_a_credit_note_clears_the_returns_of_its_item_oldest_first_and_the_rest_is_a_price_credit() -> None:
    note = credit(line(1, "可乐 330ml", -2, -9000, 1300, -1170))
    open_returns = returns((5, "MILK", 1651), (6, "COLA", 4071), (7, "COLA", 4071))
    cleared = clear_returns(note, {1: "COLA"}, open_returns)
    assert [(c.credit_line_no, c.return_id, c.net_fen) for c in cleared] == [(1, 6, 4071), (1, 7, 4071)]
    assert sum(c.net_fen for c in cleared) == 8142  # the estimate; 858 is a price credit
    small = clear_returns(credit(line(1, "可乐 330ml", -1, -3000, 1300, -390)), {1: "COLA"}, open_returns)
    assert [(c.return_id, c.net_fen) for c in small] == [(6, 3000)]


def test_lines_naming_an_item_go_first_and_a_line_naming_none_clears_any_item() -> None:
    note = credit(line(1, "*其他*折让", -1, -2000, 1300, -260), line(2, "可乐 330ml", -1, -4071, 1300, -529))
    open_returns = returns((5, "COLA", 4071), (6, "MILK", 1651), (7, "COLA", 1000))
    cleared = clear_returns(note, {1: None, 2: "COLA"}, open_returns)
    assert [(c.credit_line_no, c.return_id, c.net_fen) for c in cleared] == [(2, 5, 4071), (1, 6, 1651), (1, 7, 349)]


def test_what_a_credit_note_clears_of_returns_can_be_capped() -> None:
    note = credit(line(1, "可乐 330ml", -1, -4071, 1300, -529))
    open_returns = returns((5, "COLA", 4071))
    assert clear_returns(note, {1: "COLA"}, open_returns, limit_fen=0) == ()
    assert [c.net_fen for c in clear_returns(note, {1: "COLA"}, open_returns, limit_fen=1000)] == [1000]
    assert [c.net_fen for c in clear_returns(note, {1: "COLA"}, open_returns, limit_fen=10**6)] == [4071]


@settings(max_examples=200, deadline=None)
@given(
    credits=st.lists(st.tuples(st.sampled_from(["COLA", "MILK", None]), st.integers(0, 9000)), min_size=1, max_size=4),
    open_values=st.lists(st.tuples(st.sampled_from(["COLA", "MILK"]), st.integers(1, 5000)), max_size=5),
    limit=st.none() | st.integers(0, 20000),
)
def test_clearing_never_exceeds_the_credit_the_returns_or_the_cap(
    credits: list[tuple[str | None, int]], open_values: list[tuple[str, int]], limit: int | None
) -> None:
    assume(sum(amount for _, amount in credits) > 0)
    note = credit(*(line(i, sku or "*其他*折让", -1, -amount, 1300, 0) for i, (sku, amount) in enumerate(credits, 1)))
    items = {i: sku for i, (sku, _) in enumerate(credits, 1)}
    open_returns = tuple(ReturnLine(10 + i, 1, sku, net) for i, (sku, net) in enumerate(open_values))
    cleared = clear_returns(note, items, open_returns, limit)
    total = sum(c.net_fen for c in cleared)
    assert total <= -note.net_fen and (limit is None or total <= limit)
    for r in open_returns:
        assert sum(c.net_fen for c in cleared if c.return_id == r.return_id) <= r.open_net_fen
    for i, (sku, amount) in enumerate(credits, 1):
        mine = [c for c in cleared if c.credit_line_no == i]
        assert sum(c.net_fen for c in mine) <= amount
        assert all(open_returns[c.return_id - 10].sku == sku for c in mine if sku is not None)
    if limit is None:  # nothing left that a line could have taken
        for i, (sku, amount) in enumerate(credits, 1):
            if sum(c.net_fen for c in cleared if c.credit_line_no == i) < amount:
                for r in open_returns:
                    if sku is None or r.sku == sku:
                        assert sum(c.net_fen for c in cleared if c.return_id == r.return_id) == r.open_net_fen
