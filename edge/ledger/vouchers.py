"""Voucher rules (凭证规则): a versioned, effective-dated table in data maps each document type to voucher lines.

A rule table says, per document type, one or more variants: the first whose `when` conditions match the
document's facts (its reason, loss kind, payment, ...) gives the voucher lines. Each line names an account,
a side, an amount and whether it is written red-letter (红字: a negative figure on its own side). Amounts
are the ledger's base amounts (net, tax, cost, ...) or combinations of them the table defines in data.

The table is validated at load: every account exists in the chart and is a leaf, every amount is known,
the last variant of each type applies to any document, and each variant's debits equal its credits for
any document (checked symbolically over the base amounts). A table that could produce an unbalanced
voucher is refused before it is used.

Versions (`RuleBook`): each table has a version and the date it takes effect from; a posting uses the
version in effect on its business date and records it on the voucher. Installing a version never
touches vouchers already posted.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from edge.ledger.commands import DocType, WriteOffReason

# The amounts the ledger computes (stock documents) or an entry brings (finance entries), in fen.
BASE_AMOUNTS: dict[str, str] = {
    "net": "line totals excluding VAT / 不含税金额",
    "tax": "VAT on the lines, rounded half-up once per line / 税额",
    "cost": "value of the stock moved, at moving-average cost / 成本",
    "gain": "value of stocktake gains / 盘盈金额",
    "loss": "value of stocktake losses, or the pending loss an approval clears / 盘亏或待处理损失",
    "input_tax_out": "input VAT transferred out on goods lost: cost x the item's VAT rate per line / 进项税额转出",
    "estimate": "the receipts' estimated (暂估) value an invoice clears / 冲回的暂估金额",
    "paid": "amount paid / 付款金额",
}
PAYMENT_ACCOUNT = "$payment"
SIDES = ("debit", "credit")


class VoucherRuleError(ValueError):
    """The rule table is malformed or could produce an unbalanced voucher; `zh` and `en` say why."""

    def __init__(self, zh: str, en: str) -> None:
        super().__init__(en)
        self.zh = zh
        self.en = en

    def __reduce__(self) -> tuple[type[VoucherRuleError], tuple[str, str]]:
        return (VoucherRuleError, (self.zh, self.en))


@dataclass(frozen=True, slots=True)
class RuleLine:
    account: str
    side: str  # "debit" or "credit"
    amount: str
    memo: str
    red: bool = False  # red-letter: the amount is written negative on its own side


@dataclass(frozen=True, slots=True)
class Variant:
    when: tuple[tuple[str, tuple[str, ...]], ...]  # fact -> allowed values; empty = any document
    lines: tuple[RuleLine, ...]

    def matches(self, facts: Mapping[str, str]) -> bool:
        return all(facts.get(name, "") in allowed for name, allowed in self.when)


@dataclass(frozen=True, slots=True)
class VoucherRules:
    version: str
    effective_from: date
    chart: str
    payment_accounts: dict[str, str]
    derived: dict[str, dict[str, int]]  # amount name -> coefficients over base amounts
    loss_kinds: dict[str, str]  # write-off reason -> loss kind (abnormal, reasonable, disaster, counting)
    documents: dict[str, tuple[Variant, ...]]
    variance_account: str  # where a reversal's cost difference goes (5401)
    inventory_account: str  # stock outside transit (1405)
    transit_account: str  # stock in transit (1402)
    variance_memo: str
    body: str  # the table as installed (JSON), for the record

    def payment_account(self, payment: str | None, default: str = "cash") -> str:
        return self.payment_accounts.get(payment or default, self.payment_accounts[default])

    def loss_kind(self, reason: str | None) -> str:
        return self.loss_kinds.get(reason or "", "")


@dataclass(frozen=True, slots=True)
class VoucherLine:
    account: str
    debit_fen: int
    credit_fen: int
    memo: str


def load_rules(data: Mapping[str, Any], accounts: Mapping[str, bool]) -> VoucherRules:
    """Parse and validate a rule table against a chart (`accounts`: code -> is a leaf)."""
    try:
        return _parse(data, accounts)
    except VoucherRuleError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise VoucherRuleError(f"凭证规则表格式错误: {exc!r}", f"malformed voucher rule table: {exc!r}") from exc


def _parse(data: Mapping[str, Any], accounts: Mapping[str, bool]) -> VoucherRules:
    if not isinstance(data, Mapping):
        raise VoucherRuleError("凭证规则表须为 JSON 对象", "a voucher rule table is a JSON object")
    version = str(data["version"])
    if not 1 <= len(version) <= 40:
        raise VoucherRuleError("版本号须为 1 到 40 个字符", "version must be 1..40 characters")
    payments = {str(k): str(v) for k, v in dict(data["payment_accounts"]).items()}
    if "cash" not in payments or "bank" not in payments:
        raise VoucherRuleError(
            "payment_accounts 须指定现金 (cash) 和银行 (bank) 科目",
            "payment_accounts must name the accounts for cash and bank",
        )
    derived = _parse_derived(data.get("amounts", {}))
    loss_kinds = {str(k): str(v) for k, v in dict(data.get("write_off_loss_kinds", {})).items()}
    missing_kinds = [r.value for r in WriteOffReason if r.value not in loss_kinds]
    if missing_kinds:
        raise VoucherRuleError(
            f"write_off_loss_kinds 须为每个报损原因指定损失类别，缺少: {missing_kinds}",
            f"write_off_loss_kinds must map every write-off reason; missing: {missing_kinds}",
        )
    documents: dict[str, tuple[Variant, ...]] = {}
    for doc_type, spec in dict(data["documents"]).items():
        if doc_type not in {t.value for t in DocType} or doc_type == DocType.REVERSAL:
            raise VoucherRuleError(
                f"规则表中有未知单据类型: {doc_type}", f"unknown document type in rule table: {doc_type}"
            )
        variants = _parse_variants(doc_type, spec)
        for variant in variants:
            _check_lines(doc_type, variant.lines, accounts, derived)
        documents[doc_type] = variants
    # A version installed before transfer settlements existed has no rule for them; settling is refused under it.
    missing = [
        t.value for t in DocType if t not in (DocType.REVERSAL, DocType.TRANSFER_SETTLE) and t.value not in documents
    ]
    if missing:
        raise VoucherRuleError(f"规则表缺少这些单据类型的规则: {missing}", f"the rule table has no rule for: {missing}")
    reversal = data["reversal"]
    rules = VoucherRules(
        version=version,
        effective_from=date.fromisoformat(str(data["effective_from"])),
        chart=str(data.get("chart", "")),
        payment_accounts=payments,
        derived=derived,
        loss_kinds=loss_kinds,
        documents=documents,
        variance_account=str(reversal["variance_account"]),
        inventory_account=str(reversal["inventory_account"]),
        transit_account=str(reversal["transit_account"]),
        variance_memo=str(reversal.get("memo", "")),
        body=json.dumps(data, ensure_ascii=False, sort_keys=True),
    )
    for account in [*payments.values(), rules.variance_account, rules.inventory_account, rules.transit_account]:
        _check_account("rule table", account, accounts)
    return rules


def _parse_derived(spec: Any) -> dict[str, dict[str, int]]:
    derived: dict[str, dict[str, int]] = {}
    for name, combination in dict(spec).items():
        if name in BASE_AMOUNTS:
            raise VoucherRuleError(
                f"金额 {name!r} 是基础金额，不能重新定义", f"amount {name!r} is a base amount and cannot be redefined"
            )
        if not isinstance(combination, Mapping) or not combination:
            raise VoucherRuleError(
                f"金额 {name!r} 须为 基础金额 -> 整数系数 的对象",
                f"amount {name!r} must be an object of base amount -> integer coefficient",
            )
        coefficients: dict[str, int] = {}
        for base, coefficient in combination.items():
            if base not in BASE_AMOUNTS:
                raise VoucherRuleError(
                    f"金额 {name!r} 用了 {base!r}，它不是基础金额: {sorted(BASE_AMOUNTS)}",
                    f"amount {name!r} uses {base!r}, which is not a base amount: {sorted(BASE_AMOUNTS)}",
                )
            if not isinstance(coefficient, int) or isinstance(coefficient, bool) or not -10 <= coefficient <= 10:
                raise VoucherRuleError(
                    f"金额 {name!r}: {base!r} 的系数须为 -10 到 10 的整数",
                    f"amount {name!r}: coefficient of {base!r} must be an integer -10..10",
                )
            coefficients[base] = coefficient
        derived[str(name)] = coefficients
    return derived


def _parse_variants(doc_type: str, spec: Any) -> tuple[Variant, ...]:
    if isinstance(spec, list) and all(isinstance(x, Mapping) and "account" in x for x in spec):
        spec = [{"when": {}, "lines": spec}]  # a bare list of lines: one variant for every document
    if not isinstance(spec, list) or not spec:
        raise VoucherRuleError(
            f"{doc_type}: 规则须为非空的变体列表", f"{doc_type}: rules must be a non-empty list of variants"
        )
    variants: list[Variant] = []
    for raw in spec:
        when_raw = dict(raw.get("when", {}))
        when = tuple(
            (str(fact), tuple(str(v) for v in (values if isinstance(values, list) else [values])))
            for fact, values in sorted(when_raw.items())
        )
        lines = tuple(
            RuleLine(
                str(line["account"]),
                str(line["side"]),
                str(line["amount"]),
                str(line.get("memo", "")),
                bool(line.get("red", False)),
            )
            for line in raw["lines"]
        )
        variants.append(Variant(when, lines))
    if variants[-1].when:
        raise VoucherRuleError(
            f"{doc_type}: 最后一个变体须适用于任何单据 (不带 when 条件)",
            f"{doc_type}: the last variant must apply to any document (no `when`)",
        )
    return tuple(variants)


def _check_account(where: str, account: str, accounts: Mapping[str, bool]) -> None:
    if account not in accounts:
        raise VoucherRuleError(
            f"{where}: 科目 {account} 不在科目表中", f"{where}: account {account} is not in the chart of accounts"
        )
    if not accounts[account]:
        raise VoucherRuleError(
            f"{where}: 科目 {account} 有下级科目，只有末级科目可以记账",
            f"{where}: account {account} has sub-accounts; only leaf accounts take postings",
        )


def _check_lines(
    doc_type: str, lines: tuple[RuleLine, ...], accounts: Mapping[str, bool], derived: dict[str, dict[str, int]]
) -> None:
    debit: dict[str, int] = {}
    credit: dict[str, int] = {}
    for line in lines:
        if line.account != PAYMENT_ACCOUNT:
            _check_account(doc_type, line.account, accounts)
        if line.side not in SIDES:
            raise VoucherRuleError(
                f"{doc_type}: 方向须为 debit (借) 或 credit (贷)，不是 {line.side!r}",
                f"{doc_type}: side must be debit or credit, not {line.side!r}",
            )
        vector = _vector(line.amount, derived)
        if vector is None:
            known = sorted([*BASE_AMOUNTS, *derived])
            raise VoucherRuleError(
                f"{doc_type}: 未知金额 {line.amount!r}，可用: {known}",
                f"{doc_type}: unknown amount {line.amount!r}; known: {known}",
            )
        target = debit if line.side == "debit" else credit
        sign = -1 if line.red else 1
        for base, coefficient in vector.items():
            target[base] = target.get(base, 0) + sign * coefficient
    if {k: v for k, v in debit.items() if v} != {k: v for k, v in credit.items() if v}:
        raise VoucherRuleError(
            f"{doc_type}: 并非对每张单据都借贷平衡", f"{doc_type}: debits and credits do not balance for every document"
        )


def _vector(name: str, derived: dict[str, dict[str, int]]) -> dict[str, int] | None:
    if name in BASE_AMOUNTS:
        return {name: 1}
    return derived.get(name)


def build_voucher(
    rules: VoucherRules,
    doc_type: str,
    amounts: Mapping[str, int],
    facts: Mapping[str, str] | None = None,
    *,
    payment: str | None = None,
    default_payment: str = "cash",
) -> list[VoucherLine]:
    """Voucher lines for a document from its amounts and facts; zero lines are left out.

    A negative amount on an ordinary line goes to the other side, so a voucher never shows a negative
    figure except on red-letter lines and in reversals.
    """
    facts = facts or {}
    variant = next(v for v in rules.documents[doc_type] if v.matches(facts))
    lines: list[VoucherLine] = []
    for rule in variant.lines:
        value = amount_of(rules, rule.amount, amounts)
        if value == 0:
            continue
        account = rules.payment_account(payment, default_payment) if rule.account == PAYMENT_ACCOUNT else rule.account
        if rule.red:
            figure = -value
            debit_side = rule.side == "debit"
        else:
            figure = abs(value)
            debit_side = (rule.side == "debit") == (value > 0)
        lines.append(VoucherLine(account, figure if debit_side else 0, 0 if debit_side else figure, rule.memo))
    return lines


def amount_of(rules: VoucherRules, name: str, amounts: Mapping[str, int]) -> int:
    vector = _vector(name, rules.derived)
    assert vector is not None  # validated at load
    return sum(coefficient * amounts.get(base, 0) for base, coefficient in vector.items())


class RuleBook:
    """The voucher rule versions of a company, by the date each takes effect.

    Built from given versions, or read from the `voucher_rule_versions` table (and re-read whenever a
    version has been installed there since, so a running writer picks up a new version at once).
    """

    def __init__(self, versions: Iterable[VoucherRules] = (), *, from_db: bool = False) -> None:
        self._versions = sorted(versions, key=lambda r: r.effective_from)
        self._from_db = from_db
        self._seen: tuple[int, int] | None = None

    @property
    def versions(self) -> list[VoucherRules]:
        return list(self._versions)

    def for_date(self, conn: sqlite3.Connection | None, day: date) -> VoucherRules:
        """The version in effect on `day`: the latest whose effective_from is on or before it."""
        if self._from_db and conn is not None:
            self._refresh(conn)
        chosen: VoucherRules | None = None
        for rules in self._versions:
            if rules.effective_from <= day:
                chosen = rules
        if chosen is None:
            raise VoucherRuleError(f"{day} 没有生效的凭证规则", f"no voucher rule version is in effect on {day}")
        return chosen

    def _refresh(self, conn: sqlite3.Connection) -> None:
        row = conn.execute("SELECT COUNT(*), COALESCE(MAX(rowid), 0) FROM voucher_rule_versions").fetchone()
        seen = (int(row[0]), int(row[1]))
        if seen == self._seen:
            return
        accounts = chart_leaves(conn)
        self._versions = sorted(
            (
                load_rules(json.loads(body), accounts)
                for (body,) in conn.execute("SELECT body FROM voucher_rule_versions ORDER BY effective_from")
            ),
            key=lambda r: r.effective_from,
        )
        self._seen = seen


def chart_leaves(conn: sqlite3.Connection) -> dict[str, bool]:
    """The installed chart: account code -> whether it is a leaf (only leaves take postings)."""
    return {str(code): bool(leaf) for code, leaf in conn.execute("SELECT code, leaf FROM accounts")}
