"""The HQ pages (docs/hq-page.md): log in with an HQ token, stores and their sync lag, stock of a SKU by store,
sales by store and day, the consolidated trial balance and supplier compliance, each with the HQ API's exports.

Every figure comes from the HQ API (docs/hq-api.md) through `page.api`; a filter the page can check itself (a
date, a period, a number of days) is checked here so that its error shows next to its field.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Query, Request
from fastapi.responses import Response

from cloud_sync.web.framework import (
    HOME,
    LOGIN,
    SESSION_COOKIE,
    SESSION_MAX_AGE,
    TIME_ZONE,
    HqPage,
    HqPageContext,
    HqPageRouter,
    redirect,
    safe_next,
    shell_for,
)
from edge.web.pages.charts import line_chart
from edge.web.pages.client import ApiFailure, PageApi, asgi_client
from edge.web.pages.framework import LANG_COOKIE, LANG_MAX_AGE
from edge.web.pages.i18n import LANGUAGES, catalog

router = HqPageRouter()

ALL = 10000  # the HQ API's largest page: "all" for lists a chain keeps short (stores, a SKU's rows, accounts)
STORES_PAGE = 50
SALES_PAGE = 100
COMPLIANCE_PAGE = 100
MAX_SALES_DAYS = 366
CHART_SERIES = 5  # charts.js has five colours: the chain's total and the four biggest stores
CHART_COLORS = ("#0b5cad", "#cf222e", "#1a7f37", "#9a6700", "#8250df")
EXPORTS = ("csv", "xlsx")
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")

Offset = Annotated[int, Query(ge=0, le=10**9)]
Text = Annotated[str, Query(max_length=2000)]


# --- session ----------------------------------------------------------------------------------------------------


@router.get("/")
async def root() -> Response:
    return redirect(HOME)


@router.get(LOGIN)
async def login_form(request: Request, next: Text = HOME, expired: Text = "") -> Response:
    shell = shell_for(request)
    return shell.render("hq/login.html", next=safe_next(next), expired=expired == "1", errors={})


@router.post(LOGIN)
async def login(request: Request) -> Response:
    """The HQ token pasted by the user is tried on the API; a good one becomes the HttpOnly session cookie.

    No CSRF token here: there is no session yet, and logging someone in with one's own token gains nothing a
    page could read (SameSite=Strict keeps the cookie off other sites' requests)."""
    shell = shell_for(request)
    form = await request.form()
    raw_token, raw_next = form.get("token"), form.get("next")
    token = raw_token.strip() if isinstance(raw_token, str) else ""
    next_url = safe_next(raw_next if isinstance(raw_next, str) else None)
    errors: dict[str, str] = {}
    if not token:
        errors["token"] = shell.t("hq.login.token_required")
    elif len(token) > 200 or not token.isascii() or not token.isprintable() or " " in token:
        errors["token"] = shell.t("hq.login.failed")
    else:
        api = PageApi(asgi_client(request.app), token)
        try:
            await api.get("/api/v1/hq/stores", limit=1)
        except ApiFailure as failure:
            errors["token"] = shell.t("hq.login.failed") if failure.status == 401 else failure.text(shell.lang)
        else:
            response = redirect(next_url)
            response.set_cookie(
                SESSION_COOKIE,
                token,
                max_age=SESSION_MAX_AGE,
                path="/",
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
            return response
    return shell.render("hq/login.html", status=400, next=next_url, expired=False, errors=errors)


@router.post("/hq/logout")
async def logout(page: HqPage) -> Response:
    response = redirect(LOGIN)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/lang/{lang}")
async def switch_language(lang: str, next: Text = HOME) -> Response:
    """Chinese or English, remembered for a year in the same cookie as the box page's."""
    response = redirect(safe_next(next))
    if lang in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, max_age=LANG_MAX_AGE, path="/", samesite="lax")
    return response


# --- helpers ----------------------------------------------------------------------------------------------------


def export_format(value: str) -> str | None:
    """`format=csv|xlsx` asks for the API's export; empty is the page; anything else is a bad link."""
    if value in EXPORTS:
        return value
    if value:
        words = catalog()
        raise ApiFailure(
            422,
            "hq_page_bad_format",
            words.text("zh", "hq.error.bad_format"),
            words.text("en", "hq.error.bad_format"),
            {},
        )
    return None


def query_string(values: Mapping[str, Any]) -> str:
    return urlencode({k: v for k, v in values.items() if v not in (None, "", False)})


async def store_list(page: HqPageContext) -> list[dict[str, Any]]:
    answer = await page.api.get("/api/v1/hq/stores", limit=ALL)
    stores: list[dict[str, Any]] = answer["items"]
    return stores


def companies_of(stores: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(id, "name (id)") of every company with a store, in id order."""
    found: dict[str, str] = {}
    for store in stores:
        company = store.get("company")
        if company:
            name = store.get("company_name") or company
            found[company] = f"{name} ({company})" if name != company else company
    return sorted(found.items())


def company_options(page: HqPageContext, stores: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [("", page.t("hq.filter.all_companies")), *companies_of(stores)]


def behind(row: Mapping[str, Any]) -> bool:
    """A store the HQ figures lag: not heard from, batches missing or queued, rows waiting at the box, refused."""
    return bool(
        row.get("stale")
        or row.get("missing_batches")
        or row.get("queued_batches")
        or row.get("pending_rows")
        or row.get("refused")
    )


def pages(answer: Mapping[str, Any], query: Mapping[str, Any], path: str) -> dict[str, Any]:
    """Previous and next links of a paged API answer, keeping the page's filters."""
    limit, offset = int(answer.get("limit") or 1), int(answer.get("offset") or 0)
    previous = max(0, offset - limit) if offset > 0 else None
    following = answer.get("next_offset")

    def link(at: int | None) -> str | None:
        if at is None:
            return None
        return f"{path}?{query_string({**query, 'offset': at or None})}"

    return {
        "previous": link(previous),
        "next": link(following),
        "first": offset + 1 if answer.get("items") else 0,
        "last": offset + len(answer.get("items") or ()),
        "total": answer.get("total", 0),
    }


# --- stores -----------------------------------------------------------------------------------------------------


@router.get("/hq")
async def stores_page(
    page: HqPage,
    company: Text = "",
    behind_only: Annotated[str, Query(alias="behind", max_length=10)] = "",
    offset: Offset = 0,
    format: Text = "",
) -> Response:
    """Every store with its sync lag, the behind ones highlighted, and its totals at the aggregator."""
    params: dict[str, Any] = {"company": company or None, "stale": "true" if behind_only == "1" else None}
    wanted = export_format(format)
    if wanted:
        return await page.download("/api/v1/hq/sync-lag", {**params, "format": wanted})
    everything, answer = await asyncio.gather(
        store_list(page), page.api.get("/api/v1/hq/stores", limit=STORES_PAGE, offset=offset, **params)
    )
    rows: list[dict[str, Any]] = answer["items"]
    totals = await asyncio.gather(
        *(page.api.get(f"/api/v1/hq/stores/{quote(row['store'], safe='')}/totals") for row in rows)
    )
    for row, total in zip(rows, totals, strict=True):
        row["behind"] = behind(row.get("sync") or row)
        row["totals"] = total
    query = {"company": company, "behind": "1" if behind_only == "1" else ""}
    return page.render(
        "hq/stores.html",
        rows=rows,
        companies=company_options(page, everything),
        company=company,
        behind_only=behind_only == "1",
        chain={
            "stores": len(everything),
            "behind": sum(1 for s in everything if behind(s.get("sync") or s)),
        },
        pager=pages(answer, query, "/hq"),
        export_base="/hq?" + query_string(query),
    )


# --- stock ------------------------------------------------------------------------------------------------------


@router.get("/hq/stock")
async def stock_page(page: HqPage, sku: Text = "", company: Text = "", format: Text = "") -> Response:
    """A SKU's stock by store: on hand (quantity and value) and, apart, what is on the way between stores."""
    sku = sku.strip()
    params: dict[str, Any] = {"sku": sku or None, "company": company or None}
    wanted = export_format(format)
    if wanted and sku:
        return await page.download("/api/v1/hq/stock", {**params, "format": wanted})
    stores = await store_list(page)
    context: dict[str, Any] = {
        "sku": sku,
        "company": company,
        "companies": company_options(page, stores),
        "rows": None,
        "errors": {},
    }
    if sku:
        answer = await page.api.get("/api/v1/hq/stock", limit=ALL, **params)
        rows: list[dict[str, Any]] = answer["items"]
        names = {s["store"]: s.get("name") or s["store"] for s in stores}
        for row in rows:
            row["store_name"] = names.get(row["store"], row["store"])
        units = {row.get("base_unit") for row in rows}
        context.update(
            rows=rows,
            truncated=answer.get("total", 0) > len(rows),
            totals={
                key: sum(int(r.get(key) or 0) for r in rows)
                for key in ("qty", "value_fen", "transit_qty", "transit_value_fen")
            },
            unit=units.pop() if len(units) == 1 else None,
            one_sku=len({row["sku"] for row in rows}) == 1,
            export_base="/hq/stock?" + query_string({"sku": sku, "company": company}),
        )
    return page.render("hq/stock.html", **context)


# --- sales ------------------------------------------------------------------------------------------------------


def _day_field(page: HqPageContext, name: str, value: str, errors: dict[str, str]) -> date | None:
    if not value:
        return None
    if DAY.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    errors[name] = page.t("hq.filter.bad_day")
    return None


def _midnight(day: str) -> float:
    return datetime.combine(date.fromisoformat(day), time(), TIME_ZONE).timestamp()


def sales_chart(
    page: HqPageContext,
    first: date,
    last: date,
    by_day: list[dict[str, Any]],
    top: list[dict[str, Any]],
    by_store_day: list[dict[str, Any]],
    names: Mapping[str, str],
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Gross sales per day in yuan: the chain (or company) and its biggest stores; with its legend."""
    days = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    total = {r["day"]: r["gross_fen"] for r in by_day}
    series: list[tuple[str, list[float | None]]] = [
        (page.t("hq.sales.all_stores"), [round(total.get(d, 0) / 100, 2) for d in days])
    ]
    for store in top:
        mine = {r["day"]: r["gross_fen"] for r in by_store_day if r["store"] == store["store"]}
        label = names.get(store["store"], store["store"])
        series.append((label, [round(mine.get(d, 0) / 100, 2) for d in days]))
    spec = line_chart([_midnight(d) for d in days], series, unit="¥")
    legend = [(CHART_COLORS[i], label) for i, (label, _) in enumerate(series)]
    return spec, legend


@router.get("/hq/sales")
async def sales_page(
    page: HqPage,
    from_: Annotated[str, Query(alias="from", max_length=100)] = "",
    to: Annotated[str, Query(max_length=100)] = "",
    company: Text = "",
    offset: Offset = 0,
    format: Text = "",
) -> Response:
    """Sales by store and day over a date range (the last 30 days by default): a chart, per-store totals, and the
    store-by-day table."""
    errors: dict[str, str] = {}
    today = page.today()
    first = _day_field(page, "from", from_, errors) if from_ else today - timedelta(days=29)
    last = _day_field(page, "to", to, errors) if to else today
    if first and last and not errors:
        if first > last:
            errors["from"] = page.t("hq.sales.from_after_to")
        elif (last - first).days + 1 > MAX_SALES_DAYS:
            errors["to"] = page.t("hq.sales.range_too_long", n=MAX_SALES_DAYS)
    stores = await store_list(page)
    query = {"from": from_, "to": to, "company": company}
    context: dict[str, Any] = {
        "from_": from_ or (first.isoformat() if first else ""),
        "to": to or (last.isoformat() if last else ""),
        "company": company,
        "companies": company_options(page, stores),
        "errors": errors,
        "chart": None,
    }
    if errors or first is None or last is None:
        return page.render("hq/sales.html", status=422, **context)
    span: dict[str, Any] = {"from": first.isoformat(), "to": last.isoformat(), "company": company or None}
    wanted = export_format(format)
    if wanted:
        return await page.download("/api/v1/hq/sales", {**span, "group_by": "store,day", "format": wanted})
    by_day, by_store, detail = await asyncio.gather(
        page.api.get("/api/v1/hq/sales", group_by="day", limit=ALL, **span),
        page.api.get("/api/v1/hq/sales", group_by="store", limit=ALL, **span),
        page.api.get("/api/v1/hq/sales", group_by="store,day", limit=SALES_PAGE, offset=offset, **span),
    )
    names = {s["store"]: s.get("name") or s["store"] for s in stores}
    top = sorted(by_store["items"], key=lambda r: (-int(r["gross_fen"]), r["store"]))[: CHART_SERIES - 1]
    by_store_day: list[dict[str, Any]] = []
    if top:
        answer = await page.api.get(
            "/api/v1/hq/sales", group_by="store,day", limit=ALL, store=",".join(r["store"] for r in top), **span
        )
        by_store_day = answer["items"]
    chart, legend = sales_chart(page, first, last, by_day["items"], top, by_store_day, names)
    store_rows = by_store["items"]
    context.update(
        chart=chart if by_day["items"] else None,
        legend=legend,
        first=first.isoformat(),
        last=last.isoformat(),
        store_rows=store_rows,
        names=names,
        totals={
            key: sum(int(r.get(key) or 0) for r in store_rows)
            for key in ("qty", "gross_fen", "tax_fen", "net_fen", "cost_fen", "margin_fen")
        },
        detail=detail["items"],
        pager=pages(detail, query, "/hq/sales"),
        export_base="/hq/sales?" + query_string(query),
    )
    return page.render("hq/sales.html", **context)


# --- trial balance ----------------------------------------------------------------------------------------------


@router.get("/hq/trial-balance")
async def trial_balance_page(page: HqPage, company: Text = "", period: Text = "", format: Text = "") -> Response:
    """The consolidated trial balance of a company's stores for a month (this month by default)."""
    stores = await store_list(page)
    companies = companies_of(stores)
    errors: dict[str, str] = {}
    chosen = company or (companies[0][0] if companies else "")
    month = period or page.today().strftime("%Y-%m")
    if chosen and chosen not in dict(companies):
        errors["company"] = page.t("hq.tb.unknown_company")
    if not PERIOD.match(month):
        errors["period"] = page.t("hq.tb.bad_period")
    context: dict[str, Any] = {
        "company": chosen,
        "period": month,
        "companies": companies,
        "errors": errors,
        "report": None,
    }
    if errors:
        return page.render("hq/trial_balance.html", status=422, **context)
    if not chosen:
        return page.render("hq/trial_balance.html", **context)
    params: dict[str, Any] = {"company": chosen, "period": month}
    wanted = export_format(format)
    if wanted:
        return await page.download("/api/v1/hq/trial-balance", {**params, "format": wanted})
    report = await page.api.get("/api/v1/hq/trial-balance", limit=ALL, **params)
    context.update(report=report, export_base="/hq/trial-balance?" + query_string(params))
    return page.render("hq/trial_balance.html", **context)


# --- compliance -------------------------------------------------------------------------------------------------


@router.get("/hq/compliance")
async def compliance_page(
    page: HqPage,
    company: Text = "",
    days: Annotated[str, Query(max_length=100)] = "30",
    frozen: Annotated[str, Query(max_length=10)] = "",
    offset: Offset = 0,
    format: Text = "",
) -> Response:
    """Suppliers needing attention in every store: frozen ones and papers expiring within `days`."""
    stores = await store_list(page)
    errors: dict[str, str] = {}
    within = int(days) if days.strip().isdigit() and len(days.strip()) <= 4 else -1
    if not 0 <= within <= 3650:
        errors["days"] = page.t("hq.compliance.bad_days")
    query = {"company": company, "days": days, "frozen": "1" if frozen == "1" else ""}
    context: dict[str, Any] = {
        "company": company,
        "days": days,
        "frozen_only": frozen == "1",
        "companies": company_options(page, stores),
        "errors": errors,
        "rows": None,
    }
    if errors:
        return page.render("hq/compliance.html", status=422, **context)
    params: dict[str, Any] = {
        "company": company or None,
        "days": within,
        "attention": "true",
        "frozen": "true" if frozen == "1" else None,
    }
    wanted = export_format(format)
    if wanted:
        return await page.download("/api/v1/hq/suppliers", {**params, "format": wanted})
    answer = await page.api.get("/api/v1/hq/suppliers", limit=COMPLIANCE_PAGE, offset=offset, **params)
    names = {s["store"]: s.get("name") or s["store"] for s in stores}
    context.update(
        rows=answer["items"],
        names=names,
        pager=pages(answer, query, "/hq/compliance"),
        export_base="/hq/compliance?" + query_string(query),
    )
    return page.render("hq/compliance.html", **context)
