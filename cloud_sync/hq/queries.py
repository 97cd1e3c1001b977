"""HQ queries over the aggregated facts: stores and their sync lag, stock, sales, vouchers, the consolidated
trial balance and supplier compliance. Each builds one SELECT (paged in SQL, streamed for exports) and says how
a row becomes an item and which columns an export has.

Reads only the aggregates ingest keeps (stock, sales_daily, gl_period) and the documents' vouchers; money stays
integer fen (PostgreSQL sums come back as Decimal and are turned into int, exactly).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any

import sqlalchemy as sa

from cloud_sync.hq.export import Column, Kind
from cloud_sync.tables import (
    batches,
    companies,
    compliance_suppliers,
    documents,
    gl_period,
    items,
    rejections,
    sales_daily,
    stock,
    stores,
    sync_state,
)

TRANSIT_LOCATION = "transit"  # edge.ledger.masterdata.TRANSIT_LOCATION: goods between two stores
SALES_GROUPS = ("store", "day", "sku", "category")

Row = Any
Item = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Query:
    """A paged HQ query: its SELECT (ordered), how a row becomes an item, and the export's columns and rows."""

    name: str
    select: Any  # sa.Select, ordered
    item: Callable[[Row], Item]
    columns: tuple[Column, ...]
    export_rows: Callable[[Item], Iterable[Item]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def rows_for_export(self, items_: Iterable[Item]) -> Iterator[Item]:
        for it in items_:
            if self.export_rows is None:
                yield it
            else:
                yield from self.export_rows(it)


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def _age_s(at: str | None, now: datetime) -> int | None:
    if not at:
        return None
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        return None
    return max(0, int((now - when).total_seconds()))


def _in(column: sa.ColumnElement[Any], values: list[str] | None) -> sa.ColumnElement[bool] | None:
    if not values:
        return None
    return column == values[0] if len(values) == 1 else column.in_(values)


def _where(stmt: sa.Select[Any], *conditions: sa.ColumnElement[bool] | None) -> sa.Select[Any]:
    for c in conditions:
        if c is not None:
            stmt = stmt.where(c)
    return stmt


# --- stores and sync lag --------------------------------------------------------------------------------------


def _lag_select() -> sa.Select[Any]:
    above = batches.c.seq > sync_state.c.applied_through
    newest = sa.select(sa.func.max(batches.c.seq)).where(batches.c.store == stores.c.id, above).scalar_subquery()
    held = sa.select(sa.func.count()).where(batches.c.store == stores.c.id, above).scalar_subquery()
    # The store's latest refused request (a conflict, an expired key): a store knocking in vain is not "in sync".
    refused_at = sa.select(sa.func.max(rejections.c.at)).where(rejections.c.store == stores.c.id).scalar_subquery()
    refused_code = (
        sa.select(rejections.c.code)
        .where(rejections.c.store == stores.c.id)
        .order_by(rejections.c.at.desc(), rejections.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return (
        sa.select(
            stores.c.id.label("store"),
            stores.c.name,
            stores.c.company,
            companies.c.name.label("company_name"),
            stores.c.cold_chain,
            stores.c.lat,
            stores.c.lon,
            stores.c.created_at,
            stores.c.disabled_at,
            sync_state.c.applied_through,
            sync_state.c.last_row_seq,
            sync_state.c.head_seq,
            sync_state.c.pending_rows,
            sync_state.c.oldest_pending_at,
            sync_state.c.last_batch_at,
            sync_state.c.last_contact_at,
            sync_state.c.clock_offset_s,
            newest.label("newest_batch"),
            held.label("held_batches"),
            refused_at.label("last_refusal_at"),
            refused_code.label("last_refusal_code"),
        )
        .select_from(stores.join(companies, companies.c.id == stores.c.company).outerjoin(sync_state))
        .order_by(stores.c.id)
    )


def _lag(row: Row, now: datetime, stale_after: timedelta) -> Item:
    applied = _int(row.applied_through)
    missing = max(0, _int(row.newest_batch) - applied - _int(row.held_batches)) if row.newest_batch else 0
    contact_age = _age_s(row.last_contact_at, now)
    head = row.head_seq
    return {
        "applied_through": applied,
        "missing_batches": missing,
        "queued_batches": _int(row.held_batches),
        "last_row_seq": _int(row.last_row_seq),
        "head_seq": head,
        "rows_behind": max(0, int(head) - _int(row.last_row_seq)) if head is not None else None,
        "pending_rows": row.pending_rows,
        "oldest_pending_at": row.oldest_pending_at,
        "oldest_pending_age_s": _age_s(row.oldest_pending_at, now),
        "last_batch_at": row.last_batch_at,
        "last_contact_at": row.last_contact_at,
        "last_contact_age_s": contact_age,
        "clock_offset_s": row.clock_offset_s,
        "stale": contact_age is None or contact_age > stale_after.total_seconds(),
        "last_refusal_code": row.last_refusal_code,
        "last_refusal_at": row.last_refusal_at,
        # Refused since its last accepted request (a conflict notes the contact at the same instant).
        "refused": row.last_refusal_at is not None
        and (row.last_contact_at is None or row.last_refusal_at >= row.last_contact_at),
    }


def _stale_condition(stale: bool | None, now: datetime, stale_after: timedelta) -> sa.ColumnElement[bool] | None:
    if stale is None:
        return None
    limit = (now - stale_after).isoformat()
    old = sa.or_(sync_state.c.last_contact_at.is_(None), sync_state.c.last_contact_at < limit)
    return old if stale else sa.not_(old)


LAG_COLUMNS = (
    Column("store", "门店", "Store"),
    Column("company", "公司", "Company"),
    Column("applied_through", "已应用批次", "Applied through", Kind.INT),
    Column("missing_batches", "缺失批次", "Missing batches", Kind.INT),
    Column("queued_batches", "待应用批次", "Queued batches", Kind.INT),
    Column("rows_behind", "未应用行", "Rows behind", Kind.INT),
    Column("pending_rows", "门店待发行", "Pending rows at box", Kind.INT),
    Column("oldest_pending_at", "最早待发时间", "Oldest pending at"),
    Column("oldest_pending_age_s", "最早待发秒数", "Oldest pending age s", Kind.INT),
    Column("last_batch_at", "最近批次", "Last batch at"),
    Column("last_contact_at", "最近联系", "Last contact at"),
    Column("stale", "失联", "Stale"),
    Column("refused", "被拒绝", "Refused"),
    Column("last_refusal_code", "最近拒绝原因", "Last refusal code"),
    Column("last_refusal_at", "最近拒绝时间", "Last refusal at"),
)


def _lag_stmt(
    now: datetime, stale_after: timedelta, store: list[str] | None, company: list[str] | None, stale: bool | None
) -> sa.Select[Any]:
    """The stores with their sync state, filtered: what both the stores list and the sync-lag view read."""
    return _where(
        _lag_select(),
        _in(stores.c.id, store),
        _in(stores.c.company, company),
        _stale_condition(stale, now, stale_after),
    )


def sync_lag_query(
    now: datetime,
    stale_after: timedelta,
    *,
    store: list[str] | None = None,
    company: list[str] | None = None,
    stale: bool | None = None,
) -> Query:
    """Sync lag per store (同步延迟)."""
    stmt = _lag_stmt(now, stale_after, store, company, stale)

    def item(row: Row) -> Item:
        return {"store": row.store, "company": row.company, **_lag(row, now, stale_after)}

    return Query("sync-lag", stmt, item, LAG_COLUMNS)


STORE_COLUMNS = (
    Column("store", "门店", "Store"),
    Column("name", "门店名称", "Name"),
    Column("company", "公司", "Company"),
    Column("company_name", "公司名称", "Company name"),
    Column("cold_chain", "冷链", "Cold chain"),
    Column("disabled", "已停用", "Disabled"),
    Column("applied_through", "已应用批次", "Applied through", Kind.INT),
    Column("missing_batches", "缺失批次", "Missing batches", Kind.INT),
    Column("pending_rows", "门店待发行", "Pending rows at box", Kind.INT),
    Column("last_contact_at", "最近联系", "Last contact at"),
    Column("stale", "失联", "Stale"),
)


def stores_query(
    now: datetime,
    stale_after: timedelta,
    *,
    store: list[str] | None = None,
    company: list[str] | None = None,
    stale: bool | None = None,
) -> Query:
    """Stores with their company and sync lag (门店)."""
    stmt = _lag_stmt(now, stale_after, store, company, stale)

    def item(row: Row) -> Item:
        lag = _lag(row, now, stale_after)
        return {
            "store": row.store,
            "name": row.name,
            "company": row.company,
            "company_name": row.company_name,
            "cold_chain": bool(row.cold_chain),
            "lat": row.lat,
            "lon": row.lon,
            "created_at": row.created_at,
            "disabled": row.disabled_at is not None,
            "disabled_at": row.disabled_at,
            "applied_through": lag["applied_through"],
            "missing_batches": lag["missing_batches"],
            "pending_rows": lag["pending_rows"],
            "last_contact_at": lag["last_contact_at"],
            "stale": lag["stale"],
            "sync": lag,
        }

    return Query("stores", stmt, item, STORE_COLUMNS)


# --- stock ----------------------------------------------------------------------------------------------------

STOCK_COLUMNS = (
    Column("store", "门店", "Store"),
    Column("sku", "商品编码", "SKU"),
    Column("name", "商品名称", "Name"),
    Column("category", "品类", "Category"),
    Column("qty", "在库数量", "On hand qty", Kind.INT),
    Column("value_fen", "在库金额", "On hand value", Kind.FEN),
    Column("transit_qty", "在途数量", "In transit qty", Kind.INT),
    Column("transit_value_fen", "在途金额", "In transit value", Kind.FEN),
    Column("base_unit", "单位", "Unit"),
)


def stock_query(
    *,
    store: list[str] | None = None,
    company: list[str] | None = None,
    sku: list[str] | None = None,
    category: list[str] | None = None,
    location: list[str] | None = None,
) -> Query:
    """Stock by store and SKU (库存): on hand summed over locations and lots; goods in transit shown apart."""
    in_transit = stock.c.location == TRANSIT_LOCATION

    def part(col: sa.ColumnElement[Any], transit: bool) -> Any:
        return sa.func.coalesce(sa.func.sum(sa.case((in_transit if transit else ~in_transit, col), else_=0)), 0)

    source: Any = stock.outerjoin(items, sa.and_(items.c.store == stock.c.store, items.c.sku == stock.c.sku))
    if company:
        source = source.join(stores, stores.c.id == stock.c.store)
    qty, value = part(stock.c.qty, False), part(stock.c.value_fen, False)
    tqty, tvalue = part(stock.c.qty, True), part(stock.c.value_fen, True)
    stmt = (
        sa.select(
            stock.c.store,
            stock.c.sku,
            sa.func.max(items.c.name).label("name"),
            sa.func.max(items.c.name_en).label("name_en"),
            sa.func.max(items.c.category).label("category"),
            sa.func.max(items.c.category_name).label("category_name"),
            sa.func.max(items.c.base_unit).label("base_unit"),
            qty.label("qty"),
            value.label("value_fen"),
            tqty.label("transit_qty"),
            tvalue.label("transit_value_fen"),
        )
        .select_from(source)
        .group_by(stock.c.store, stock.c.sku)
        .having(sa.or_(qty != 0, value != 0, tqty != 0, tvalue != 0))
        .order_by(stock.c.store, stock.c.sku)
    )
    stmt = _where(
        stmt,
        _in(stock.c.store, store),
        _in(stores.c.company, company) if company else None,
        _in(stock.c.sku, sku),
        _in(items.c.category, category),
        _in(stock.c.location, location),
    )

    def item(row: Row) -> Item:
        return {
            "store": row.store,
            "sku": row.sku,
            "name": row.name,
            "name_en": row.name_en,
            "category": row.category,
            "category_name": row.category_name,
            "base_unit": row.base_unit,
            "qty": _int(row.qty),
            "value_fen": _int(row.value_fen),
            "transit_qty": _int(row.transit_qty),
            "transit_value_fen": _int(row.transit_value_fen),
        }

    return Query("stock", stmt, item, STOCK_COLUMNS)


# --- sales ----------------------------------------------------------------------------------------------------

_SALES_GROUP_COLUMNS = {
    "store": Column("store", "门店", "Store"),
    "day": Column("day", "日期", "Day"),
    "sku": Column("sku", "商品编码", "SKU"),
    "category": Column("category", "品类", "Category"),
}
_SALES_VALUE_COLUMNS = (
    Column("qty", "数量", "Qty", Kind.INT),
    Column("gross_fen", "含税销售额", "Gross sales", Kind.FEN),
    Column("tax_fen", "销项税额", "Output VAT", Kind.FEN),
    Column("net_fen", "不含税销售额", "Net sales", Kind.FEN),
    Column("cost_fen", "销售成本", "Cost of sales", Kind.FEN),
    Column("margin_fen", "毛利", "Gross margin", Kind.FEN),
)


def sales_query(
    group_by: tuple[str, ...],
    *,
    day_from: date | None = None,
    day_to: date | None = None,
    store: list[str] | None = None,
    company: list[str] | None = None,
    sku: list[str] | None = None,
    category: list[str] | None = None,
) -> Query:
    """Sales by any of store, day, SKU and category (销售), from the daily aggregate `sales_daily`."""
    needs_items = "category" in group_by or bool(category)
    source: Any = sales_daily
    if needs_items:
        source = source.outerjoin(
            items, sa.and_(items.c.store == sales_daily.c.store, items.c.sku == sales_daily.c.sku)
        )
    if company:
        source = source.join(stores, stores.c.id == sales_daily.c.store)
    keys: dict[str, sa.ColumnElement[Any]] = {
        "store": sales_daily.c.store,
        "day": sales_daily.c.day,
        "sku": sales_daily.c.sku,
        "category": sa.func.coalesce(items.c.category, ""),
    }
    group = [keys[g].label(g) for g in group_by]
    qty = sa.func.coalesce(sa.func.sum(sales_daily.c.qty), 0)
    gross = sa.func.coalesce(sa.func.sum(sales_daily.c.gross_fen), 0)
    tax = sa.func.coalesce(sa.func.sum(sales_daily.c.tax_fen), 0)
    cost = sa.func.coalesce(sa.func.sum(sales_daily.c.cost_fen), 0)
    stmt = sa.select(*group, qty.label("qty"), gross.label("gross_fen"), tax.label("tax_fen"), cost.label("cost_fen"))
    stmt = stmt.select_from(source)
    if group:
        stmt = stmt.group_by(*[keys[g] for g in group_by]).order_by(*[keys[g] for g in group_by])
    stmt = _where(
        stmt,
        sales_daily.c.day >= day_from.isoformat() if day_from else None,
        sales_daily.c.day <= day_to.isoformat() if day_to else None,
        _in(sales_daily.c.store, store),
        _in(stores.c.company, company) if company else None,
        _in(sales_daily.c.sku, sku),
        _in(items.c.category, category) if category else None,
    )

    def item(row: Row) -> Item:
        out: Item = {g: getattr(row, g) for g in group_by}
        g, t, c = _int(row.gross_fen), _int(row.tax_fen), _int(row.cost_fen)
        out.update(qty=_int(row.qty), gross_fen=g, tax_fen=t, net_fen=g - t, cost_fen=c, margin_fen=g - t - c)
        return out

    columns = tuple(_SALES_GROUP_COLUMNS[g] for g in group_by) + _SALES_VALUE_COLUMNS
    return Query("sales", stmt, item, columns)


# --- accounts -------------------------------------------------------------------------------------------------


@cache
def account_names() -> dict[str, tuple[str, str]]:
    """Account code -> (name, name_en) from the box's chart templates (edge/finance/data/chart_*.json).

    The small-enterprise chart wins where both define a code; the aggregator does not know which chart a
    company chose, and the two differ in codes (5001 against 6001), not in the names of shared ones.
    """
    names: dict[str, tuple[str, str]] = {}
    for template in ("enterprise", "small_enterprise"):
        text = resources.files("edge.finance").joinpath("data", f"chart_{template}.json").read_text("utf-8")
        for account in json.loads(text)["accounts"]:
            names[str(account["code"])] = (str(account["name"]), str(account.get("name_en") or ""))
    return names


def _account_name(code: str) -> tuple[str | None, str | None]:
    names = account_names()
    probe = code
    while probe:
        if probe in names:
            return names[probe] if probe == code else (f"{names[probe][0]} ({code})", f"{names[probe][1]} ({code})")
        probe = probe[:-1]
    return None, None


# --- vouchers -------------------------------------------------------------------------------------------------

VOUCHER_COLUMNS = (
    Column("store", "门店", "Store"),
    Column("date", "日期", "Date"),
    Column("voucher_no", "凭证号", "Voucher no"),
    Column("doc_no", "单据号", "Document no"),
    Column("type", "单据类型", "Document type"),
    Column("line_no", "行号", "Line", Kind.INT),
    Column("account", "科目编码", "Account"),
    Column("account_name", "科目名称", "Account name"),
    Column("debit_fen", "借方金额", "Debit", Kind.FEN),
    Column("credit_fen", "贷方金额", "Credit", Kind.FEN),
)


def period_bounds(period: str) -> tuple[str, str]:
    return f"{period}-01", f"{period}-31"


def vouchers_query(
    company: str,
    period: str,
    *,
    store: list[str] | None = None,
    account: str | None = None,
) -> Query:
    """Vouchers (凭证) of a company's stores in a period, one item per voucher with its lines.

    `account` keeps the vouchers with a line on that account or one of its sub-accounts (all their lines shown).
    The lines are stored as compact JSON `[["1001",600,0],...]`, so `["<account>` finds exactly those; the
    account parameter is digits and letters only (checked by the route).
    """
    first, last = period_bounds(period)
    stmt = (
        sa.select(
            documents.c.store,
            documents.c.business_date,
            documents.c.voucher_no,
            documents.c.doc_id,
            documents.c.doc_no,
            documents.c.type,
            documents.c.voucher,
        )
        .select_from(documents.join(stores, stores.c.id == documents.c.store))
        .where(
            stores.c.company == company,
            documents.c.business_date >= first,
            documents.c.business_date <= last,
            documents.c.voucher_no.is_not(None),
        )
        .order_by(documents.c.business_date, documents.c.store, documents.c.doc_id)
    )
    stmt = _where(
        stmt,
        _in(documents.c.store, store),
        documents.c.voucher.like(f'%["{account}%') if account else None,
    )

    def item(row: Row) -> Item:
        lines = []
        for n, (code, debit, credit) in enumerate(json.loads(row.voucher or "[]"), start=1):
            name, name_en = _account_name(str(code))
            lines.append(
                {
                    "line_no": n,
                    "account": str(code),
                    "account_name": name,
                    "account_name_en": name_en,
                    "debit_fen": int(debit),
                    "credit_fen": int(credit),
                }
            )
        return {
            "store": row.store,
            "date": row.business_date,
            "voucher_no": row.voucher_no,
            "doc_id": int(row.doc_id),
            "doc_no": row.doc_no,
            "type": row.type,
            "lines": lines,
            "debit_fen": sum(line["debit_fen"] for line in lines),
            "credit_fen": sum(line["credit_fen"] for line in lines),
        }

    def export_rows(voucher: Item) -> Iterator[Item]:
        head = {k: voucher[k] for k in ("store", "date", "voucher_no", "doc_no", "type")}
        for line in voucher["lines"]:
            yield {**head, **line}

    return Query("vouchers", stmt, item, VOUCHER_COLUMNS, export_rows)


# --- trial balance --------------------------------------------------------------------------------------------

TRIAL_COLUMNS = (
    Column("account", "科目编码", "Account"),
    Column("account_name", "科目名称", "Account name"),
    Column("opening_debit_fen", "期初借方", "Opening debit", Kind.FEN),
    Column("opening_credit_fen", "期初贷方", "Opening credit", Kind.FEN),
    Column("debit_fen", "本期借方", "Period debit", Kind.FEN),
    Column("credit_fen", "本期贷方", "Period credit", Kind.FEN),
    Column("closing_debit_fen", "期末借方", "Closing debit", Kind.FEN),
    Column("closing_credit_fen", "期末贷方", "Closing credit", Kind.FEN),
)


def trial_balance_query(company: str, period: str, *, store: list[str] | None = None) -> Query:
    """The consolidated trial balance (科目余额表) of a company's stores for a period: per account the opening
    balance (all earlier periods), the period's debit and credit, and the closing balance, each balance on the
    side it falls."""
    before = gl_period.c.period < period
    during = gl_period.c.period == period
    net_before = sa.func.coalesce(
        sa.func.sum(sa.case((before, gl_period.c.debit_fen - gl_period.c.credit_fen), else_=0)), 0
    )
    debit = sa.func.coalesce(sa.func.sum(sa.case((during, gl_period.c.debit_fen), else_=0)), 0)
    credit = sa.func.coalesce(sa.func.sum(sa.case((during, gl_period.c.credit_fen), else_=0)), 0)
    stmt = (
        sa.select(
            gl_period.c.account,
            net_before.label("opening"),
            debit.label("debit"),
            credit.label("credit"),
        )
        .select_from(gl_period.join(stores, stores.c.id == gl_period.c.store))
        .where(stores.c.company == company, gl_period.c.period <= period)
        .group_by(gl_period.c.account)
        .having(sa.or_(net_before != 0, debit != 0, credit != 0))
        .order_by(gl_period.c.account)
    )
    stmt = _where(stmt, _in(gl_period.c.store, store))

    def item(row: Row) -> Item:
        opening, d, c = _int(row.opening), _int(row.debit), _int(row.credit)
        closing = opening + d - c
        name, name_en = _account_name(str(row.account))
        return {
            "account": row.account,
            "account_name": name,
            "account_name_en": name_en,
            "opening_debit_fen": max(opening, 0),
            "opening_credit_fen": max(-opening, 0),
            "debit_fen": d,
            "credit_fen": c,
            "closing_debit_fen": max(closing, 0),
            "closing_credit_fen": max(-closing, 0),
        }

    return Query("trial-balance", stmt, item, TRIAL_COLUMNS)


def trial_balance_totals(all_items: Iterable[Item]) -> Item:
    """合计: each pair of columns must balance when every voucher did."""
    keys = [c.key for c in TRIAL_COLUMNS if c.kind is Kind.FEN]
    totals = dict.fromkeys(keys, 0)
    for it in all_items:
        for k in keys:
            totals[k] += it[k]
    balanced = (
        totals["opening_debit_fen"] == totals["opening_credit_fen"]
        and totals["debit_fen"] == totals["credit_fen"]
        and totals["closing_debit_fen"] == totals["closing_credit_fen"]
    )
    return {**totals, "balanced": balanced}


# --- supplier compliance --------------------------------------------------------------------------------------

COMPLIANCE_COLUMNS = (
    Column("store", "门店", "Store"),
    Column("supplier", "供应商编码", "Supplier"),
    Column("name", "供应商名称", "Supplier name"),
    Column("frozen", "已冻结", "Frozen"),
    Column("freeze_reason", "冻结原因", "Freeze reason"),
    Column("frozen_at", "冻结时间", "Frozen at"),
    Column("next_expiry", "最近到期日", "Next expiry"),
    Column("days_to_expiry", "距到期天数", "Days to expiry", Kind.INT),
    Column("expiring_papers_text", "即将到期证照", "Expiring papers"),
)


def compliance_query(
    today: date,
    days: int,
    *,
    store: list[str] | None = None,
    company: list[str] | None = None,
    supplier: list[str] | None = None,
    frozen: bool | None = None,
    attention: bool | None = None,
) -> Query:
    """Supplier compliance across stores (供应商合规): freezes and papers expiring within `days` (or expired)."""
    horizon = (today + timedelta(days=days)).isoformat()
    expiring = sa.and_(compliance_suppliers.c.next_expiry.is_not(None), compliance_suppliers.c.next_expiry <= horizon)
    needs = sa.or_(compliance_suppliers.c.frozen != 0, expiring)
    source: Any = compliance_suppliers
    if company:
        source = source.join(stores, stores.c.id == compliance_suppliers.c.store)
    stmt = (
        sa.select(compliance_suppliers)
        .select_from(source)
        .order_by(compliance_suppliers.c.store, compliance_suppliers.c.supplier)
    )
    stmt = _where(
        stmt,
        _in(compliance_suppliers.c.store, store),
        _in(stores.c.company, company) if company else None,
        _in(compliance_suppliers.c.supplier, supplier),
        None
        if frozen is None
        else (compliance_suppliers.c.frozen != 0 if frozen else compliance_suppliers.c.frozen == 0),
        None if attention is None else (needs if attention else sa.not_(needs)),
    )

    def item(row: Row) -> Item:
        try:
            papers = json.loads(row.papers or "[]")
        except ValueError:
            papers = []
        papers = [p for p in papers if isinstance(p, dict)]
        soon = [p for p in papers if isinstance(p.get("expires_on"), str) and p["expires_on"] <= horizon]
        next_expiry = row.next_expiry
        days_left = (date.fromisoformat(next_expiry) - today).days if next_expiry else None
        return {
            "store": row.store,
            "supplier": row.supplier,
            "name": row.name,
            "frozen": bool(row.frozen),
            "freeze_reason": row.freeze_reason,
            "frozen_at": row.frozen_at,
            "next_expiry": next_expiry,
            "days_to_expiry": days_left,
            "expiring": days_left is not None and days_left <= days,
            "expired": days_left is not None and days_left < 0,
            "expiring_papers": soon,
            "expiring_papers_text": "; ".join(
                f"{p.get('name') or p.get('kind') or ''} {p.get('number') or ''} {p['expires_on']}".strip()
                for p in soon
            ),
            "papers": papers,
            "updated_at": row.updated_at,
        }

    return Query("suppliers", stmt, item, COMPLIANCE_COLUMNS)


# --- running ----------------------------------------------------------------------------------------------------


def run_page(conn: sa.Connection, query: Query, limit: int, offset: int) -> dict[str, Any]:
    """One page of a query: `{"items", "total", "limit", "offset", "next_offset"}`."""
    # The total rides on the page as a window count: one pass over the data instead of a second COUNT query.
    rows = conn.execute(query.select.add_columns(sa.func.count().over().label("_total")).limit(limit).offset(offset))
    page: list[Item] = []
    total: int | None = None
    for r in rows:
        total = int(r._total)
        page.append(query.item(r))
    if total is None:  # an empty page (past the end) carries no count
        total = int(conn.execute(sa.select(sa.func.count()).select_from(query.select.subquery())).scalar_one())
    following = offset + limit
    return {
        "items": page,
        "total": total,
        "limit": limit,
        "offset": offset,
        "next_offset": following if following < total else None,
    }


def stream_items(engine: sa.Engine, query: Query, chunk: int = 2000) -> Iterator[Item]:
    """Every item of a query, read in chunks with a server-side cursor where the database has one."""
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=chunk).execute(query.select)
        for row in result:
            yield query.item(row)
