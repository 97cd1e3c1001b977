from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest

from edge.security.devices import (
    create_device,
    list_devices,
    set_device_enabled,
    set_device_password,
    touch_device,
    verify_device,
)
from edge.security.errors import DeviceExists, InvalidDeviceId, UnknownDevice, UnknownDeviceKind


def test_device_authenticates_with_its_id_and_password(conn: sqlite3.Connection) -> None:
    create_device(conn, "pos-01", "pos", "pos-01-secret")
    assert verify_device(conn, "pos-01", "pos-01-secret") == "pos-01"


def test_wrong_password_or_unknown_device_is_refused(conn: sqlite3.Connection) -> None:
    create_device(conn, "pos-01", "pos", "pos-01-secret")
    assert verify_device(conn, "pos-01", "pos-02-secret") is None
    assert verify_device(conn, "pos-02", "pos-01-secret") is None
    assert verify_device(conn, "", "") is None
    assert verify_device(conn, "POS-01", "pos-01-secret") is None


def test_disabled_device_is_refused_until_enabled_again(conn: sqlite3.Connection) -> None:
    create_device(conn, "hh-1", "handheld", "handheld-secret")
    set_device_enabled(conn, "hh-1", False)
    assert verify_device(conn, "hh-1", "handheld-secret") is None
    assert list_devices(conn)[0]["enabled"] is False
    set_device_enabled(conn, "hh-1", True)
    assert verify_device(conn, "hh-1", "handheld-secret") == "hh-1"


def test_new_password_replaces_the_old_one(conn: sqlite3.Connection) -> None:
    create_device(conn, "scale-1", "scale", "first-secret")
    set_device_password(conn, "scale-1", "second-secret")
    assert verify_device(conn, "scale-1", "first-secret") is None
    assert verify_device(conn, "scale-1", "second-secret") == "scale-1"


def test_list_devices_shows_no_password_hash(conn: sqlite3.Connection) -> None:
    create_device(conn, "sensor-cold-1", "sensor", "sensor-secret", now=datetime(2024, 1, 2, tzinfo=UTC))
    touch_device(conn, "sensor-cold-1", datetime(2024, 1, 3, 4, 5, 6, tzinfo=UTC))
    assert list_devices(conn) == [
        {
            "id": "sensor-cold-1",
            "kind": "sensor",
            "enabled": True,
            "created_at": "2024-01-02T00:00:00+00:00",
            "last_seen": "2024-01-03T04:05:06+00:00",
        }
    ]


@pytest.mark.parametrize("device_id", ["", "POS-1", "pos_1", "pos/1", "pos+", "pos#", "x" * 65, "设备"])
def test_device_id_must_fit_the_topic_tree(conn: sqlite3.Connection, device_id: str) -> None:
    with pytest.raises(InvalidDeviceId) as err:
        create_device(conn, device_id, "pos", "device-secret")
    assert err.value.status == 422
    assert list_devices(conn) == []


def test_database_refuses_a_bad_device_id_written_around_the_code(conn: sqlite3.Connection) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO devices (id, kind, password_hash, created_at) VALUES ('a/b', 'pos', 'x', 'now')")


def test_unknown_kind_and_duplicate_device_are_refused(conn: sqlite3.Connection) -> None:
    with pytest.raises(UnknownDeviceKind) as err:
        create_device(conn, "toaster-1", "toaster", "device-secret")
    assert "pos" in err.value.detail["allowed"]
    create_device(conn, "pos-01", "pos", "device-secret")
    with pytest.raises(DeviceExists):
        create_device(conn, "pos-01", "handheld", "device-secret")


def test_changing_an_unknown_device_is_refused(conn: sqlite3.Connection) -> None:
    with pytest.raises(UnknownDevice):
        set_device_enabled(conn, "ghost", True)
    with pytest.raises(UnknownDevice):
        set_device_password(conn, "ghost", "device-secret")
