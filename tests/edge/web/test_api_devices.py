"""The device registry over HTTP: register (credentials once), list with status, rotate, disable, place."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from edge.devices import fleet
from edge.devices.fleet import DeviceState, FleetPolicy, StatusRecord
from edge.security.devices import verify_device
from edge.security.roles import Role
from tests.edge.web.apibox import T0, Box, assert_error_shape, readonly

pytestmark = pytest.mark.anyio
ADMIN = Role.ADMIN


async def register(box: Box, body: dict[str, object], role: Role = ADMIN) -> dict[str, object]:
    response = await box.client.post("/api/v1/devices", json=body, headers=box.auth(role))
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    result: dict[str, object] = response.json()
    return result


def check_password(box: Box, device: str, password: str) -> bool:
    conn = readonly(box.db_path)
    try:
        return verify_device(conn, device, password) == device
    finally:
        conn.close()


async def test_registering_answers_the_credentials_once_and_the_list_never_shows_them(box: Box) -> None:
    created = await register(box, {"id": "pda-3", "kind": "handheld", "location": "cold", "profile": "pda-generic"})
    credentials = created["credentials"]
    assert isinstance(credentials, dict)
    assert credentials["username"] == "pda-3" and credentials["topic_prefix"] == "storebox/store-001/dev/pda-3/"
    assert credentials["mqtt_port"] == 1883 and len(credentials["password"]) >= 24
    assert check_password(box, "pda-3", credentials["password"])
    device = created["device"]
    assert isinstance(device, dict)
    assert (device["kind"], device["location"], device["profile"], device["enabled"]) == (
        "handheld",
        "cold",
        "pda-generic",
        True,
    )

    listed = await box.client.get("/api/v1/devices", headers=box.auth(Role.MANAGER))
    assert listed.status_code == 200
    assert [d["id"] for d in listed.json()] == ["pda-3"]
    assert credentials["password"] not in listed.text and "argon2" not in listed.text
    one = await box.client.get("/api/v1/devices/pda-3", headers=box.auth(Role.AUDITOR))
    assert one.status_code == 200 and one.json()["transitions"] == [] and one.json()["status"] is None


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"id": "PDA 3", "kind": "handheld"}, 422, "validation_error"),
        ({"id": "pda-3", "kind": "toaster"}, 422, "validation_error"),
        ({"id": "pda-3", "kind": "handheld", "password": "mine"}, 422, "validation_error"),
        ({"id": "pda-3", "kind": "sensor", "location": "attic"}, 404, "unknown_location"),
        ({"id": "pda-3", "kind": "handheld", "profile": "Bad Profile"}, 422, "validation_error"),
    ],
)
async def test_a_bad_registration_is_refused_and_registers_nothing(
    box: Box, body: dict[str, object], status: int, code: str
) -> None:
    response = await box.client.post("/api/v1/devices", json=body, headers=box.auth(ADMIN))
    assert response.status_code == status, response.text
    assert assert_error_shape(response)["code"] == code
    assert box.count("devices") == 0


async def test_the_same_id_twice_is_a_conflict(box: Box) -> None:
    await register(box, {"id": "pos-9", "kind": "pos"})
    response = await box.client.post("/api/v1/devices", json={"id": "pos-9", "kind": "pos"}, headers=box.auth(ADMIN))
    assert response.status_code == 409 and assert_error_shape(response)["code"] == "device_exists"


async def test_rotating_gives_a_new_password_and_the_old_one_stops_working(box: Box) -> None:
    first = (await register(box, {"id": "scale-2", "kind": "scale"}))["credentials"]
    assert isinstance(first, dict)
    box.clock.advance(timedelta(hours=1))
    response = await box.client.post("/api/v1/devices/scale-2/rotate", headers=box.auth(ADMIN))
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    second = response.json()["credentials"]["password"]
    assert second != first["password"]
    assert not check_password(box, "scale-2", first["password"])
    assert check_password(box, "scale-2", second)
    assert response.json()["device"]["credentials_rotated_at"] == (T0 + timedelta(hours=1)).isoformat()
    missing = await box.client.post("/api/v1/devices/ghost/rotate", headers=box.auth(ADMIN))
    assert missing.status_code == 404 and assert_error_shape(missing)["code"] == "unknown_device"


async def test_disable_and_enable_are_audited_and_refuse_the_device_meanwhile(box: Box) -> None:
    password = (await register(box, {"id": "pos-9", "kind": "pos"}))["credentials"]["password"]  # type: ignore[index]
    off = await box.client.post("/api/v1/devices/pos-9/disable", headers=box.auth(ADMIN))
    assert off.status_code == 200 and off.json()["enabled"] is False
    assert not check_password(box, "pos-9", password)
    on = await box.client.post("/api/v1/devices/pos-9/enable", headers=box.auth(ADMIN))
    assert on.json()["enabled"] is True and check_password(box, "pos-9", password)
    conn = readonly(box.db_path)
    try:
        rows = conn.execute("SELECT actor, action FROM audit WHERE object = 'device:pos-9' ORDER BY seq").fetchall()
    finally:
        conn.close()
    assert [tuple(r) for r in rows] == [
        ("admin", "device.register"),
        ("admin", "device.disable"),
        ("admin", "device.enable"),
    ]


async def test_a_sensor_is_placed_in_a_room_and_taken_out_again(box: Box) -> None:
    await register(box, {"id": "cold-3", "kind": "sensor"})
    placed = await box.client.patch("/api/v1/devices/cold-3", json={"location": "cold"}, headers=box.auth(ADMIN))
    assert placed.status_code == 200 and placed.json()["location"] == "cold"
    cleared = await box.client.patch("/api/v1/devices/cold-3", json={"location": None}, headers=box.auth(ADMIN))
    assert cleared.json()["location"] is None
    bad = await box.client.patch("/api/v1/devices/cold-3", json={"room": "cold"}, headers=box.auth(ADMIN))
    assert bad.status_code == 422


async def test_the_admin_and_the_store_manager_manage_devices(box: Box) -> None:
    for role in (Role.CLERK, Role.AUDITOR, Role.PURCHASER, Role.ACCOUNTANT):
        response = await box.client.post("/api/v1/devices", json={"id": "x-1", "kind": "pos"}, headers=box.auth(role))
        assert response.status_code == 403
    by_manager = await box.client.post(
        "/api/v1/devices", json={"id": "x-1", "kind": "pos"}, headers=box.auth(Role.MANAGER)
    )
    assert by_manager.status_code == 201, by_manager.text
    clerk = await box.client.get("/api/v1/devices", headers=box.auth(Role.CLERK))
    assert clerk.status_code == 403


async def test_status_and_alerts_show_on_the_device_and_in_the_alert_list(box: Box) -> None:
    await register(box, {"id": "pos-9", "kind": "pos"})
    await box.writer.execute(fleet.record_statuses, [StatusRecord("pos-9", DeviceState.OFFLINE, T0)])
    policy = FleetPolicy(offline_after=timedelta(minutes=5), silent_after={})
    await box.writer.execute(fleet.raise_due_alerts, T0 + timedelta(minutes=10), policy)

    device = (await box.client.get("/api/v1/devices/pos-9", headers=box.auth(Role.MANAGER))).json()
    assert device["status"]["state"] == "offline" and device["alert"]["state"] == "offline"
    assert device["transitions"] == [{"ts": T0.isoformat(), "state": "offline"}]
    alerts = await box.client.get("/api/v1/device-alerts?device=pos-9", headers=box.auth(Role.MANAGER))
    (only,) = alerts.json()
    assert (only["state"], only["seconds"], only["published_at"]) == ("offline", 600, None)
    assert (await box.client.get("/api/v1/device-alerts?device=BAD", headers=box.auth(ADMIN))).status_code == 422


async def test_the_registration_answer_in_the_guide_has_the_fields_the_box_sends(box: Box) -> None:
    from tests.edge.devices.test_fleet import doc_blocks

    (text,) = doc_blocks("json response:register")
    example = json.loads(text)
    created = await register(box, {"id": "pda-3", "kind": "handheld"})
    assert set(example) == set(created)
    for part in ("device", "credentials"):
        assert set(example[part]) == set(created[part])  # type: ignore[arg-type]
    assert example["device"] == {**created["device"], "created_at": example["device"]["created_at"]}  # type: ignore[dict-item]
