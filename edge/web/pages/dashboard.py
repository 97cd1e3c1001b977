"""The dashboard (`/`): today's sales and margin, stock alerts, cold rooms, devices, sync lag, open work; live."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi.responses import Response

from edge.web.pages.charts import line_chart, temperature_chart
from edge.web.pages.client import ApiFailure
from edge.web.pages.framework import Page, PageContext, PageForbidden, PageRouter

router = PageRouter()


async def _optional(page: PageContext, permission: str, path: str, **params: Any) -> Any:
    """An API read the user may lack the permission for: None then (the section is not shown)."""
    if not page.can(permission):
        return None
    try:
        return await page.api.get(path, **params)
    except ApiFailure as failure:
        if failure.status in (403, 404):
            return None
        raise


async def _rooms(page: PageContext) -> list[dict[str, Any]]:
    rooms = await _optional(page, "cold_rooms:read", "/api/v1/cold-rooms")
    if not rooms:
        return []
    # The API's default range: the last 24 hours by the box's clock.
    histories = await asyncio.gather(
        *(page.api.get(f"/api/v1/cold-rooms/{room['room']}/history", limit=1440) for room in rooms)
    )
    return [
        {**room, "chart": temperature_chart(history, room.get("band"), room.get("excursions", ()))}
        for room, history in zip(rooms, histories, strict=True)
    ]


async def _nothing() -> list[dict[str, Any]]:
    return []


async def dashboard_context(page: PageContext, *, rooms: bool = True) -> dict[str, Any]:
    """What the dashboard shows; `rooms=False` skips the temperature histories (a card refreshed alone)."""
    summary, sync, room_list = await asyncio.gather(
        page.api.get("/api/v1/dashboard"),
        _optional(page, "sync:read", "/api/v1/sync/status"),
        _rooms(page) if rooms else _nothing(),
    )
    sales = summary.get("sales")
    chart = None
    if sales:
        chart = line_chart(
            list(range(24)),
            [(page.t("dashboard.by_hour"), [round(v / 100, 2) for v in sales["by_hour_fen"]])],
            unit="¥",
            kind="bars",
        )
    return {"summary": summary, "sales": sales, "sales_chart": chart, "sync": sync, "rooms": room_list}


@router.get("/")
async def dashboard(page: Page) -> Response:
    return page.render("dashboard.html", **await dashboard_context(page))


FRAGMENTS = ("sales", "alerts", "alert_lists", "work", "devices", "sync", "rooms")


@router.get("/fragments/dashboard/{part}")
async def dashboard_part(page: Page, part: str) -> Response:
    """One card again, for htmx when the live stream says something changed."""
    if part not in FRAGMENTS:
        return page.render("error.html", status=404, title_key="error.not_found.title", body_key="error.not_found.body")
    context = await dashboard_context(page, rooms=part == "rooms")
    summary = context["summary"]
    shown = {
        "sales": context["sales"] is not None,
        "alerts": "alerts" in summary,
        "alert_lists": "alerts" in summary,
        "devices": "devices" in summary,
        "sync": context["sync"] is not None,
        "work": bool(summary.get("open_work")),
        "rooms": page.can("cold_rooms:read"),
    }
    if not shown[part]:  # a card this role's dashboard does not have
        raise PageForbidden(part)
    return page.render(f"dashboard/_{part}.html", **context)
