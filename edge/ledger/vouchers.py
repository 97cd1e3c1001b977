"""Voucher rules (凭证规则): a table in data maps each document type to voucher lines.

The rule table is validated at load: every account exists in the chart, every amount is known, and
each document type's debits equal its credits for any document (checked symbolically), so a rule
table that could produce an unbalanced voucher is refused before it is used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from importlib import resources
from typing import Any

# Each amount as a combination of the independent quantities (net, tax, cost, gain, loss).
_BASIS = ("net", "tax", "cost", "gain", "loss")
AMOUNT_VECTORS: dict[str, tuple[int, ...]] = {
    "gross": (1, 1, 0, 0, 0),
    "net": (1, 0, 0, 0, 0),
    "tax": (0, 1, 0, 0, 0),
    "cost": (0, 0, 1, 0, 0),
    "gain": (0, 0, 0, 1, 0),
    "loss": (0, 0, 0, 0, 1),
    "variance": (1, 0, -1, 0, 0),
}
PAYMENT_ACCOUNT = "$payment"


class VoucherRuleError(ValueError):
    """The rule table is malformed or could produce an unbalanced voucher."""


@dataclass(frozen=True, slots=True)
class RuleLine:
    account: str
    side: str  # "debit" or "credit"
    amount: str
    memo: str


@dataclass(frozen=True, slots=True)
class VoucherRules:
    version: str
    effective_from: date
    payment_accounts: dict[str, str]
    documents: dict[str, tuple[RuleLine, ...]]
    variance_account: str  # where a reversal's cost difference goes (5401)
    inventory_account: str  # stock outside transit (1405)
    transit_account: str  # stock in transit (1402)
    variance_memo: str

    def payment_account(self, payment: str | None) -> str:
        return self.payment_accounts.get(payment or "cash", self.payment_accounts["cash"])


@dataclass(frozen=True, slots=True)
class VoucherLine:
    account: str
    debit_fen: int
    credit_fen: int
    memo: str


def load_rules(data: dict[str, Any] | None = None, accounts: set[str] | None = None) -> VoucherRules:
    """Load and validate the rule table (the shipped one when `data` is None)."""
    if data is None:
        text = resources.files("edge.ledger").joinpath("data", "voucher_rules.json").read_text("utf-8")
        data = json.loads(text)
    if accounts is None:
        chart = json.loads(
            resources.files("edge.ledger")
            .joinpath("data", f"chart_{data.get('chart', 'small_enterprise')}.json")
            .read_text("utf-8")
        )
        accounts = {a["code"] for a in chart["accounts"]}
    try:
        payments = dict(data["payment_accounts"])
        if "cash" not in payments:
            raise VoucherRuleError("payment_accounts must name the account for cash")
        documents: dict[str, tuple[RuleLine, ...]] = {}
        for doc_type, lines in data["documents"].items():
            parsed = tuple(
                RuleLine(line["account"], line["side"], line["amount"], line.get("memo", "")) for line in lines
            )
            _check_balanced(doc_type, parsed, accounts | {PAYMENT_ACCOUNT})
            documents[doc_type] = parsed
        reversal = data["reversal"]
        rules = VoucherRules(
            version=str(data["version"]),
            effective_from=date.fromisoformat(data["effective_from"]),
            payment_accounts=payments,
            documents=documents,
            variance_account=reversal["variance_account"],
            inventory_account=reversal["inventory_account"],
            transit_account=reversal["transit_account"],
            variance_memo=reversal.get("memo", ""),
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, VoucherRuleError):
            raise
        raise VoucherRuleError(f"malformed voucher rule table: {exc!r}") from exc
    for account in [
        *payments.values(),
        rules.variance_account,
        rules.inventory_account,
        rules.transit_account,
    ]:
        if account not in accounts:
            raise VoucherRuleError(f"account {account} is not in the chart of accounts")
    return rules


def _check_balanced(doc_type: str, lines: tuple[RuleLine, ...], accounts: set[str]) -> None:
    debit = [0] * len(_BASIS)
    credit = [0] * len(_BASIS)
    for line in lines:
        if line.account not in accounts:
            raise VoucherRuleError(f"{doc_type}: account {line.account} is not in the chart of accounts")
        if line.amount not in AMOUNT_VECTORS:
            raise VoucherRuleError(f"{doc_type}: unknown amount {line.amount!r}; known: {sorted(AMOUNT_VECTORS)}")
        if line.side not in ("debit", "credit"):
            raise VoucherRuleError(f"{doc_type}: side must be debit or credit, not {line.side!r}")
        target = debit if line.side == "debit" else credit
        for i, coefficient in enumerate(AMOUNT_VECTORS[line.amount]):
            target[i] += coefficient
    if debit != credit:
        raise VoucherRuleError(f"{doc_type}: debits and credits do not balance for every document")


def build_voucher(
    rules: VoucherRules, doc_type: str, amounts: dict[str, int], payment: str | None
) -> list[VoucherLine]:
    """Voucher lines for a document from its amounts; zero lines are left out.

    A negative amount goes to the other side, so a voucher never shows a negative figure except in a
    red-letter reversal.
    """
    lines: list[VoucherLine] = []
    for rule in rules.documents[doc_type]:
        value = _amount(rule.amount, amounts)
        if value == 0:
            continue
        account = rules.payment_account(payment) if rule.account == PAYMENT_ACCOUNT else rule.account
        debit_side = (rule.side == "debit") == (value > 0)
        magnitude = abs(value)
        lines.append(VoucherLine(account, magnitude if debit_side else 0, 0 if debit_side else magnitude, rule.memo))
    return lines


def _amount(name: str, amounts: dict[str, int]) -> int:
    vector = AMOUNT_VECTORS[name]
    return sum(c * amounts.get(basis, 0) for c, basis in zip(vector, _BASIS, strict=True))
