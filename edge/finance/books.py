"""Books (账簿): trial balance, general ledger, AP ageing by supplier, stock valuation and the books check.

Pure queries over the voucher tables; see docs/books.md. Money is fen. Inside, a balance is one signed
number (debit minus credit); outside it is shown the way Chinese books show it: a side (借 debit, 贷 credit,
平 nil) and a non-negative amount. A period is a calendar month of the vouchers' dates (`YYYY-MM`).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from edge.finance.errors import InvalidDate, InvalidPeriod, UnknownAccount
from edge.ledger.masterdata import TRANSIT_LOCATION
from edge.ledger.money import div_round_half_up, format_yuan

DEBIT, CREDIT, NIL = "借", "贷", "平"
DEBIT_KINDS = frozenset({"asset", "cost", "expense"})  # normal balance on the debit side; the others credit
AP_ACCOUNT = "220201"  # 应付账款-应付货款, by supplier (documents.counterparty)
INVENTORY_ACCOUNT = "1405"  # 库存商品: stock outside transit
TRANSIT_ACCOUNT = "1402"  # 在途物资: stock in the transit location
# Ageing buckets (账龄): label, first and last day of age (None: no upper bound).
AGE_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("0-30", 0, 30),
    ("31-60", 31, 60),
    ("61-90", 61, 90),
    ("90+", 91, None),
)
# Vouchers whose id order disagrees with their date order are corrected one by one; beyond this many the
# sums are taken by a join over every line instead (correct, only slower).
MISFILED_LIMIT = 20_000
_PERIOD = re.compile(r"^([0-9]{4})-([0-9]{2})$")
_ACCOUNT_CODE = re.compile(r"^[0-9]{1,20}$")


# --- periods, sides, the chart ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Period:
    """An accounting period (会计期间): one calendar month."""

    year: int
    month: int

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def end(self) -> date:
        """The first day after the period."""
        return date(self.year + 1, 1, 1) if self.month == 12 else date(self.year, self.month + 1, 1)

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)


def parse_period(text: str | Period) -> Period:
    """`YYYY-MM` (e.g. 2026-11) -> Period; anything else is refused in Chinese and English."""
    if isinstance(text, Period):
        return text
    match = _PERIOD.match(text.strip()) if isinstance(text, str) and len(text) <= 20 else None
    shown = repr(text)[:40]
    if match is None or not 1 <= int(match.group(2)) <= 12 or not 1900 <= int(match.group(1)) <= 9998:
        raise InvalidPeriod(
            f"会计期间无效: {shown}，格式应为 YYYY-MM，例如 2026-11",
            f"invalid period {shown}: use YYYY-MM, e.g. 2026-11",
            field="period",
        )
    return Period(int(match.group(1)), int(match.group(2)))


def parse_day(text: str | date, field: str = "as_of") -> date:
    """An ISO date (YYYY-MM-DD), refused clearly otherwise."""
    if isinstance(text, date):
        return text
    try:
        if not isinstance(text, str) or len(text.strip()) != 10:
            raise ValueError(text)
        return date.fromisoformat(text.strip())
    except ValueError:
        shown = repr(text)[:40]
        raise InvalidDate(
            f"日期无效: {shown}，格式应为 YYYY-MM-DD", f"invalid date {shown}: use YYYY-MM-DD", field=field
        ) from None


def side_of(signed: int) -> str:
    """The side of a debit-minus-credit balance: 借 (debit), 贷 (credit) or 平 (nil)."""
    return DEBIT if signed > 0 else CREDIT if signed < 0 else NIL


def split_balance(signed: int) -> tuple[int, int]:
    """A signed balance as the (debit column, credit column) pair of a trial balance."""
    return (signed, 0) if signed > 0 else (0, -signed)


@dataclass(frozen=True, slots=True)
class AccountInfo:
    code: str
    name: str
    name_en: str
    kind: str
    parent: str | None
    level: int  # 1 for 一级科目
    leaf: bool

    @property
    def normal_side(self) -> str:
        return DEBIT if self.kind in DEBIT_KINDS else CREDIT


def chart_of(conn: sqlite3.Connection) -> dict[str, AccountInfo]:
    """The installed chart; an account's parent is the longest other code that is a prefix of its own."""
    rows = conn.execute("SELECT code, name, name_en, kind FROM accounts ORDER BY code").fetchall()
    codes = [str(r[0]) for r in rows]
    parents: dict[str, str | None] = {}
    for code in codes:
        prefixes = [c for c in codes if c != code and code.startswith(c)]
        parents[code] = max(prefixes, key=len) if prefixes else None

    def level(code: str) -> int:
        parent = parents[code]
        return 1 if parent is None else level(parent) + 1

    has_children = {p for p in parents.values() if p is not None}
    return {
        str(r[0]): AccountInfo(
            str(r[0]), str(r[1]), str(r[2]), str(r[3]), parents[str(r[0])], level(str(r[0])), r[0] not in has_children
        )
        for r in rows
    }


def _account(conn: sqlite3.Connection, code: str) -> tuple[AccountInfo, dict[str, AccountInfo]]:
    chart = chart_of(conn)
    shown = repr(code)[:40]
    if not isinstance(code, str) or not _ACCOUNT_CODE.match(code) or code not in chart:
        raise UnknownAccount(
            f"科目不存在: {shown}，请使用科目表中的科目代码 (例如 1405)",
            f"no such account: {shown}; use an account code of the chart (e.g. 1405)",
            field="account",
        )
    return chart[code], chart


def _descendants(code: str, chart: Mapping[str, AccountInfo]) -> list[str]:
    """The account and every account under it."""
    return [c for c in chart if c.startswith(code)]


# --- sums by account over a date range -------------------------------------------------------


def _first_voucher_from(conn: sqlite3.Connection, day: date) -> int:
    """The smallest voucher id dated on or after `day` (one past the last voucher when there is none)."""
    row = conn.execute("SELECT MIN(id) FROM vouchers WHERE date >= ?", (day.isoformat(),)).fetchone()
    if row[0] is not None:
        return int(row[0])
    return int(conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM vouchers").fetchone()[0])


def account_sums(
    conn: sqlite3.Connection,
    start: date,
    end: date,
    accounts: Iterable[str],
    *,
    misfiled_limit: int = MISFILED_LIMIT,
) -> dict[str, tuple[int, int, int]]:
    """Per account: the balance before `start` (debit minus credit), and the debits and credits dated in
    [start, end).

    Vouchers are numbered in posting order, which is date order but for the odd voucher dated back. So
    the sums are taken over voucher id ranges (a range scan of the account's index entries), and the
    vouchers whose date disagrees with their place are found on the date index and moved one by one.
    More than `misfiled_limit` of those (a negative limit: always) and the sums come from a join instead.
    """
    codes = list(dict.fromkeys(accounts))
    cut_start = _first_voucher_from(conn, start)
    cut_end = _first_voucher_from(conn, end)  # >= cut_start: later dates are a subset
    misfiled = conn.execute(
        "SELECT id, date FROM vouchers WHERE date < ? AND id >= ?"
        " UNION ALL SELECT id, date FROM vouchers WHERE date >= ? AND date < ? AND id >= ? LIMIT ?",
        (start.isoformat(), cut_start, start.isoformat(), end.isoformat(), cut_end, misfiled_limit + 1),
    ).fetchall()
    if len(misfiled) > misfiled_limit:
        return _account_sums_by_join(conn, start, end, codes)
    sums: dict[str, list[int]] = {}
    for code in codes:
        row = conn.execute(
            "SELECT COALESCE(SUM(CASE WHEN voucher_id < ? THEN debit_fen - credit_fen END), 0),"
            " COALESCE(SUM(CASE WHEN voucher_id >= ? THEN debit_fen END), 0),"
            " COALESCE(SUM(CASE WHEN voucher_id >= ? THEN credit_fen END), 0)"
            " FROM voucher_lines WHERE account = ? AND voucher_id < ?",
            (cut_start, cut_start, cut_start, code, cut_end),
        ).fetchone()
        sums[code] = [int(row[0]), int(row[1]), int(row[2])]
    wanted = set(codes)
    for voucher_id, day in misfiled:
        counted_in_period = voucher_id < cut_end  # ids below cut_start are always dated before start
        before = day < start.isoformat()
        for account, debit, credit in conn.execute(
            "SELECT account, debit_fen, credit_fen FROM voucher_lines WHERE voucher_id = ?", (voucher_id,)
        ):
            if account not in wanted:
                continue
            figures = sums[account]
            if counted_in_period:
                figures[1] -= debit
                figures[2] -= credit
            if before:
                figures[0] += debit - credit
            else:
                figures[1] += debit
                figures[2] += credit
    return {code: (v[0], v[1], v[2]) for code, v in sums.items()}


def _account_sums_by_join(
    conn: sqlite3.Connection, start: date, end: date, codes: list[str]
) -> dict[str, tuple[int, int, int]]:
    sums = {code: (0, 0, 0) for code in codes}
    for account, opening, debit, credit in conn.execute(
        "SELECT l.account, COALESCE(SUM(CASE WHEN v.date < :s THEN l.debit_fen - l.credit_fen END), 0),"
        " COALESCE(SUM(CASE WHEN v.date >= :s THEN l.debit_fen END), 0),"
        " COALESCE(SUM(CASE WHEN v.date >= :s THEN l.credit_fen END), 0)"
        " FROM voucher_lines l JOIN vouchers v ON v.id = l.voucher_id WHERE v.date < :e GROUP BY l.account",
        {"s": start.isoformat(), "e": end.isoformat()},
    ):
        if account in sums:
            sums[account] = (int(opening), int(debit), int(credit))
    return sums


# --- trial balance (科目余额表 / 试算平衡表) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrialBalanceRow:
    code: str
    name: str
    name_en: str
    kind: str
    level: int
    parent: str | None
    leaf: bool
    normal_side: str  # 借 or 贷, by the account's kind
    opening_side: str  # 借 / 贷 / 平
    opening_debit_fen: int
    opening_credit_fen: int
    debit_fen: int  # 本期借方发生额 (red-letter lines count negative)
    credit_fen: int
    closing_side: str
    closing_debit_fen: int
    closing_credit_fen: int


@dataclass(frozen=True, slots=True)
class TrialBalanceTotals:
    opening_debit_fen: int
    opening_credit_fen: int
    debit_fen: int
    credit_fen: int
    closing_debit_fen: int
    closing_credit_fen: int


@dataclass(frozen=True, slots=True)
class TrialBalance:
    period: str
    first_day: str
    last_day: str
    rows: tuple[TrialBalanceRow, ...]
    totals: TrialBalanceTotals  # over the first-level accounts (一级科目)
    balanced: bool  # opening, period and closing debits equal their credits


def trial_balance(conn: sqlite3.Connection, period: str | Period, *, include_empty: bool = False) -> TrialBalance:
    """Opening balance, period debits and credits and closing balance of every account, parents rolled up
    from the accounts under them. Accounts with nothing to show are left out unless `include_empty`."""
    p = parse_period(period)
    chart = chart_of(conn)
    sums = account_sums(conn, p.first_day, p.end, chart)
    rolled = {code: list(sums[code]) for code in chart}
    for code in sorted(chart, key=lambda c: -chart[c].level):
        parent = chart[code].parent
        if parent is not None:
            for i in range(3):
                rolled[parent][i] += rolled[code][i]
    rows: list[TrialBalanceRow] = []
    totals = [0] * 6
    for code, account in chart.items():
        opening, debit, credit = rolled[code]
        closing = opening + debit - credit
        opening_cols = split_balance(opening)
        closing_cols = split_balance(closing)
        if account.parent is None:
            for i, figure in enumerate((*opening_cols, debit, credit, *closing_cols)):
                totals[i] += figure
        if not include_empty and not (opening or debit or credit or closing):
            continue
        rows.append(
            TrialBalanceRow(
                code=code,
                name=account.name,
                name_en=account.name_en,
                kind=account.kind,
                level=account.level,
                parent=account.parent,
                leaf=account.leaf,
                normal_side=account.normal_side,
                opening_side=side_of(opening),
                opening_debit_fen=opening_cols[0],
                opening_credit_fen=opening_cols[1],
                debit_fen=debit,
                credit_fen=credit,
                closing_side=side_of(closing),
                closing_debit_fen=closing_cols[0],
                closing_credit_fen=closing_cols[1],
            )
        )
    total = TrialBalanceTotals(*totals)
    return TrialBalance(
        period=p.label,
        first_day=p.first_day.isoformat(),
        last_day=p.last_day.isoformat(),
        rows=tuple(rows),
        totals=total,
        balanced=total.opening_debit_fen == total.opening_credit_fen
        and total.debit_fen == total.credit_fen
        and total.closing_debit_fen == total.closing_credit_fen,
    )


# --- general ledger (明细分类账) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LedgerLine:
    date: str
    voucher_id: int
    voucher_no: str
    line_no: int
    account: str  # the leaf account of the line (the asked account or one under it)
    memo: str  # 摘要: the line's memo, else the voucher's
    voucher_memo: str
    document_id: int
    doc_no: str
    doc_type: str
    counterparty: str | None
    debit_fen: int
    credit_fen: int
    balance_side: str  # running balance after this line
    balance_fen: int


@dataclass(frozen=True, slots=True)
class GeneralLedger:
    account: str
    name: str
    name_en: str
    kind: str
    normal_side: str
    accounts: tuple[str, ...]  # the account and the accounts under it, whose lines are listed
    period: str
    first_day: str
    last_day: str
    opening_side: str
    opening_fen: int
    lines: tuple[LedgerLine, ...]
    debit_fen: int
    credit_fen: int
    closing_side: str
    closing_fen: int


def general_ledger(conn: sqlite3.Connection, account: str, period: str | Period) -> GeneralLedger:
    """Every voucher line of an account (and the accounts under it) in a period, with the opening balance,
    the running balance after each line and the closing balance."""
    p = parse_period(period)
    info, chart = _account(conn, account)
    codes = _descendants(info.code, chart)
    sums = account_sums(conn, p.first_day, p.end, codes)
    balance = sum(s[0] for s in sums.values())
    opening = balance
    placeholders = ", ".join("?" * len(codes))
    # Vouchers of the period first (date index), then their lines: a month is a small slice of a year.
    rows = conn.execute(
        "SELECT v.date, v.id, v.voucher_no, v.memo, l.line_no, l.account, l.debit_fen, l.credit_fen, l.memo,"
        " d.id, d.doc_no, d.type, d.counterparty"
        " FROM vouchers v CROSS JOIN voucher_lines l ON l.voucher_id = v.id JOIN documents d ON d.id = v.document_id"
        f" WHERE v.date >= ? AND v.date < ? AND l.account IN ({placeholders}) ORDER BY v.date, v.id, l.line_no",
        (p.first_day.isoformat(), p.end.isoformat(), *codes),
    ).fetchall()
    lines: list[LedgerLine] = []
    debit_total = credit_total = 0
    for r in rows:
        debit, credit = int(r[6]), int(r[7])
        balance += debit - credit
        debit_total += debit
        credit_total += credit
        lines.append(
            LedgerLine(
                date=r[0],
                voucher_id=int(r[1]),
                voucher_no=r[2],
                line_no=int(r[4]),
                account=r[5],
                memo=r[8] or r[3],
                voucher_memo=r[3],
                document_id=int(r[9]),
                doc_no=r[10],
                doc_type=r[11],
                counterparty=r[12],
                debit_fen=debit,
                credit_fen=credit,
                balance_side=side_of(balance),
                balance_fen=abs(balance),
            )
        )
    return GeneralLedger(
        account=info.code,
        name=info.name,
        name_en=info.name_en,
        kind=info.kind,
        normal_side=info.normal_side,
        accounts=tuple(codes),
        period=p.label,
        first_day=p.first_day.isoformat(),
        last_day=p.last_day.isoformat(),
        opening_side=side_of(opening),
        opening_fen=abs(opening),
        lines=tuple(lines),
        debit_fen=debit_total,
        credit_fen=credit_total,
        closing_side=side_of(balance),
        closing_fen=abs(balance),
    )


def account_balance(conn: sqlite3.Connection, account: str, as_of: date | None = None) -> int:
    """Debit minus credit of an account and the accounts under it, over vouchers dated up to `as_of`
    (all vouchers when None)."""
    info, chart = _account(conn, account)
    codes = _descendants(info.code, chart)
    if as_of is None:
        placeholders = ", ".join("?" * len(codes))
        row = conn.execute(
            f"SELECT COALESCE(SUM(debit_fen - credit_fen), 0) FROM voucher_lines WHERE account IN ({placeholders})",
            codes,
        ).fetchone()
        return int(row[0])
    after = as_of + timedelta(days=1)
    return sum(s[0] for s in account_sums(conn, after, after, codes).values())


# --- AP ageing by supplier (应付账款账龄) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenInvoice:
    """What is still owed on one document that raised the payable (an invoice entry)."""

    document_id: int
    doc_no: str
    doc_type: str
    date: str
    amount_fen: int
    open_fen: int
    age_days: int
    bucket: str


@dataclass(frozen=True, slots=True)
class SupplierAgeing:
    supplier: str | None  # documents.counterparty; None for payable lines without a supplier
    name: str
    balance_fen: int  # credit balance of 220201 for the supplier (negative: paid more than invoiced)
    buckets: dict[str, int]  # open amounts by age
    unapplied_fen: int  # payments and credits not matched to any invoice (a debit balance)
    open_invoices: tuple[OpenInvoice, ...]


@dataclass(frozen=True, slots=True)
class ApAgeing:
    as_of: str
    account: str
    bucket_labels: tuple[str, ...]
    suppliers: tuple[SupplierAgeing, ...]
    total_fen: int
    buckets: dict[str, int]
    unapplied_fen: int
    gl_balance_fen: int  # credit balance of the account in the general ledger on as_of
    agrees: bool  # the suppliers add up to the general ledger


def bucket_of(age_days: int) -> str:
    for label, low, high in AGE_BUCKETS:
        if age_days >= low and (high is None or age_days <= high):
            return label
    return AGE_BUCKETS[0][0]  # an invoice dated after as_of is never listed; a negative age cannot occur


def ap_ageing(conn: sqlite3.Connection, as_of: date | str, *, account: str = AP_ACCOUNT) -> ApAgeing:
    """The payable per supplier on `as_of`, aged by the dates of the invoices still open.

    Per supplier, the documents that raised the payable (invoices) are settled oldest first (FIFO) by
    those that lowered it (payments, credit notes); a reversal is netted with the document it reverses.
    """
    day = parse_day(as_of)
    _account(conn, account)
    rows = conn.execute(
        "SELECT d.id, d.doc_no, d.type, d.counterparty, d.reverses_id, v.date, v.id,"
        " SUM(l.credit_fen - l.debit_fen)"
        " FROM voucher_lines l JOIN vouchers v ON v.id = l.voucher_id JOIN documents d ON d.id = v.document_id"
        " WHERE l.account = ? AND v.date <= ? GROUP BY v.id ORDER BY v.date, v.id",
        (account, day.isoformat()),
    ).fetchall()
    net: dict[int, int] = {}
    meta: dict[int, tuple[str, str, str | None, str, int]] = {}
    for doc_id, doc_no, doc_type, counterparty, reverses_id, vdate, voucher_id, amount in rows:
        target = reverses_id if reverses_id in net else doc_id
        net[target] = net.get(target, 0) + int(amount)
        if target == doc_id:
            meta[doc_id] = (doc_no, doc_type, counterparty, vdate, int(voucher_id))
    by_supplier: dict[str | None, list[int]] = {}
    for doc_id in net:
        by_supplier.setdefault(meta[doc_id][2], []).append(doc_id)
    names = {str(r[0]): str(r[1]) for r in conn.execute("SELECT id, name FROM suppliers")}
    labels = tuple(label for label, _, _ in AGE_BUCKETS)
    suppliers: list[SupplierAgeing] = []
    for supplier in sorted(by_supplier, key=lambda s: (s is None, s or "")):
        docs = sorted(by_supplier[supplier], key=lambda d: (meta[d][3], meta[d][4]))
        raised = [d for d in docs if net[d] > 0]
        settled = -sum(net[d] for d in docs if net[d] < 0)
        balance = sum(net[d] for d in docs)
        open_items: list[OpenInvoice] = []
        buckets = dict.fromkeys(labels, 0)
        to_settle = settled
        for d in raised:
            amount = net[d]
            taken = min(amount, to_settle)
            to_settle -= taken
            if amount - taken == 0:
                continue
            doc_no, doc_type, _, vdate, _ = meta[d]
            age = (day - date.fromisoformat(vdate)).days
            bucket = bucket_of(age)
            buckets[bucket] += amount - taken
            open_items.append(OpenInvoice(d, doc_no, doc_type, vdate, amount, amount - taken, age, bucket))
        if balance == 0 and not open_items and to_settle == 0:
            continue
        suppliers.append(
            SupplierAgeing(
                supplier=supplier,
                name=names.get(supplier or "", "(无供应商 no supplier)"),
                balance_fen=balance,
                buckets=buckets,
                unapplied_fen=to_settle,
                open_invoices=tuple(open_items),
            )
        )
    total = sum(s.balance_fen for s in suppliers)
    gl = -account_balance(conn, account, day)
    return ApAgeing(
        as_of=day.isoformat(),
        account=account,
        bucket_labels=labels,
        suppliers=tuple(suppliers),
        total_fen=total,
        buckets={label: sum(s.buckets[label] for s in suppliers) for label in labels},
        unapplied_fen=sum(s.unapplied_fen for s in suppliers),
        gl_balance_fen=gl,
        agrees=gl == total,
    )


# --- stock valuation (存货余额表) --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ValuationRow:
    sku: str
    name: str
    base_unit: str
    location: str
    qty: int
    value_fen: int
    unit_cost_fen: int | None  # moving-average cost per base unit, rounded half-up; None without stock


@dataclass(frozen=True, slots=True)
class Valuation:
    rows: tuple[ValuationRow, ...]
    by_location: dict[str, int]
    total_fen: int
    stock_fen: int  # outside the transit location
    transit_fen: int
    inventory_account: str
    inventory_gl_fen: int
    transit_account: str
    transit_gl_fen: int
    received_from_other_stores_fen: int  # booked to 1402 here by transfers in from other stores' transit
    settled_to_other_stores_fen: int  # left in 1402 here by settled transfers out: what the other stores received
    agrees: bool  # both accounts equal the stock they stand for


def stock_accounts(conn: sqlite3.Connection) -> tuple[str, str]:
    """The inventory and transit accounts of the newest installed voucher rule version (1405, 1402)."""
    row = conn.execute("SELECT body FROM voucher_rule_versions ORDER BY effective_from DESC LIMIT 1").fetchone()
    if row is None:
        return INVENTORY_ACCOUNT, TRANSIT_ACCOUNT
    reversal = json.loads(row[0]).get("reversal", {})
    return str(reversal.get("inventory_account", INVENTORY_ACCOUNT)), str(
        reversal.get("transit_account", TRANSIT_ACCOUNT)
    )


def _stock_values(conn: sqlite3.Connection) -> tuple[int, int]:
    row = conn.execute(
        "SELECT COALESCE(SUM(CASE WHEN location != :t THEN value_fen END), 0),"
        " COALESCE(SUM(CASE WHEN location = :t THEN value_fen END), 0) FROM balances",
        {"t": TRANSIT_LOCATION},
    ).fetchone()
    return int(row[0]), int(row[1])


def _gl_balances(conn: sqlite3.Connection, *accounts: str) -> list[int]:
    return [
        int(
            conn.execute(
                "SELECT COALESCE(SUM(debit_fen - credit_fen), 0) FROM voucher_lines WHERE account = ?", (a,)
            ).fetchone()[0]
        )
        for a in accounts
    ]


def stock_valuation(conn: sqlite3.Connection) -> Valuation:
    """Stock on hand by item and location at moving-average cost, with totals and the check against the
    inventory and transit accounts."""
    rows = tuple(
        ValuationRow(
            sku=r[0],
            name=r[1],
            base_unit=r[2],
            location=r[3],
            qty=int(r[4]),
            value_fen=int(r[5]),
            unit_cost_fen=div_round_half_up(int(r[5]), int(r[4])) if int(r[4]) > 0 else None,
        )
        for r in conn.execute(
            "SELECT b.sku, i.name, i.base_unit, b.location, SUM(b.qty), SUM(b.value_fen)"
            " FROM balances b JOIN items i ON i.sku = b.sku GROUP BY b.sku, b.location"
            " HAVING SUM(b.qty) != 0 OR SUM(b.value_fen) != 0 ORDER BY b.sku, b.location"
        )
    )
    by_location: dict[str, int] = {}
    for row in rows:
        by_location[row.location] = by_location.get(row.location, 0) + row.value_fen
    stock, transit = _stock_values(conn)
    inventory_account, transit_account = stock_accounts(conn)
    inventory_gl, transit_gl = _gl_balances(conn, inventory_account, transit_account)
    from_other_stores = _received_from_other_stores(conn, transit_account)
    to_other_stores = _settled_to_other_stores(conn, transit_account)
    return Valuation(
        rows=rows,
        by_location=dict(sorted(by_location.items())),
        total_fen=stock + transit,
        stock_fen=stock,
        transit_fen=transit,
        inventory_account=inventory_account,
        inventory_gl_fen=inventory_gl,
        transit_account=transit_account,
        transit_gl_fen=transit_gl,
        received_from_other_stores_fen=from_other_stores,
        settled_to_other_stores_fen=to_other_stores,
        # 1402 nets company-wide: leave out what transfers between stores booked to it here (docs/transfers.md).
        agrees=inventory_gl == stock and transit_gl - from_other_stores - to_other_stores == transit,
    )


# --- the books check (对账) ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckProblem:
    code: str
    message: str
    message_en: str
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BooksCheck:
    ok: bool
    problems: tuple[CheckProblem, ...]
    figures: dict[str, int]  # the balances compared, in fen
    checked: dict[str, int]  # how many vouchers and lines were read


def _received_from_other_stores(conn: sqlite3.Connection, transit_account: str) -> int:
    """What transfers in from other stores' transit (and their reversals) booked to 1402 in this box."""
    row = conn.execute(
        "SELECT COALESCE(SUM(l.debit_fen - l.credit_fen), 0) FROM voucher_lines l"
        " JOIN vouchers v ON v.id = l.voucher_id JOIN documents d ON d.id = v.document_id"
        " WHERE l.account = ? AND d.id IN (SELECT id FROM documents WHERE type = 'transfer_in' AND ref_id IS NULL"
        " UNION SELECT r.id FROM documents r JOIN documents o ON o.id = r.reverses_id"
        " WHERE o.type = 'transfer_in' AND o.ref_id IS NULL)",
        (transit_account,),
    ).fetchone()
    return int(row[0])


def _settled_to_other_stores(conn: sqlite3.Connection, transit_account: str) -> int:
    """What transfer settlements (and their reversals) left booked in 1402 here: the goods the receiving stores
    received at this store's cost, which their transfers in credited to 1402 there (docs/transfers.md)."""
    settles = (
        "SELECT id FROM documents WHERE type = 'transfer_settle'"
        " UNION SELECT r.id FROM documents r JOIN documents o ON o.id = r.reverses_id WHERE o.type = 'transfer_settle'"
    )
    gl = conn.execute(
        "SELECT COALESCE(SUM(l.debit_fen - l.credit_fen), 0) FROM voucher_lines l"
        f" JOIN vouchers v ON v.id = l.voucher_id WHERE l.account = ? AND v.document_id IN ({settles})",
        (transit_account,),
    ).fetchone()
    moved = conn.execute(
        f"SELECT COALESCE(SUM(value_fen), 0) FROM stock_moves WHERE document_id IN ({settles})"
    ).fetchone()
    # The goods left transit at their value (moves, negative) while 1402 was credited only by the difference.
    return -int(moved[0]) + int(gl[0])


def books_check(conn: sqlite3.Connection, *, limit: int = 100) -> BooksCheck:
    """Every voucher balances and has lines, only leaf accounts carry postings, the inventory account
    (1405) equals the stock outside transit and the transit account (1402) the stock in transit.

    Each difference is reported in words (Chinese and English); at most `limit` vouchers are listed.
    """
    problems: list[CheckProblem] = []
    unbalanced = conn.execute(
        "SELECT l.voucher_id, v.voucher_no, SUM(l.debit_fen), SUM(l.credit_fen) FROM voucher_lines l"
        " JOIN vouchers v ON v.id = l.voucher_id GROUP BY l.voucher_id HAVING SUM(l.debit_fen) != SUM(l.credit_fen)"
        " ORDER BY l.voucher_id LIMIT ?",
        (limit,),
    ).fetchall()
    for voucher_id, voucher_no, debit, credit in unbalanced:
        problems.append(
            CheckProblem(
                "unbalanced_voucher",
                f"凭证 {voucher_no} 借贷不平: 借方 {format_yuan(debit)} 元，贷方 {format_yuan(credit)} 元，"
                f"差 {format_yuan(debit - credit)} 元",
                f"voucher {voucher_no} does not balance: debit {format_yuan(debit)}, credit {format_yuan(credit)},"
                f" difference {format_yuan(debit - credit)} yuan",
                {"voucher_id": voucher_id, "voucher_no": voucher_no, "debit_fen": debit, "credit_fen": credit},
            )
        )
    for voucher_id, voucher_no in conn.execute(
        "SELECT id, voucher_no FROM vouchers v WHERE NOT EXISTS (SELECT 1 FROM voucher_lines l WHERE l.voucher_id"
        " = v.id) ORDER BY id LIMIT ?",
        (limit,),
    ):
        problems.append(
            CheckProblem(
                "empty_voucher",
                f"凭证 {voucher_no} 没有分录",
                f"voucher {voucher_no} has no lines",
                {"voucher_id": voucher_id, "voucher_no": voucher_no},
            )
        )
    chart = chart_of(conn)
    for account in sorted(code for code, info in chart.items() if not info.leaf):
        count = conn.execute("SELECT COUNT(*) FROM voucher_lines WHERE account = ?", (account,)).fetchone()[0]
        if count:
            problems.append(
                CheckProblem(
                    "posting_to_parent_account",
                    f"非末级科目 {account} {chart[account].name} 有 {count} 条分录，只有末级科目可以记账",
                    f"account {account} has sub-accounts but carries {count} voucher lines; only leaves take postings",
                    {"account": account, "lines": int(count)},
                )
            )
    stock, transit = _stock_values(conn)
    inventory_account, transit_account = stock_accounts(conn)
    inventory_gl, transit_gl = _gl_balances(conn, inventory_account, transit_account)
    # Goods received from another store's transit (a transfer in without a transfer out in this box) credit 1402
    # here while the sending box holds the debit: 1402 nets to the goods in transit company-wide, not per box.
    from_other_stores = _received_from_other_stores(conn, transit_account)
    # A settled transfer out leaves in 1402 here what the receiving store credited to 1402 there.
    to_other_stores = _settled_to_other_stores(conn, transit_account)
    for account, gl, value, where, where_en in (
        (inventory_account, inventory_gl, stock, "在途以外的库存金额", "the value of the stock outside transit"),
        (
            transit_account,
            transit_gl - from_other_stores - to_other_stores,
            transit,
            "在途库存金额 (不含店间调拨已收部分)",
            "the value of the stock in transit (leaving out goods received between stores)",
        ),
    ):
        if gl != value:
            name = chart[account].name if account in chart else account
            problems.append(
                CheckProblem(
                    "stock_account_mismatch",
                    f"科目 {account} {name} 余额 {format_yuan(gl)} 元，{where} {format_yuan(value)} 元，"
                    f"差 {format_yuan(gl - value)} 元",
                    f"account {account} balance {format_yuan(gl)} yuan differs from {where_en} {format_yuan(value)}"
                    f" yuan by {format_yuan(gl - value)} yuan",
                    {"account": account, "account_balance_fen": gl, "stock_value_fen": value},
                )
            )
    checked = conn.execute("SELECT (SELECT COUNT(*) FROM vouchers), (SELECT COUNT(*) FROM voucher_lines)").fetchone()
    return BooksCheck(
        ok=not problems,
        problems=tuple(problems),
        figures={
            f"gl_{inventory_account}_fen": inventory_gl,
            "stock_outside_transit_fen": stock,
            f"gl_{transit_account}_fen": transit_gl,
            "received_from_other_stores_fen": from_other_stores,
            "settled_to_other_stores_fen": to_other_stores,
            "stock_in_transit_fen": transit,
        },
        checked={"vouchers": int(checked[0]), "voucher_lines": int(checked[1])},
    )
