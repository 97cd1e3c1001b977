"""Finance (财务): vouchers, the trial balance and AP ageing, each on the page and as a CSV or XLSX download.

Reads `GET /api/v1/vouchers`, `/api/v1/books/trial-balance` and `/api/v1/books/ap-ageing`; the books are for the
roles that keep them (a clerk gets the no-permission page from the API's 403). Downloads carry amounts in yuan
as numbers (fen / 100, exact), one row per voucher line, account or supplier.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from fastapi import Query
from fastapi.responses import Response

from edge.web.pages.client import ApiFailure
from edge.web.pages.framework import Page, PageContext, PageRouter

router = PageRouter()

PER_PAGE = 50
EXPORT_BATCH = 1000
EXPORT_MAX_VOUCHERS = 20_000
FORMATS = ("csv", "xlsx")
BUCKETS = (("0-30", "b0"), ("31-60", "b31"), ("61-90", "b61"), ("90+", "b90"))
VOUCHER_COLUMNS = (
    ("voucher_no", "finance.vouchers.col_no"),
    ("date", "finance.vouchers.col_date"),
    ("memo", "finance.vouchers.col_memo"),
    ("document_id", "finance.vouchers.col_document"),
    ("line_no", "finance.vouchers.col_line"),
    ("account", "finance.vouchers.col_account"),
    ("account_name", "finance.vouchers.col_account_name"),
    ("debit", "finance.vouchers.col_debit_yuan"),
    ("credit", "finance.vouchers.col_credit_yuan"),
    ("line_memo", "finance.vouchers.col_line_memo"),
    ("rule_version", "finance.vouchers.col_rule"),
    ("tax_trusted", "finance.vouchers.col_trusted"),
)
TRIAL_BALANCE_COLUMNS = (
    ("code", "finance.tb.col_code"),
    ("name", "finance.tb.col_name"),
    ("name_en", "finance.tb.col_name_en"),
    ("level", "finance.tb.col_level"),
    ("opening_debit", "finance.tb.col_opening_debit"),
    ("opening_credit", "finance.tb.col_opening_credit"),
    ("debit", "finance.tb.col_debit_yuan"),
    ("credit", "finance.tb.col_credit_yuan"),
    ("closing_debit", "finance.tb.col_closing_debit"),
    ("closing_credit", "finance.tb.col_closing_credit"),
)
AP_COLUMNS = (
    ("supplier", "finance.ap.col_supplier_id"),
    ("name", "finance.ap.col_supplier"),
    ("balance", "finance.ap.col_balance_yuan"),
    *((key, f"finance.ap.col_{key}_yuan") for _, key in BUCKETS),
    ("unapplied", "finance.ap.col_unapplied_yuan"),
)


def yuan(fen: int | None) -> Decimal | None:
    """Fen as an exact yuan amount for a spreadsheet cell: 123456 -> Decimal("1234.56")."""
    return None if fen is None else Decimal(int(fen)).scaleb(-2)


def _format(value: str | None) -> str | None:
    return value if value in FORMATS else None


def _date(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None  # the API says what is wrong with it


def _field_errors(page: PageContext, failure: ApiFailure, fallback: str) -> dict[str, str]:
    """A refused query's problems by field; a refusal naming no field is put on `fallback`."""
    if failure.status in (401, 403, 404) or failure.status >= 500:
        raise failure
    return failure.field_errors(page.lang) or {fallback: failure.text(page.lang)}


# --- vouchers --------------------------------------------------------------------------------------------------


def _voucher_rows(vouchers: Iterable[Mapping[str, Any]], yes: str, no: str) -> list[dict[str, Any]]:
    return [
        {
            "voucher_no": voucher["voucher_no"],
            "date": voucher["date"],
            "memo": voucher["memo"],
            "document_id": voucher["document_id"],
            "line_no": line["line_no"],
            "account": line["account"],
            "account_name": line["account_name"],
            "debit": yuan(line["debit_fen"]),
            "credit": yuan(line["credit_fen"]),
            "line_memo": line.get("memo") or "",
            "rule_version": voucher["rule_version"],
            "tax_trusted": yes if voucher["tax_trusted"] else no,
        }
        for voucher in vouchers
        for line in voucher["lines"]
    ]


async def _all_vouchers(page: PageContext, params: dict[str, Any]) -> list[dict[str, Any]]:
    vouchers: list[dict[str, Any]] = []
    while len(vouchers) < EXPORT_MAX_VOUCHERS:
        batch = await page.api.get("/api/v1/vouchers", limit=EXPORT_BATCH, offset=len(vouchers), **params)
        vouchers.extend(batch)
        if len(batch) < EXPORT_BATCH:
            break
    return vouchers[:EXPORT_MAX_VOUCHERS]


@router.get("/finance/vouchers")
async def vouchers(
    page: Page,
    since: str = Query("", max_length=40),
    until: str = Query("", max_length=40),
    n: int = Query(1, ge=1, le=100_000, alias="page"),
    format: str | None = Query(None, max_length=10),
) -> Response:
    """Vouchers newest first, filtered by date; `?format=csv|xlsx` downloads every voucher of the filter."""
    page.require("vouchers:read")
    params: dict[str, Any] = {"since": since.strip() or None, "until": until.strip() or None}
    errors: dict[str, str] = {}
    first, last = _date(params["since"]), _date(params["until"])
    if first is not None and last is not None and first > last:
        errors["until"] = page.t("finance.vouchers.bad_range")
    rows: list[dict[str, Any]] = []
    if not errors:
        try:
            if (fmt := _format(format)) is not None:
                listed = await _all_vouchers(page, params)
                name = f"vouchers-{params['since'] or 'all'}-{params['until'] or 'all'}"
                lines = _voucher_rows(listed, page.t("common.yes"), page.t("common.no"))
                return await page.export(lines, VOUCHER_COLUMNS, fmt, name)
            rows = await page.api.get("/api/v1/vouchers", limit=PER_PAGE + 1, offset=(n - 1) * PER_PAGE, **params)
        except ApiFailure as failure:
            errors = _field_errors(page, failure, "since")
    query = {key: value for key, value in (("since", since), ("until", until)) if value}
    return page.render(
        "finance/vouchers.html",
        status=422 if errors else 200,
        vouchers=rows[:PER_PAGE],
        more=len(rows) > PER_PAGE,
        n=n,
        since=since,
        until=until,
        query=query,
        errors=errors,
        export_max=EXPORT_MAX_VOUCHERS,
    )


# --- trial balance ---------------------------------------------------------------------------------------------


def _trial_balance_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "code": row["code"],
            "name": row["name"],
            "name_en": row["name_en"],
            "level": row["level"],
            "opening_debit": yuan(row["opening_debit_fen"]),
            "opening_credit": yuan(row["opening_credit_fen"]),
            "debit": yuan(row["debit_fen"]),
            "credit": yuan(row["credit_fen"]),
            "closing_debit": yuan(row["closing_debit_fen"]),
            "closing_credit": yuan(row["closing_credit_fen"]),
        }
        for row in report["rows"]
    ]


@router.get("/finance/trial-balance")
async def trial_balance(
    page: Page,
    period: str = Query("", max_length=40),
    include_empty: bool = Query(False),
    format: str | None = Query(None, max_length=10),
) -> Response:
    """The month's trial balance (科目余额表); the current month of the store when no period is given."""
    period = period.strip() or datetime.now(page.tz).strftime("%Y-%m")
    errors: dict[str, str] = {}
    report: dict[str, Any] | None = None
    try:
        report = await page.api.get("/api/v1/books/trial-balance", period=period, include_empty=include_empty)
    except ApiFailure as failure:
        errors = _field_errors(page, failure, "period")
    if report is not None and (fmt := _format(format)) is not None:
        return await page.export(
            _trial_balance_rows(report), TRIAL_BALANCE_COLUMNS, fmt, f"trial-balance-{report['period']}"
        )
    query = {"period": period, **({"include_empty": "true"} if include_empty else {})}
    return page.render(
        "finance/trial_balance.html",
        status=422 if errors else 200,
        report=report,
        period=period,
        include_empty=include_empty,
        query=query,
        errors=errors,
    )


# --- AP ageing -------------------------------------------------------------------------------------------------


def _ageing_rows(report: Mapping[str, Any], unnamed: str) -> list[dict[str, Any]]:
    return [
        {
            "supplier": supplier["supplier"] or "",
            "name": supplier["name"] or unnamed,
            "balance": yuan(supplier["balance_fen"]),
            **{key: yuan(supplier["buckets"].get(label, 0)) for label, key in BUCKETS},
            "unapplied": yuan(supplier["unapplied_fen"]),
        }
        for supplier in report["suppliers"]
    ]


@router.get("/finance/ap-ageing")
async def ap_ageing(
    page: Page,
    as_of: str = Query("", max_length=40),
    format: str | None = Query(None, max_length=10),
) -> Response:
    """What is owed to each supplier, by the age of the invoices still open; checked against the ledger."""
    errors: dict[str, str] = {}
    report: dict[str, Any] | None = None
    try:
        report = await page.api.get("/api/v1/books/ap-ageing", as_of=as_of.strip() or None)
    except ApiFailure as failure:
        errors = _field_errors(page, failure, "as_of")
    if report is not None and (fmt := _format(format)) is not None:
        rows = _ageing_rows(report, page.t("finance.ap.unnamed"))
        return await page.export(rows, AP_COLUMNS, fmt, f"ap-ageing-{report['as_of']}")
    return page.render(
        "finance/ap_ageing.html",
        status=422 if errors else 200,
        report=report,
        as_of=as_of,
        query={"as_of": as_of} if as_of else {},
        buckets=BUCKETS,
        errors=errors,
    )
