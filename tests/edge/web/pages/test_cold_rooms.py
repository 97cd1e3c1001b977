"""Cold-room pages over real HTTP: rooms with band, latest reading and alarm; a room's chart with its band and
excursions; the excursion list with the lots in the room; garbage periods refused next to the field."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.bus.payloads import TemperatureReading
from edge.bus.storage import insert_readings
from edge.db import connect
from edge.devices import cold_chain
from edge.devices.cold_chain import Band, ColdChainPolicy
from edge.security.roles import Role
from edge.web.pages.cold_rooms import RANGES
from edge.web.pages.i18n import load_catalog
from tests.edge.web.pages.pagedata import api, html, ok, text_of
from tests.edge.web.pages.site import Site

TRACE = re.compile(r"Traceback|File \"/|sqlite3\.|NameError|KeyError")
POLICY = ColdChainPolicy({"chilled": Band(0, 4000), "frozen": Band(None, -18000)}, timedelta(seconds=900))


def feed(site: Site, device: str, *readings: tuple[int, float]) -> datetime:
    """Readings of `device` taken `minutes` before now, into rollups and excursions as the box's writer does."""
    now = datetime.now(UTC).replace(microsecond=0)
    rows = [
        TemperatureReading(
            device, f"{device}-{now.timestamp():.0f}-{minutes}", now - timedelta(minutes=minutes), None, round(c * 1000)
        )
        for minutes, c in readings
    ]
    conn = connect(site.box.db_path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        insert_readings(conn, rows, now)
        cold_chain.process_readings(conn, POLICY, now)
        conn.execute("COMMIT")
    finally:
        conn.close()
    return now


@pytest.fixture(scope="module")
def cold(site: Site) -> Site:
    """A sensor in the cold room, milk in it, an hour in band and then 20 minutes too warm: an alarm."""
    ok(
        api(site, "POST", "/api/v1/devices", Role.ADMIN, json={"id": "cold-1", "kind": "sensor", "location": "cold"}),
        201,
    )
    line = {"code": "MILK", "qty": 12, "price_fen": 900, "lot": "L1", "expiry": "2024-06-07", "location": "cold"}
    body = {"counterparty": "sup-1", "lines": [line]}
    ok(api(site, "POST", "/api/v1/documents/receipt", Role.MANAGER, json=body), 201)
    feed(site, "cold-1", *[(m, 2.5 + (m % 3) / 2) for m in range(80, 21, -2)])
    feed(site, "cold-1", (20, 7.5), (15, 8.25), (10, 7.75), (5, 7.0), (1, 6.5))
    return site


def test_every_state_class_and_range_has_its_label() -> None:
    catalog = load_catalog()
    for key in (
        *(f"cold_rooms.state.{s}" for s in ("pending", "alarm", "ended")),
        *(f"cold_rooms.direction.{d}" for d in ("above", "below")),
        *(f"cold_rooms.class.{c}" for c in ("chilled", "frozen", "ambient")),
        *(f"cold_rooms.resolution.{r}" for r in ("raw", "minute", "15min")),
        *(f"cold_rooms.range_{r}" for r in RANGES),
    ):
        assert key in catalog, key


def test_the_rooms_show_band_latest_reading_and_the_alarm(cold: Site) -> None:
    with cold.login(Role.MANAGER) as client:
        page = client.get("/cold-rooms")
        assert page.status_code == 200
        row = text_of(page, "//tr[@data-room='cold']")
        assert "冷藏库" in row and "冷藏" in row and "0 至 4 ℃" in row
        assert "6.5 ℃" in row and "cold-1" in row and "报警" in row and "过高" in row
        assert html(page).xpath("//tr[@data-room='cold']//*[@role='alert']")
        recent = text_of(page, "//table[@id='excursions']")
        assert "报警" in recent and "8.25 ℃" in recent and "1 个批次" in recent
        assert html(page).xpath("//div[@id='rooms'][@hx-trigger='sb:alert from:body']")
        (raw,) = html(page).xpath("//section[@data-room-chart='cold']//div[@class='chart']/@data-chart")
        chart = json.loads(raw)
        assert chart["bands"] == [{"lo": 0.0, "hi": 4.0}] and len(chart["marks"]) == 1 and chart["x"]
        fragment = client.get("/cold-rooms?fragment=rooms")
        assert "<html" not in fragment.text and 'data-room="cold"' in fragment.text
    with cold.login(Role.MANAGER, lang="en") as client:
        row = text_of(client.get("/cold-rooms"), "//tr[@data-room='cold']")
        assert "cold room" in row and "0 to 4 ℃" in row and "Alarm" in row and "too warm" in row


def test_a_rooms_chart_carries_its_band_and_excursion(cold: Site) -> None:
    with cold.login(Role.CLERK) as client:  # the keeper watches the rooms too
        page = client.get("/cold-rooms/cold?range=6h")
        assert page.status_code == 200
        (raw,) = html(page).xpath("//div[@class='chart']/@data-chart")
        spec = json.loads(raw)
        assert spec["kind"] == "line" and spec["unit"] == "℃"
        assert spec["bands"] == [{"lo": 0.0, "hi": 4.0}]
        (series,) = spec["series"]
        assert len(series["values"]) == len(spec["x"]) >= 30
        assert max(v for v in series["values"] if v is not None) == 8.25
        (mark,) = spec["marks"]
        started = next(x for x, v in zip(spec["x"], series["values"], strict=True) if v == 7.5)
        assert mark["from"] == started and mark["to"] >= mark["from"] + 15 * 60
        assert "0 至 4 ℃" in html(page).xpath("//div[@class='chart']/@aria-label")[0]
        excursions = text_of(page, "//table[@id='excursions']")
        assert "报警" in excursions and "MILK" in excursions and "L1" in excursions
        status = text_of(page, "//div[@id='room-status']")
        assert "6.5 ℃" in status and "超出范围" in status
        assert client.get("/cold-rooms/cold?fragment=status").text.count("<html") == 0


def test_unknown_rooms_and_other_roles(cold: Site) -> None:
    with cold.login(Role.MANAGER) as client:
        missing = client.get("/cold-rooms/attic")
        assert missing.status_code == 404 and "找不到页面" in missing.text
        odd = client.get("/cold-rooms/%3Cscript%3E")
        assert odd.status_code in (404, 422) and "<script>" not in odd.text and not TRACE.search(odd.text)
    with cold.login(Role.ACCOUNTANT) as client:
        assert client.get("/cold-rooms").status_code == 403
        assert client.get("/cold-rooms/cold").status_code == 403
        assert 'href="/cold-rooms"' not in client.get("/").text


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(period=st.text(max_size=40) | st.sampled_from(list(RANGES)))
def test_garbage_periods_are_refused_next_to_the_field(site: Site, period: str) -> None:
    with site.login(Role.MANAGER) as client:
        response = client.get("/cold-rooms/cold", params={"range": period})
    assert response.status_code in (200, 422), response.text
    assert not TRACE.search(response.text)
    if period in RANGES:
        assert response.status_code == 200
    else:
        assert response.status_code == 422 and html(response).xpath("//*[@id='e-range']")
