"""HQ API (总部查询): stores and sync lag, stock, sales, vouchers, the consolidated trial balance and supplier
compliance across stores, paged as JSON or exported whole as CSV or XLSX (docs/hq-api.md).

Every route needs an HQ bearer token (`storebox-cloud hq token-add`); every parameter is checked and a bad one is
refused with 422 and a Chinese and English message.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from prometheus_client import Histogram
from starlette.concurrency import run_in_threadpool

from cloud_sync.errors import CloudError
from cloud_sync.facts import store_totals
from cloud_sync.hq import queries as q
from cloud_sync.hq.auth import require_hq
from cloud_sync.hq.export import XLSX_TYPE, csv_chunks, file_chunks, xlsx_file
from cloud_sync.tables import stores
from edge.sync.protocol import STORE_ID

router = APIRouter(prefix="/api/v1", tags=["hq"], dependencies=[Depends(require_hq)])

MAX_LIMIT = 10000
MAX_VALUES = 500
ACCOUNT = re.compile(r"^[0-9A-Za-z.]{1,32}$")
PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="page size (1..10000)")]
Offset = Annotated[int, Query(ge=0, le=10**12, description="rows to skip")]
Format = Annotated[Literal["json", "csv", "xlsx"], Query(description="json (paged) or csv/xlsx (the whole result)")]
Many = Annotated[list[str] | None, Query(description="one or more values, repeated or comma separated")]


def bad(field: str, message: str, message_en: str) -> CloudError:
    return CloudError(
        "hq_bad_parameter", f"参数 {field} 无效: {message}", f"invalid {field}: {message_en}", 422, field=field
    )


def _values(field: str, raw: list[str] | None) -> list[str]:
    out: list[str] = []
    for chunk in raw or []:
        out.extend(v.strip() for v in chunk.split(",") if v.strip())
    if len(out) > MAX_VALUES:
        raise bad(field, f"最多 {MAX_VALUES} 个值", f"at most {MAX_VALUES} values")
    return out


def ids(field: str, raw: list[str] | None) -> list[str] | None:
    """Store or company ids: [a-z0-9-]{1,64} each."""
    values = _values(field, raw)
    for v in values:
        if not STORE_ID.match(v):
            raise bad(field, "应为小写字母、数字和 - (1..64 个)", "must be a-z, 0-9 and - (1..64 characters)")
    return values or None


def texts(field: str, raw: list[str] | None) -> list[str] | None:
    """Codes such as SKUs, categories, locations: 1..64 printable characters each."""
    values = _values(field, raw)
    for v in values:
        if len(v) > 64 or any(ord(ch) < 32 or ord(ch) == 127 or 0xD800 <= ord(ch) <= 0xDFFF for ch in v):
            raise bad(field, "应为 1..64 个可打印字符", "must be 1..64 printable characters")
    return values or None


def one_id(field: str, value: str) -> str:
    if not STORE_ID.match(value):
        raise bad(field, "应为小写字母、数字和 - (1..64 个)", "must be a-z, 0-9 and - (1..64 characters)")
    return value


def day(field: str, value: str | None) -> date | None:
    if value is None:
        return None
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise bad(field, "应为日期 YYYY-MM-DD", "must be a date YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise bad(field, "不是有效日期", "is not a valid date") from None


def period(value: str) -> str:
    if not PERIOD.match(value):
        raise bad("period", "应为会计期间 YYYY-MM", "must be an accounting period YYYY-MM")
    return value


def group_by(value: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in value.split(",") if p.strip())
    if not parts or len(set(parts)) != len(parts) or any(p not in q.SALES_GROUPS for p in parts):
        raise bad(
            "group_by",
            "应为 store, day, sku, category 中不重复的一个或多个，以逗号分隔",
            "must be one or more of store, day, sku, category, comma separated, no repeats",
        )
    return parts


# --- running a query ----------------------------------------------------------------------------------------


def _seconds(request: Request) -> Histogram:
    # One histogram per app, registered on the app's own registry the first time an HQ query runs.
    state = request.app.state
    hist: Histogram | None = getattr(state, "hq_query_seconds", None)
    if hist is None:
        hist = Histogram(
            "storebox_cloud_hq_query_seconds",
            "Time to answer an HQ query (JSON page) or to start its export, by endpoint",
            ["endpoint"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=state.metrics.registry,
        )
        state.hq_query_seconds = hist
    return hist


def _page(engine: sa.Engine, query: q.Query, limit: int, offset: int) -> dict[str, Any]:
    with engine.connect() as conn:
        return q.run_page(conn, query, limit, offset)


async def answer(
    request: Request,
    query: q.Query,
    fmt: str,
    limit: int,
    offset: int,
    *,
    decorate: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    tail: Callable[[], Iterator[dict[str, Any]]] | None = None,
) -> Any:
    """The page as JSON, or the whole result as a CSV or XLSX download."""
    state = request.app.state
    engine: sa.Engine = state.engine
    state.metrics.hq_requests.labels(endpoint=query.name).inc()
    started = time.perf_counter()
    try:
        if fmt == "json":
            page = await run_in_threadpool(_page, engine, query, limit, offset)
            return decorate(page) if decorate else page

        def rows() -> Iterator[dict[str, Any]]:
            yield from query.rows_for_export(q.stream_items(engine, query))
            if tail is not None:
                yield from tail()

        stamp = state.clock().strftime("%Y%m%d-%H%M%S")
        filename = f"{query.name}-{stamp}.{fmt}"
        disposition = {"Content-Disposition": f'attachment; filename="{filename}"'}
        if fmt == "csv":
            return StreamingResponse(
                csv_chunks(query.columns, rows()), media_type="text/csv; charset=utf-8", headers=disposition
            )
        handle = await run_in_threadpool(xlsx_file, query.columns, rows(), query.name)
        return StreamingResponse(file_chunks(handle), media_type=XLSX_TYPE, headers=disposition)
    finally:
        _seconds(request).labels(endpoint=query.name).observe(time.perf_counter() - started)


def _stale_after(request: Request) -> timedelta:
    return timedelta(minutes=float(request.app.state.settings.stale_after_minutes))


def _now(request: Request) -> datetime:
    now: datetime = request.app.state.clock()
    return now


# --- routes -------------------------------------------------------------------------------------------------


@router.get("/hq/stores")
async def list_stores(
    request: Request,
    store: Many = None,
    company: Many = None,
    stale: bool | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
    format: Format = "json",
) -> Any:
    """Stores with their company and sync lag (门店)."""
    query = q.stores_query(
        _now(request), _stale_after(request), store=ids("store", store), company=ids("company", company), stale=stale
    )
    return await answer(request, query, format, limit, offset)


@router.get("/hq/sync-lag")
async def sync_lag(
    request: Request,
    store: Many = None,
    company: Many = None,
    stale: bool | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
    format: Format = "json",
) -> Any:
    """Sync lag per store (同步延迟): applied batches, missing ones, rows pending at the box, last contact."""
    query = q.sync_lag_query(
        _now(request), _stale_after(request), store=ids("store", store), company=ids("company", company), stale=stale
    )
    return await answer(request, query, format, limit, offset)


@router.get("/hq/stock")
async def stock(
    request: Request,
    store: Many = None,
    company: Many = None,
    sku: Many = None,
    category: Many = None,
    location: Many = None,
    limit: Limit = 100,
    offset: Offset = 0,
    format: Format = "json",
) -> Any:
    """Stock by store and SKU (库存): quantity and value on hand, in transit apart."""
    query = q.stock_query(
        store=ids("store", store),
        company=ids("company", company),
        sku=texts("sku", sku),
        category=texts("category", category),
        location=texts("location", location),
    )
    return await answer(request, query, format, limit, offset)


@router.get("/hq/sales")
async def sales(
    request: Request,
    group_by_: Annotated[str, Query(alias="group_by", description="any of store,day,sku,category")] = "store,day",
    from_: Annotated[str | None, Query(alias="from", description="first day YYYY-MM-DD")] = None,
    to: Annotated[str | None, Query(description="last day YYYY-MM-DD (included)")] = None,
    store: Many = None,
    company: Many = None,
    sku: Many = None,
    category: Many = None,
    limit: Limit = 100,
    offset: Offset = 0,
    format: Format = "json",
) -> Any:
    """Sales by store, day, SKU and category (销售汇总), from the daily aggregate."""
    first, last = day("from", from_), day("to", to)
    if first and last and first > last:
        raise bad("from", "不能晚于 to", "must not be after to")
    query = q.sales_query(
        group_by(group_by_),
        day_from=first,
        day_to=last,
        store=ids("store", store),
        company=ids("company", company),
        sku=texts("sku", sku),
        category=texts("category", category),
    )
    return await answer(request, query, format, limit, offset)


@router.get("/hq/vouchers")
async def vouchers(
    request: Request,
    company: Annotated[str, Query(description="company id")],
    period_: Annotated[str, Query(alias="period", description="YYYY-MM")],
    store: Many = None,
    account: Annotated[str | None, Query(description="account code; sub-accounts included")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
    format: Format = "json",
) -> Any:
    """Vouchers (凭证) of a company's stores in a period, grouped by voucher; exports have one row per line."""
    if account is not None and not ACCOUNT.match(account):
        raise bad("account", "应为科目编码 (字母、数字、点, 1..32 个)", "must be an account code (1..32 of 0-9 A-Z .)")
    query = q.vouchers_query(one_id("company", company), period(period_), store=ids("store", store), account=account)
    return await answer(request, query, format, limit, offset)


def _all_trial_items(engine: sa.Engine, query: q.Query) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [query.item(r) for r in conn.execute(query.select)]


@router.get("/hq/trial-balance")
async def trial_balance(
    request: Request,
    company: Annotated[str, Query(description="company id")],
    period_: Annotated[str, Query(alias="period", description="YYYY-MM")],
    store: Many = None,
    limit: Limit = 100,
    offset: Offset = 0,
    format: Format = "json",
) -> Any:
    """The consolidated trial balance (科目余额表) of a company's stores: opening, period, closing per account."""
    query = q.trial_balance_query(one_id("company", company), period(period_), store=ids("store", store))
    engine: sa.Engine = request.app.state.engine
    # A chart has a few hundred accounts at most: the totals come from the whole result, not the page.
    totals = q.trial_balance_totals(await run_in_threadpool(_all_trial_items, engine, query))

    def decorate(page: dict[str, Any]) -> dict[str, Any]:
        return {"company": company, "period": period_, **page, "totals": totals}

    def tail() -> Iterator[dict[str, Any]]:
        yield {"account": "合计", "account_name": "合计 Total", **totals}

    return await answer(request, query, format, limit, offset, decorate=decorate, tail=tail)


@router.get("/hq/suppliers")
async def suppliers(
    request: Request,
    store: Many = None,
    company: Many = None,
    supplier: Many = None,
    frozen: bool | None = None,
    attention: Annotated[bool | None, Query(description="true: frozen or papers expiring within `days`")] = None,
    days: Annotated[int, Query(ge=0, le=3650, description="papers expiring within this many days")] = 30,
    limit: Limit = 100,
    offset: Offset = 0,
    format: Format = "json",
) -> Any:
    """Supplier compliance across stores (供应商合规): freezes and papers expiring within `days`."""
    query = q.compliance_query(
        _now(request).date(),
        days,
        store=ids("store", store),
        company=ids("company", company),
        supplier=texts("supplier", supplier),
        frozen=frozen,
        attention=attention,
    )
    return await answer(request, query, format, limit, offset)


def _totals(engine: sa.Engine, store: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        if conn.execute(sa.select(stores.c.id).where(stores.c.id == store)).first() is None:
            return None
        return store_totals(conn, store)


@router.get("/hq/stores/{store}/totals")
async def totals(request: Request, store: str) -> dict[str, Any]:
    """A store's totals at the aggregator, the shape of the box's `storebox sync verify` (核对总数)."""
    one_id("store", store)
    request.app.state.metrics.hq_requests.labels(endpoint="totals").inc()
    found = await run_in_threadpool(_totals, request.app.state.engine, store)
    if found is None:
        raise CloudError("store_unknown", f"没有门店 {store}", f"no store {store}", 404, store=store)
    return found
