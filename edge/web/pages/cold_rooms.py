"""Cold rooms (冷库温度): each room's band, latest reading and excursions going on; a room's temperature curve with
its band and excursions shaded; the excursion list with the lots that were in the room. Over
`GET /api/v1/cold-rooms[/{room}[/history]]` and `GET /api/v1/excursions` (docs/cold-chain.md). The alarm itself
reaches an open page as a toast from the live stream; the rooms' figures refresh on it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Path, Query
from fastapi.responses import Response

from edge.web.pages.charts import temperature_chart
from edge.web.pages.framework import Page, PageContext, PageRouter

router = PageRouter()

RANGES: dict[str, timedelta] = {
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "72h": timedelta(hours=72),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
DEFAULT_RANGE = "24h"
HISTORY_POINTS = 3000
RECENT_EXCURSIONS = 20
ROOM_EXCURSIONS = 100
RoomCode = Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")


def _number(value: float) -> str:
    """23.0 -> "23", -18.5 -> "-18.5", 3.125 -> "3.13"."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def band_text(page: PageContext, band: dict[str, Any] | None) -> str:
    lo = band.get("min_celsius") if band else None
    hi = band.get("max_celsius") if band else None
    if lo is not None and hi is not None:
        return page.t("cold_rooms.band_between", lo=_number(lo), hi=_number(hi))
    if hi is not None:
        return page.t("cold_rooms.band_max", hi=_number(hi))
    if lo is not None:
        return page.t("cold_rooms.band_min", lo=_number(lo))
    return page.t("cold_rooms.band_none")


def _helpers(page: PageContext) -> dict[str, Any]:
    return {"band_text": lambda band: band_text(page, band), "celsius": _number}


@router.get("/cold-rooms")
async def cold_rooms(page: Page) -> Response:
    """Every room with its band, latest reading and excursions going on; the recent excursions below.
    `?fragment=rooms` answers the rooms' table alone (htmx refresh on a live alert)."""
    rooms, recent = await asyncio.gather(
        page.api.get("/api/v1/cold-rooms"), page.api.get("/api/v1/excursions", limit=RECENT_EXCURSIONS)
    )
    if page.request.query_params.get("fragment") == "rooms":
        return page.render("cold_rooms/_rooms.html", rooms=rooms, **_helpers(page))
    until = datetime.now(page.tz)
    since = until - RANGES[DEFAULT_RANGE]
    histories = await asyncio.gather(
        *(
            page.api.get(
                f"/api/v1/cold-rooms/{room['room']}/history",
                since=since.isoformat(),
                until=until.isoformat(),
                limit=HISTORY_POINTS,
            )
            for room in rooms
        )
    )
    label = page.t("cold_rooms.series")
    charts = [
        temperature_chart(history, room.get("band"), _overlapping(recent, room["room"], since), label=label)
        for room, history in zip(rooms, histories, strict=True)
    ]
    return page.render("cold_rooms/list.html", rooms=rooms, excursions=recent, charts=charts, **_helpers(page))


def _overlapping(excursions: list[dict[str, Any]], room: str, since: datetime) -> list[dict[str, Any]]:
    """The room's excursions that reach into the chart's period."""
    start = _utc(since)
    return [e for e in excursions if e["room"] == room and (e.get("ended_at") or e.get("last_at") or "") >= start]


@router.get("/cold-rooms/{room}")
async def cold_room(
    page: Page, room: str = RoomCode, period: str = Query(DEFAULT_RANGE, alias="range", max_length=2000)
) -> Response:
    """One room's curve over the chosen period with its band and excursions, and its excursions with their lots."""
    errors: dict[str, str] = {}
    if period not in RANGES:
        errors["range"] = page.t("cold_rooms.range_invalid")
        period = DEFAULT_RANGE
    until = datetime.now(page.tz)
    since = until - RANGES[period]
    info, history, excursions = await asyncio.gather(
        page.api.get(f"/api/v1/cold-rooms/{room}"),
        page.api.get(
            f"/api/v1/cold-rooms/{room}/history",
            since=since.isoformat(),
            until=until.isoformat(),
            limit=HISTORY_POINTS,
        ),
        page.api.get("/api/v1/excursions", room=room, limit=ROOM_EXCURSIONS),
    )
    label = page.t("cold_rooms.series")
    chart = temperature_chart(history, info.get("band"), _overlapping(excursions, room, since), label=label)
    name = info["name_en"] if page.lang == "en" else info["name"]
    if page.request.query_params.get("fragment") == "status":
        return page.render("cold_rooms/_status.html", room=info, name=name, **_helpers(page))
    return page.render(
        "cold_rooms/room.html",
        status=422 if errors else 200,
        room=info,
        name=name,
        history=history,
        chart=chart,
        excursions=excursions,
        period=period,
        ranges=list(RANGES),
        errors=errors,
        **_helpers(page),
    )


def _utc(moment: datetime) -> str:
    """The API's timestamps are UTC ISO strings ("...+00:00"): compare like with like."""
    return moment.astimezone(UTC).isoformat()
