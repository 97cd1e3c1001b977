"""Stock (库存): find an item by name, pinyin initials, SKU or barcode; one item's stock by location and lot with
expiry, its moves, value and daily sales. On-hand figures carry `data-live-stock` and change as the tills sell."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import date, datetime, time
from typing import Any
from urllib.parse import quote

from fastapi.responses import Response

from edge.web.pages.charts import line_chart
from edge.web.pages.framework import Page, PageContext, PageRouter

router = PageRouter()

SEARCH_LIMIT = 50
LIST_PAGE = 50
MOVES_SHOWN = 30
SALES_DAYS = 90
MAX_QUERY = 100
MAX_OFFSET = 2**31


def path_part(value: str) -> str:
    """A value as one segment of an API path."""
    return quote(value, safe="")


def offset_of(value: str | None) -> int:
    """A paging offset from the query string; anything odd is the first page."""
    try:
        number = int(value or 0)
    except ValueError:
        return 0
    return number if 0 <= number <= MAX_OFFSET else 0


def item_name(item: Mapping[str, Any], lang: str) -> str:
    """The item's name in the page's language (the Chinese one when there is no English)."""
    if lang == "en" and item.get("name_en"):
        return str(item["name_en"])
    return str(item.get("name") or item.get("sku") or "")


async def places(page: PageContext) -> dict[str, str]:
    """Location code -> its name in the page's language."""
    rows = await page.api.get("/api/v1/locations")
    return {r["code"]: (r.get("name_en") if page.lang == "en" else r.get("name")) or r["code"] for r in rows}


def store_today(page: PageContext) -> date:
    return datetime.now(page.tz).date()


def days_left(expiry: str | None, today: date) -> int | None:
    if not expiry:
        return None
    try:
        return (date.fromisoformat(str(expiry)[:10]) - today).days
    except ValueError:
        return None


# --- search -------------------------------------------------------------------------------------------------


@router.get("/stock")
async def stock_search(page: Page, q: str = "", offset: str = "") -> Response:
    """The search box; without a query, every item page by page."""
    query = q.strip()
    errors: dict[str, str] = {}
    items: list[dict[str, Any]] = []
    more = False
    start = offset_of(offset)
    if len(query) > MAX_QUERY or "\x00" in query:
        errors["q"] = page.t("stock.search.invalid")
    elif query:
        found = await page.api.get("/api/v1/items/search", q=query, limit=SEARCH_LIMIT)
        items = found["items"]
    else:
        listed = await page.api.get("/api/v1/items", limit=LIST_PAGE + 1, offset=start, with_stock="true")
        more = len(listed) > LIST_PAGE
        items = [{**i, "total": i["on_hand_total"], "matched_by": None} for i in listed[:LIST_PAGE]]
    context: dict[str, Any] = {
        "q": q if errors else query,
        "items": items,
        "errors": errors,
        "offset": start,
        "more": more,
        "page_size": LIST_PAGE,
        "item_name": item_name,
    }
    if page.request.headers.get("hx-request") == "true" and page.request.headers.get("hx-target") == "results":
        return page.render("stock/_results.html", **context)
    return page.render("stock/search.html", status=422 if errors else 200, **context)


# --- one item -----------------------------------------------------------------------------------------------


async def _lots_and_moves(page: PageContext, sku: str) -> dict[str, Any]:
    rows, moves, documents = await asyncio.gather(
        page.api.get("/api/v1/stock", sku=sku, limit=10000),
        page.api.get("/api/v1/stock/moves", sku=sku, limit=MOVES_SHOWN),
        page.api.get("/api/v1/documents", sku=sku, limit=MOVES_SHOWN),
    )
    today = store_today(page)
    lots = [{**r, "days_left": days_left(r.get("expiry"), today)} for r in rows]
    by_location: dict[str, int] = {}
    for r in rows:
        by_location[r["location"]] = by_location.get(r["location"], 0) + int(r["qty"])
    value = sum(int(r["value_fen"]) for r in rows)
    total = sum(by_location.values())
    return {
        "lots": lots,
        "by_location": by_location,
        "total": total,
        "value_fen": value,
        "avg_cost_fen": round(value / total) if total > 0 else None,
        "moves": moves,
        "move_docs": {d["id"]: d for d in documents},
        "show_value": page.can("stock:valuation"),
    }


def _sales_chart(page: PageContext, sales: Mapping[str, Any]) -> dict[str, Any]:
    xs, values = [], []
    for day in sales["days"]:
        midnight = datetime.combine(date.fromisoformat(day["date"]), time(), page.tz)
        xs.append(midnight.timestamp())
        values.append(day["qty"])
    # A line over a time axis (charts.js draws bars on a category axis, which would label days as numbers).
    return line_chart(xs, [(page.t("stock.item.sales_series"), values)], unit=sales["base_unit"])


@router.get("/stock/{sku}")
async def stock_item(page: Page, sku: str) -> Response:
    """On hand by location and lot with expiry, recent moves, value (for roles that see it), daily sales."""
    item = await page.api.get(f"/api/v1/items/{path_part(sku)}")
    live, names, sales = await asyncio.gather(
        _lots_and_moves(page, item["sku"]),
        places(page),
        page.api.get(f"/api/v1/items/{path_part(item['sku'])}/sales", days=SALES_DAYS),
    )
    return page.render(
        "stock/item.html",
        item=item,
        name=item_name(item, page.lang),
        places=names,
        sales_chart=_sales_chart(page, sales),
        sales_total=sum(d["qty"] for d in sales["days"]),
        sales_days=SALES_DAYS,
        **live,
    )


@router.get("/stock/{sku}/live")
async def stock_item_live(page: Page, sku: str) -> Response:
    """The lots and moves again, for htmx when the live stream says this item's stock changed."""
    item = await page.api.get(f"/api/v1/items/{path_part(sku)}")
    live, names = await asyncio.gather(_lots_and_moves(page, item["sku"]), places(page))
    return page.render("stock/_live.html", item=item, places=names, **live)
