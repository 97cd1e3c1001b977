"""Voucher rules (凭证规则): a versioned data table maps each document type to voucher lines that always balance."""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.finance.chart import load_chart
from edge.finance.rulebook import shipped_tables
from edge.ledger.commands import DocType, WriteOffReason
from edge.ledger.vouchers import BASE_AMOUNTS, RuleBook, VoucherRuleError, build_voucher, load_rules

CHARTS = {name: load_chart(name).leaves() for name in ("small_enterprise", "enterprise")}
SHIPPED: dict[str, Any] = shipped_tables("small_enterprise")[-1]
RULES = load_rules(SHIPPED, CHARTS["small_enterprise"])
ENTERPRISE = load_rules(shipped_tables("enterprise")[-1], CHARTS["enterprise"])


def lines_of(doc_type: str, variant: int = 0) -> list[Any]:
    return list(RULES.documents[doc_type][variant].lines)


def test_the_shipped_rule_tables_cover_every_document_type_with_leaf_accounts_of_their_chart() -> None:
    for rules, chart in ((RULES, CHARTS["small_enterprise"]), (ENTERPRISE, CHARTS["enterprise"])):
        assert set(rules.documents) == {t.value for t in DocType if t is not DocType.REVERSAL}
        used = {line.account for variants in rules.documents.values() for v in variants for line in v.lines}
        used -= {"$payment"}
        assert all(chart[a] for a in used), "only leaf accounts take postings"
    assert RULES.documents["purchase_order"][0].lines == ()
    se_used = {line.account for vs in RULES.documents.values() for v in vs for line in v.lines}
    assert {"1405", "1901", "220201", "220202", "22210101", "22210102", "22210103", "5001", "5401", "5711"} <= se_used
    en_used = {line.account for vs in ENTERPRISE.documents.values() for v in vs for line in v.lines}
    assert {"6001", "6401", "6711", "6301", "6601"} <= en_used and not {"5001", "5401"} & en_used


def test_every_write_off_reason_maps_to_one_loss_kind() -> None:
    assert {RULES.loss_kind(r.value) for r in WriteOffReason} <= {"abnormal", "reasonable", "disaster", "counting"}
    # 非正常损失: 因管理不善造成被盗、丢失、霉烂变质 (theft and loss, spoiled or expired goods); breakage is not.
    assert [r for r in WriteOffReason if RULES.loss_kind(r.value) == "abnormal"] == [
        WriteOffReason.EXPIRED,
        WriteOffReason.SPOILED,
        WriteOffReason.THEFT,
    ]


@pytest.mark.parametrize(
    ("payment", "account"),
    [("cash", "1001"), ("card", "1002"), ("wechat", "1012"), ("alipay", "1012"), ("credit", "1122"), (None, "1001")],
)
def test_takings_go_to_the_account_of_the_payment(payment: str | None, account: str) -> None:
    lines = build_voucher(RULES, "sale", {"net": 1327, "tax": 173, "cost": 885}, payment=payment)
    assert lines[0].account == account and lines[0].debit_fen == 1500


def test_an_abnormal_write_off_transfers_input_vat_out_and_a_counting_difference_does_not() -> None:
    amounts = {"cost": 10000, "input_tax_out": 1300}
    abnormal = build_voucher(RULES, "write_off", amounts, {"loss_kind": "abnormal"})
    assert [(v.account, v.debit_fen, v.credit_fen) for v in abnormal] == [
        ("1901", 11300, 0),
        ("1405", 0, 10000),
        ("22210103", 0, 1300),
    ]
    counting = build_voucher(RULES, "write_off", amounts, {"loss_kind": "counting"})
    assert [(v.account, v.debit_fen, v.credit_fen) for v in counting] == [("1901", 10000, 0), ("1405", 0, 10000)]


def test_red_letter_lines_keep_their_side_with_a_negative_figure() -> None:
    lines = build_voucher(RULES, "credit_note", {"estimate": 1000, "net": 1000, "tax": 130})
    assert [(v.account, v.debit_fen, v.credit_fen) for v in lines] == [
        ("220202", -1000, 0),
        ("22210101", -130, 0),
        ("220201", 0, -1130),
    ]


def broken(change: Any) -> dict[str, Any]:
    data = copy.deepcopy(SHIPPED)
    change(data)
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (broken(lambda d: d["documents"]["receipt"].pop(1)), "do not balance"),
        (broken(lambda d: d["documents"]["sale"][0].update(amount="net")), "do not balance"),
        (broken(lambda d: d["documents"]["sale"][0].update(red=True)), "do not balance"),
        (broken(lambda d: d["documents"]["transfer_in"][0].update(account="9999")), "not in the chart"),
        (broken(lambda d: d["documents"]["transfer_in"][0].update(account="2221")), "only leaf accounts"),
        (broken(lambda d: d["documents"]["transfer_in"][0].update(amount="bribe")), "unknown amount"),
        (broken(lambda d: d["documents"]["transfer_in"][0].update(side="left")), "side must be"),
        (broken(lambda d: d["documents"]["write_off"].pop()), "last variant must apply to any document"),
        (broken(lambda d: d["documents"].pop("gift_out")), "no rule for"),
        (broken(lambda d: d["documents"].update(bribe=[])), "unknown document type"),
        (broken(lambda d: d["write_off_loss_kinds"].pop("theft")), "every write-off reason"),
        (broken(lambda d: d["amounts"].update(cost={"net": 1})), "base amount"),
        (broken(lambda d: d["amounts"].update(odd={"bribe": 1})), "not a base amount"),
        (broken(lambda d: d["payment_accounts"].pop("cash")), "cash"),
        (broken(lambda d: d["reversal"].update(variance_account="9999")), "not in the chart"),
        (broken(lambda d: d.pop("reversal")), "malformed"),
        (broken(lambda d: d.update(effective_from="soon")), "malformed"),
        ([1, 2], "JSON object"),
    ],
)
def test_a_rule_table_that_could_unbalance_a_voucher_is_refused_at_load(data: Any, message: str) -> None:
    with pytest.raises(VoucherRuleError, match=message):
        load_rules(data, CHARTS["small_enterprise"])


def test_the_rule_book_picks_the_version_in_effect_on_the_business_date() -> None:
    later = load_rules({**SHIPPED, "version": "SE-2027.1", "effective_from": "2027-01-01"}, CHARTS["small_enterprise"])
    book = RuleBook([later, RULES])
    assert book.for_date(None, date(2026, 12, 31)).version == "SE-2026.1"
    assert book.for_date(None, date(2027, 1, 1)).version == "SE-2027.1"
    with pytest.raises(VoucherRuleError, match="no voucher rule version"):
        book.for_date(None, date(2019, 12, 31))


amounts = st.fixed_dictionaries({name: st.integers(-(10**12), 10**12) for name in BASE_AMOUNTS})
facts = st.fixed_dictionaries(
    {
        "loss_kind": st.sampled_from(["abnormal", "reasonable", "disaster", "counting", ""]),
        "prepayment": st.sampled_from(["true", "false", ""]),
    }
)


@given(
    st.sampled_from(sorted(RULES.documents)),
    amounts,
    facts,
    st.sampled_from([None, "cash", "wechat", "card", "bank", "credit"]),
    st.sampled_from([RULES, ENTERPRISE]),
)
def test_every_voucher_built_from_the_rules_balances_for_any_amounts(
    doc_type: str, figures: dict[str, int], conditions: dict[str, str], payment: str | None, rules: Any
) -> None:
    lines = build_voucher(rules, doc_type, figures, conditions, payment=payment)
    assert sum(v.debit_fen for v in lines) == sum(v.credit_fen for v in lines)
    chart = CHARTS[rules.chart]
    red = {line.memo for v in rules.documents[doc_type] for line in v.lines if line.red}
    for v in lines:  # no zero lines, one side each, integers only; negative figures only on red-letter lines
        assert type(v.debit_fen) is int and type(v.credit_fen) is int
        assert (v.debit_fen == 0) != (v.credit_fen == 0)
        assert v.memo in red or (v.debit_fen >= 0 and v.credit_fen >= 0)
        assert chart[v.account]
