"""Devices (设备) on the shop LAN, each with its own MQTT credentials.

The MQTT username of a device is its id, which is also its segment in the topic tree
(`storebox/<store>/dev/<id>/...`), so ids follow the topic rule `[a-z0-9-]+`.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from edge.security.errors import DeviceExists, InvalidDeviceId, UnknownDevice, UnknownDeviceKind
from edge.security.passwords import hash_password, verify_password

DEVICE_ID_PATTERN = re.compile(r"^[a-z0-9-]{1,64}$")
_SQL_NOW = "strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')"


class DeviceKind(StrEnum):
    POS = "pos"  # 收银机
    HANDHELD = "handheld"  # 手持终端 (PDA)
    SCALE = "scale"  # 电子秤
    SCANNER = "scanner"  # 扫码枪
    SENSOR = "sensor"  # 温湿度传感器
    FORKLIFT = "forklift"  # 叉车终端
    PRINTER = "printer"  # 标签打印机
    GATEWAY = "gateway"  # 串口网关
    SUPPLIER = "supplier"  # 供应商接口
    OTHER = "other"


def _check(device_id: str, kind: str) -> DeviceKind:
    if not DEVICE_ID_PATTERN.match(device_id):
        raise InvalidDeviceId(device_id)
    try:
        return DeviceKind(kind)
    except ValueError as exc:
        raise UnknownDeviceKind(kind, [k.value for k in DeviceKind]) from exc


def create_device(
    conn: sqlite3.Connection, device_id: str, kind: str, password: str, *, now: datetime | None = None
) -> None:
    """Register a device with its MQTT password; `now` defaults to the database's clock."""
    parsed = _check(device_id, kind)
    password_hash = hash_password(password)
    created = now.isoformat(timespec="seconds") if now else None
    try:
        conn.execute(
            "INSERT INTO devices (id, kind, password_hash, enabled, created_at)"
            f" VALUES (?, ?, ?, 1, COALESCE(?, {_SQL_NOW}))",
            (device_id, parsed.value, password_hash, created),
        )
    except sqlite3.IntegrityError as exc:
        raise DeviceExists(device_id) from exc


# Stock and alerts are the store's own business: its devices read them, a supplier's device (an outside
# company's terminal or gateway, docs/supplier-api/README.md) does not, nor a device of a kind the box does not know.
STORE_TOPIC_READERS = frozenset(DeviceKind) - {DeviceKind.SUPPLIER}


def reads_store_topics(kind: str) -> bool:
    """True when a device of `kind` may read the store's shared topics (stock, alerts), not only its own tree."""
    return kind in STORE_TOPIC_READERS


@dataclass(frozen=True, slots=True)
class DeviceLogin:
    """A device that has just proved its password: who it is and what kind of device, for the topic ACL."""

    id: str
    kind: str


def authenticate_device(conn: sqlite3.Connection, username: str, password: str) -> DeviceLogin | None:
    """The device and its kind when `username` is an enabled device whose password is `password`, else None.

    Read-only, so the broker's auth plugin can call it on a reader connection.
    """
    row = None
    if DEVICE_ID_PATTERN.match(username):
        row = conn.execute("SELECT id, kind, password_hash, enabled FROM devices WHERE id = ?", (username,)).fetchone()
    matches = verify_password(row["password_hash"] if row is not None else None, password)
    if row is None or not matches or not row["enabled"]:
        return None
    return DeviceLogin(str(row["id"]), str(row["kind"]))


def verify_device(conn: sqlite3.Connection, username: str, password: str) -> str | None:
    """The device id when `username` is an enabled device whose password is `password`, else None."""
    login = authenticate_device(conn, username, password)
    return None if login is None else login.id


def list_devices(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every device without its password hash: id, kind, enabled, created_at, last_seen."""
    rows = conn.execute("SELECT id, kind, enabled, created_at, last_seen FROM devices ORDER BY id").fetchall()
    return [
        {
            "id": row["id"],
            "kind": row["kind"],
            "enabled": bool(row["enabled"]),
            "created_at": row["created_at"],
            "last_seen": row["last_seen"],
        }
        for row in rows
    ]


def set_device_enabled(conn: sqlite3.Connection, device_id: str, enabled: bool) -> None:
    if conn.execute("UPDATE devices SET enabled = ? WHERE id = ?", (int(enabled), device_id)).rowcount == 0:
        raise UnknownDevice(device_id)


def set_device_password(conn: sqlite3.Connection, device_id: str, password: str) -> None:
    password_hash = hash_password(password)
    if conn.execute("UPDATE devices SET password_hash = ? WHERE id = ?", (password_hash, device_id)).rowcount == 0:
        raise UnknownDevice(device_id)


def touch_device(conn: sqlite3.Connection, device_id: str, now: datetime) -> None:
    """Record that the device was seen at `now` (a write: call it through the writer)."""
    conn.execute("UPDATE devices SET last_seen = ? WHERE id = ?", (now.isoformat(timespec="seconds"), device_id))


def credential_stamp(conn: sqlite3.Connection, device_id: str) -> str | None:
    """What a device's credentials are now: its password hash while it is enabled, else None.

    The hash is salted, so it changes with every new password (even the same one again). The broker keeps a
    successful check only while the stamp is unchanged, so a rotation or a disable takes effect at once,
    from the API or from the command line of another process.
    """
    if not DEVICE_ID_PATTERN.match(device_id):
        return None
    row = conn.execute("SELECT password_hash FROM devices WHERE id = ? AND enabled = 1", (device_id,)).fetchone()
    return None if row is None else str(row["password_hash"])


def rotate_device_password(conn: sqlite3.Connection, device_id: str, password: str, now: datetime) -> None:
    """Give the device a new password (the old one stops working) and record when."""
    set_device_password(conn, device_id, password)
    conn.execute(
        "UPDATE devices SET credentials_rotated_at = ? WHERE id = ?", (now.isoformat(timespec="seconds"), device_id)
    )


def set_device_placement(
    conn: sqlite3.Connection, device_id: str, *, profile: str | None, location: str | None
) -> None:
    """Set the firmware profile the device follows and the room (ledger location) it is in; None clears."""
    if (
        conn.execute(
            "UPDATE devices SET profile = ?, location = ? WHERE id = ?", (profile, location, device_id)
        ).rowcount
        == 0
    ):
        raise UnknownDevice(device_id)
