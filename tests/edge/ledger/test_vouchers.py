"""Voucher rules (凭证规则): a data table maps each document type to voucher lines that always balance."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.ledger.commands import POSTABLE_TYPES
from edge.ledger.vouchers import VoucherRuleError, build_voucher, load_rules

SHIPPED: dict[str, Any] = json.loads(
    resources.files("edge.ledger").joinpath("data", "voucher_rules.json").read_text("utf-8")
)
CHART = {
    a["code"]
    for a in json.loads(
        resources.files("edge.ledger").joinpath("data", "chart_small_enterprise.json").read_text("utf-8")
    )["accounts"]
}
RULES = load_rules()


def test_the_shipped_rule_table_covers_every_document_type_with_accounts_of_the_chart() -> None:
    assert set(RULES.documents) == {t.value for t in POSTABLE_TYPES}
    assert RULES.documents["purchase_order"] == ()
    used = {line.account for lines in RULES.documents.values() for line in lines} - {"$payment"}
    assert used <= CHART
    assert {"1405", "1901", "2202", "22210101", "22210102", "5001", "5401"} <= used


@pytest.mark.parametrize(
    ("payment", "account"), [("cash", "1001"), ("card", "1002"), ("wechat", "1012"), ("alipay", "1012"), (None, "1001")]
)
def test_takings_go_to_the_account_of_the_payment(payment: str | None, account: str) -> None:
    lines = build_voucher(RULES, "sale", {"net": 1327, "tax": 173, "cost": 885}, payment)
    assert lines[0].account == account and lines[0].debit_fen == 1500


def broken(change: Any) -> dict[str, Any]:
    data = copy.deepcopy(SHIPPED)
    change(data)
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (broken(lambda d: d["documents"]["receipt"].pop(1)), "do not balance"),
        (broken(lambda d: d["documents"]["sale"][0].update(amount="net")), "do not balance"),
        (broken(lambda d: d["documents"]["write_off"][0].update(account="9999")), "not in the chart"),
        (broken(lambda d: d["documents"]["write_off"][0].update(amount="bribe")), "unknown amount"),
        (broken(lambda d: d["documents"]["write_off"][0].update(side="left")), "side must be"),
        (broken(lambda d: d["payment_accounts"].pop("cash")), "cash"),
        (broken(lambda d: d["reversal"].update(variance_account="9999")), "not in the chart"),
        (broken(lambda d: d.pop("reversal")), "malformed"),
    ],
)
def test_a_rule_table_that_could_unbalance_a_voucher_is_refused_at_load(data: dict[str, Any], message: str) -> None:
    with pytest.raises(VoucherRuleError, match=message):
        load_rules(data)


amounts = st.fixed_dictionaries(
    {name: st.integers(-(10**12), 10**12) for name in ("net", "tax", "cost", "gain", "loss")}
)


@given(st.sampled_from(sorted(RULES.documents)), amounts, st.sampled_from([None, "cash", "wechat", "card"]))
def test_every_voucher_built_from_the_rules_balances_for_any_amounts(
    doc_type: str, figures: dict[str, int], payment: str | None
) -> None:
    lines = build_voucher(RULES, doc_type, figures, payment)
    assert sum(v.debit_fen for v in lines) == sum(v.credit_fen for v in lines)
    for v in lines:  # no zero lines, no negative figures, one side each, integers only
        assert type(v.debit_fen) is int and type(v.credit_fen) is int
        assert v.debit_fen >= 0 and v.credit_fen >= 0 and (v.debit_fen == 0) != (v.credit_fen == 0)
        assert v.account in CHART
