"""Cold rooms over HTTP: rooms with band and current temperature, history, excursions with their lots."""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest

from edge.bus.payloads import TemperatureReading
from edge.bus.storage import insert_readings
from edge.devices import cold_chain
from edge.devices.cold_chain import Band, ColdChainPolicy
from edge.security.devices import create_device, set_device_placement
from edge.security.roles import Role
from tests.edge.web.apibox import T0, Box, assert_error_shape

pytestmark = pytest.mark.anyio
CST = timezone(timedelta(hours=8))
POLICY = ColdChainPolicy({"chilled": Band(0, 4000), "frozen": Band(None, -18000)}, timedelta(seconds=900))


def place_sensor(conn: object, device: str, room: str) -> None:
    create_device(conn, device, "sensor", f"{device}-secret")  # type: ignore[arg-type]
    set_device_placement(conn, device, profile=None, location=room)  # type: ignore[arg-type]


async def readings(box: Box, *temps: tuple[int, float]) -> None:
    """Readings of cold-1 at T0 + minutes, taken into rollups and excursions as the box does."""
    rows = [
        TemperatureReading(
            "cold-1", f"r{minute}", (T0 + timedelta(minutes=minute)).astimezone(CST), None, round(c * 1000)
        )
        for minute, c in temps
    ]
    await box.writer.execute(insert_readings, rows, T0)
    await box.writer.execute(cold_chain.process_readings, POLICY, T0 + timedelta(minutes=max(m for m, _ in temps)))


@pytest.fixture
async def cold_box(box: Box) -> Box:
    await box.writer.execute(place_sensor, "cold-1", "cold")
    await box.receive("MILK", 12, price_fen=900, lot="L1", expiry="2024-06-07", location="cold")
    return box


async def test_rooms_show_their_band_sensor_and_latest_reading(cold_box: Box) -> None:
    box = cold_box
    await readings(box, (0, 2.5), (1, 3.0))
    response = await box.client.get("/api/v1/cold-rooms", headers=box.auth(Role.CLERK))
    assert response.status_code == 200
    (room,) = response.json()
    assert (room["room"], room["storage_class"], room["sensors"]) == ("cold", "chilled", ["cold-1"])
    assert room["band"] == {"min_celsius": 0.0, "max_celsius": 4.0}
    assert room["current"] == {
        "celsius": 3.0,
        "ts": (T0 + timedelta(minutes=1)).isoformat(),
        "device": "cold-1",
        "in_band": True,
    }
    one = await box.client.get("/api/v1/cold-rooms/cold", headers=box.auth(Role.MANAGER))
    assert one.json() == room
    missing = await box.client.get("/api/v1/cold-rooms/attic", headers=box.auth(Role.MANAGER))
    assert missing.status_code == 404 and assert_error_shape(missing)["code"] == "unknown_location"


async def test_history_raw_and_rolled_up_with_local_times_without_an_offset(cold_box: Box) -> None:
    box = cold_box
    await readings(box, *[(m, 2.0 + m % 2) for m in range(0, 30)])
    box.clock.advance(timedelta(hours=1))
    raw = await box.client.get(
        "/api/v1/cold-rooms/cold/history",
        params={"since": "2024-06-01T10:00:00", "until": "2024-06-01T10:10:00"},  # Asia/Shanghai = 02:00Z
        headers=box.auth(Role.CLERK),
    )
    assert raw.status_code == 200, raw.text
    body = raw.json()
    assert body["resolution"] == "raw" and len(body["points"]) == 10 and body["truncated"] is False
    assert body["points"][1] == {
        "ts": (T0 + timedelta(minutes=1)).isoformat(),
        "celsius": 3.0,
        "device": "cold-1",
        "n": None,
        "min_celsius": None,
        "max_celsius": None,
        "avg_celsius": None,
    }
    quarter = await box.client.get(
        "/api/v1/cold-rooms/cold/history",
        params={"since": T0.isoformat(), "until": (T0 + timedelta(minutes=30)).isoformat(), "resolution": "15min"},
        headers=box.auth(Role.CLERK),
    )
    points = quarter.json()["points"]
    assert [(p["n"], p["min_celsius"], p["max_celsius"]) for p in points] == [(15, 2.0, 3.0), (15, 2.0, 3.0)]
    default = await box.client.get("/api/v1/cold-rooms/cold/history", headers=box.auth(Role.CLERK))
    assert default.json()["resolution"] == "minute" and len(default.json()["points"]) == 30  # the last 24 hours


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"since": "2024-06-02T00:00:00Z", "until": "2024-06-01T00:00:00Z"}, 422, "invalid_history_range"),
        ({"since": "2023-01-01T00:00:00Z", "until": "2024-06-01T00:00:00Z"}, 422, "invalid_history_range"),
        ({"resolution": "hourly"}, 422, "validation_error"),
        ({"since": "yesterday"}, 422, "validation_error"),
    ],
)
async def test_a_bad_history_request_is_refused_clearly(
    cold_box: Box, params: dict[str, str], status: int, code: str
) -> None:
    response = await cold_box.client.get(
        "/api/v1/cold-rooms/cold/history", params=params, headers=cold_box.auth(Role.MANAGER)
    )
    assert response.status_code == status, response.text
    assert assert_error_shape(response)["code"] == code


async def test_excursions_carry_the_lots_in_the_room_and_are_found_by_lot(cold_box: Box) -> None:
    box = cold_box
    await readings(box, (0, 3.0), (1, 7.0), (20, 8.5), (30, 2.0))
    listed = await box.client.get("/api/v1/excursions", headers=box.auth(Role.AUDITOR))
    (excursion,) = listed.json()
    assert (excursion["state"], excursion["room"], excursion["peak_celsius"]) == ("ended", "cold", 8.5)
    assert excursion["started_at"] == (T0 + timedelta(minutes=1)).isoformat()
    assert excursion["lots"] == [{"sku": "MILK", "name": "鲜牛奶 1L", "lot": "L1", "expiry": "2024-06-07", "qty": 12}]
    by_lot = await box.client.get("/api/v1/excursions?sku=MILK&lot=L1", headers=box.auth(Role.MANAGER))
    assert [e["id"] for e in by_lot.json()] == [excursion["id"]]
    assert (await box.client.get("/api/v1/excursions?sku=COLA", headers=box.auth(Role.MANAGER))).json() == []
    assert (await box.client.get("/api/v1/excursions?open=true", headers=box.auth(Role.MANAGER))).json() == []
    one = await box.client.get(f"/api/v1/excursions/{excursion['id']}", headers=box.auth(Role.CLERK))
    assert one.json() == excursion
    missing = await box.client.get("/api/v1/excursions/999", headers=box.auth(Role.CLERK))
    assert missing.status_code == 404 and assert_error_shape(missing)["code"] == "unknown_excursion"


async def test_roles_that_do_not_watch_the_cold_rooms_are_refused(cold_box: Box) -> None:
    for role in (Role.PURCHASER, Role.ACCOUNTANT):
        response = await cold_box.client.get("/api/v1/cold-rooms", headers=cold_box.auth(role))
        assert response.status_code == 403
