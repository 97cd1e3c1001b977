"""The device fleet (设备管理): the registry as the store sees it, each device's reported status, and the alerts
when a device is offline or silent longer than allowed, and when it is back.

A device reports its status on its own retained topic `storebox/<store>/dev/<id>/status` (`online`, or a last
will `offline`; or JSON `{"state": ...}`). The box records each report and every online/offline transition;
`due_alerts` decides, from those records and the time, which alerts to raise. Functions take a connection and
`now`; writes run in the one writer.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from edge.bus.broker_credentials import set_broker_credential
from edge.ledger.audit import append_audit
from edge.ledger.errors import DomainError, UnknownLocation
from edge.security.devices import (
    create_device,
    rotate_device_password,
    set_device_enabled,
    set_device_placement,
)
from edge.security.errors import UnknownDevice

MAX_STATUS_BYTES = 2048
MAX_STATUS_DETAIL_KEYS = 20
MAX_STATUS_TEXT = 200
PASSWORD_BYTES = 18  # secrets.token_urlsafe: 24 characters
PROFILE_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
TRANSITIONS_SHOWN = 50

DEVICE_KIND_NAMES: dict[str, str] = {
    "pos": "收银机",
    "handheld": "手持终端",
    "scale": "电子秤",
    "scanner": "扫码枪",
    "sensor": "温度传感器",
    "forklift": "叉车终端",
    "printer": "标签打印机",
    "gateway": "串口网关",
    "supplier": "供应商接口",
    "other": "设备",
}


class DeviceState(StrEnum):
    """What a device says of itself on its status topic."""

    ONLINE = "online"
    OFFLINE = "offline"


class AlertState(StrEnum):
    """The alerts on `alert/device-offline`."""

    OFFLINE = "offline"  # reported offline (or its last will fired) longer than allowed
    SILENT = "silent"  # nothing heard from it longer than its kind allows
    BACK = "back"  # an offline or silent device is heard from again


class FleetError(DomainError):
    code = "fleet_error"


class InvalidProfileId(FleetError):
    code = "invalid_profile_id"
    status = 422

    def __init__(self, profile: str) -> None:
        super().__init__(
            f"固件档案编号无效: {profile[:64]!r} (小写字母、数字和 . _ -，最长 64)",
            f"invalid firmware profile id {profile[:64]!r}: lowercase letters, digits, . _ -, up to 64",
            profile=profile[:64],
        )


# --- status messages ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatusReport:
    """One status message: the state, and what else a JSON status carried (firmware, ip, battery ...)."""

    state: DeviceState
    detail: Mapping[str, Any] | None = None


def parse_status(payload: bytes) -> StatusReport | None:
    """The report in a status payload: `online` / `offline` (any case, spaces ignored), a JSON string of one,
    or a JSON object with `"state"` and other scalar fields. None for an empty payload (a retained status
    cleared). Raises ValueError for anything else."""
    if len(payload) > MAX_STATUS_BYTES:
        raise ValueError(f"status larger than {MAX_STATUS_BYTES} bytes")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise ValueError("status is not UTF-8 text") from exc
    if not text:
        return None
    if text[0] in '{"':
        try:
            value = json.loads(text, parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            raise ValueError("status is not valid JSON") from exc
    else:
        value = text
    if isinstance(value, str):
        return StatusReport(_state(value))
    if not isinstance(value, dict) or "state" not in value or not isinstance(value["state"], str):
        raise ValueError('a JSON status is an object with "state": "online" or "offline"')
    detail = {k: v for k, v in value.items() if k != "state"}
    if len(detail) > MAX_STATUS_DETAIL_KEYS:
        raise ValueError(f"a JSON status has at most {MAX_STATUS_DETAIL_KEYS} other fields")
    for key, item in detail.items():
        if len(key) > 64 or not (item is None or isinstance(item, (bool, int, float, str))):
            raise ValueError(f"status field {key[:64]!r} must be a short name with a plain value")
        if isinstance(item, str) and len(item) > MAX_STATUS_TEXT:
            raise ValueError(f"status field {key[:64]!r} is longer than {MAX_STATUS_TEXT} characters")
    return StatusReport(_state(value["state"]), detail or None)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number in JSON")


def _state(text: str) -> DeviceState:
    try:
        return DeviceState(text.strip().lower())
    except ValueError:
        raise ValueError(f'status state must be "online" or "offline", not {text[:32]!r}') from None


# --- recording ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatusRecord:
    """A status message as the box took it: the device, the report, when (box clock)."""

    device: str
    state: DeviceState
    at: datetime
    detail: Mapping[str, Any] | None = None


def record_statuses(conn: sqlite3.Connection, records: Sequence[StatusRecord]) -> list[tuple[str, DeviceState]]:
    """Store status messages in order (runs in the writer): each device's current state and the time it entered
    it, every transition, and the device as seen. Returns the transitions (device, new state). A status from a
    device no longer registered is ignored."""
    changed: list[tuple[str, DeviceState]] = []
    for record in records:
        if conn.execute("SELECT 1 FROM devices WHERE id = ?", (record.device,)).fetchone() is None:
            continue
        at = _iso(record.at)
        detail = json.dumps(dict(record.detail), ensure_ascii=False, sort_keys=True) if record.detail else None
        row = conn.execute("SELECT state FROM device_status WHERE device = ?", (record.device,)).fetchone()
        if row is None or row["state"] != record.state:
            conn.execute(
                "INSERT INTO device_status (device, state, since, updated_at, detail) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (device) DO UPDATE SET state = excluded.state, since = excluded.since,"
                " updated_at = excluded.updated_at, detail = COALESCE(excluded.detail, device_status.detail)",
                (record.device, record.state.value, at, at, detail),
            )
            conn.execute(
                "INSERT INTO device_status_changes (device, ts, state) VALUES (?, ?, ?)",
                (record.device, at, record.state.value),
            )
            changed.append((record.device, record.state))
        else:
            conn.execute(
                "UPDATE device_status SET updated_at = ?, detail = COALESCE(?, detail) WHERE device = ?",
                (at, detail, record.device),
            )
        if record.state is DeviceState.ONLINE:  # an offline report may be the broker's will, not the device
            conn.execute(
                "UPDATE devices SET last_seen = ? WHERE id = ? AND (last_seen IS NULL OR last_seen < ?)",
                (at, record.device, at),
            )
    return changed


# --- offline and silent alerts ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FleetPolicy:
    """When a device is alerted: offline longer than `offline_after`; silent (nothing heard) longer than
    `silent_after[kind]` for the kinds listed (a sensor reports every minute; a POS is quiet at night)."""

    offline_after: timedelta
    silent_after: Mapping[str, timedelta]


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    """One enabled device as the alert check sees it."""

    device: str
    kind: str
    state: DeviceState | None  # None: never reported a status
    state_since: datetime | None
    last_heard: datetime | None  # the last event or status message
    open_alert: AlertState | None  # OFFLINE or SILENT while an alert is open
    open_since: datetime | None


@dataclass(frozen=True, slots=True)
class DueAlert:
    device: str
    kind: str
    state: AlertState
    since: datetime
    message: str
    message_en: str


def is_offline(health: DeviceHealth) -> bool:
    """Reported offline, and not heard from since (a device that sends events after its will fired is back)."""
    if health.state is not DeviceState.OFFLINE or health.state_since is None:
        return False
    return health.last_heard is None or health.last_heard <= health.state_since


def due_alert(health: DeviceHealth, now: datetime, policy: FleetPolicy) -> DueAlert | None:
    """The alert to raise for one device now, if any: offline or silent too long, or back after one."""
    silent_after = policy.silent_after.get(health.kind)
    offline = is_offline(health)
    silent = (
        not offline
        and silent_after is not None
        and health.last_heard is not None
        and now - health.last_heard >= silent_after
    )
    if health.open_alert is not None:
        if offline or silent:
            return None
        since = health.open_since or now
        return _alert(health, AlertState.BACK, since, now)
    if offline and health.state_since is not None and now - health.state_since >= policy.offline_after:
        return _alert(health, AlertState.OFFLINE, health.state_since, now)
    if silent and health.last_heard is not None:
        return _alert(health, AlertState.SILENT, health.last_heard, now)
    return None


def due_alerts(devices: Sequence[DeviceHealth], now: datetime, policy: FleetPolicy) -> list[DueAlert]:
    return [alert for health in devices if (alert := due_alert(health, now, policy)) is not None]


def _duration(seconds: float) -> tuple[str, str]:
    minutes = int(seconds // 60)
    if minutes < 1:
        return f"{int(seconds)} 秒", f"{int(seconds)} s"
    if minutes < 120:
        return f"{minutes} 分钟", f"{minutes} min"
    return f"{minutes // 60} 小时 {minutes % 60} 分钟", f"{minutes // 60} h {minutes % 60} min"


def _alert(health: DeviceHealth, state: AlertState, since: datetime, now: datetime) -> DueAlert:
    zh, en = _duration(max((now - since).total_seconds(), 0.0))
    name = DEVICE_KIND_NAMES.get(health.kind, "设备")
    at = since.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if state is AlertState.OFFLINE:
        message = f"{name} {health.device} 已离线 {zh} (自 {at})"
        message_en = f"{health.kind} {health.device} offline for {en} (since {at})"
    elif state is AlertState.SILENT:
        message = f"{name} {health.device} 已 {zh} 无消息 (最后一次 {at})"
        message_en = f"{health.kind} {health.device} silent for {en} (last heard {at})"
    else:
        message = f"{name} {health.device} 已恢复 (中断 {zh})"
        message_en = f"{health.kind} {health.device} is back (gone for {en})"
    return DueAlert(health.device, health.kind, state, since, message, message_en)


def fleet_health(conn: sqlite3.Connection) -> list[DeviceHealth]:
    """Every enabled device with its reported state, the last time it was heard from and its open alert."""
    rows = conn.execute(
        "SELECT d.id, d.kind, d.last_seen, s.state, s.since, s.updated_at, a.state AS alert, a.since AS alert_since"
        " FROM devices d LEFT JOIN device_status s ON s.device = d.id"
        " LEFT JOIN device_alerts a ON a.id = (SELECT MAX(id) FROM device_alerts WHERE device = d.id)"
        " WHERE d.enabled = 1 ORDER BY d.id"
    ).fetchall()
    result = []
    for row in rows:
        heard = [t for t in (parse_time(row["last_seen"]), parse_time(row["updated_at"])) if t is not None]
        alert = AlertState(row["alert"]) if row["alert"] is not None else None
        result.append(
            DeviceHealth(
                device=row["id"],
                kind=row["kind"],
                state=DeviceState(row["state"]) if row["state"] else None,
                state_since=parse_time(row["since"]),
                last_heard=max(heard) if heard else None,
                open_alert=alert if alert is not AlertState.BACK else None,
                open_since=parse_time(row["alert_since"]) if alert is not AlertState.BACK else None,
            )
        )
    return result


@dataclass(frozen=True, slots=True)
class DeviceAlert:
    """An alert as recorded (and published on `alert/device-offline`)."""

    id: int
    device: str
    kind: str
    state: AlertState
    since: datetime
    raised_at: datetime
    message: str
    message_en: str
    published_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "device": self.device,
            "device_kind": self.kind,
            "state": self.state.value,
            "since": self.since.isoformat(),
            "raised_at": self.raised_at.isoformat(),
            "seconds": max(int((self.raised_at - self.since).total_seconds()), 0),
            "message": self.message,
            "message_en": self.message_en,
            "published_at": self.published_at.isoformat() if self.published_at else None,
        }


def raise_due_alerts(conn: sqlite3.Connection, now: datetime, policy: FleetPolicy) -> list[DeviceAlert]:
    """Record the alerts due now (runs in the writer); return them."""
    raised = []
    for due in due_alerts(fleet_health(conn), now, policy):
        cursor = conn.execute(
            "INSERT INTO device_alerts (device, state, since, raised_at, message, message_en)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (due.device, due.state.value, _iso(due.since), _iso(now), due.message, due.message_en),
        )
        assert cursor.lastrowid is not None
        raised.append(
            DeviceAlert(cursor.lastrowid, due.device, due.kind, due.state, due.since, now, due.message, due.message_en)
        )
    return raised


_ALERT_COLUMNS = (
    "a.id, a.device, d.kind, a.state, a.since, a.raised_at, a.message, a.message_en, a.published_at"
    " FROM device_alerts a LEFT JOIN devices d ON d.id = a.device"
)


def _alert_row(row: sqlite3.Row) -> DeviceAlert:
    return DeviceAlert(
        id=row["id"],
        device=row["device"],
        kind=row["kind"] or "other",
        state=AlertState(row["state"]),
        since=_required(row["since"]),
        raised_at=_required(row["raised_at"]),
        message=row["message"],
        message_en=row["message_en"],
        published_at=parse_time(row["published_at"]),
    )


def unpublished_alerts(conn: sqlite3.Connection) -> list[DeviceAlert]:
    rows = conn.execute(f"SELECT {_ALERT_COLUMNS} WHERE a.published_at IS NULL ORDER BY a.id").fetchall()
    return [_alert_row(row) for row in rows]


def mark_alerts_published(conn: sqlite3.Connection, ids: Sequence[int], now: datetime) -> None:
    conn.executemany("UPDATE device_alerts SET published_at = ? WHERE id = ?", [(_iso(now), i) for i in ids])


def list_alerts(
    conn: sqlite3.Connection, *, device: str | None = None, limit: int = 100, offset: int = 0
) -> list[DeviceAlert]:
    """Alerts newest first."""
    where, params = ("WHERE a.device = ?", [device]) if device else ("", [])
    rows = conn.execute(
        f"SELECT {_ALERT_COLUMNS} {where} ORDER BY a.id DESC LIMIT ? OFFSET ?", (*params, limit, offset)
    ).fetchall()
    return [_alert_row(row) for row in rows]


# --- the registry as the store sees it ----------------------------------------------------------------


def device_records(conn: sqlite3.Connection, device_id: str | None = None) -> list[dict[str, Any]]:
    """Devices (without password hashes) with their status, last seen and open alert; one device when asked."""
    where, params = ("WHERE d.id = ?", (device_id,)) if device_id is not None else ("", ())
    rows = conn.execute(
        "SELECT d.id, d.kind, d.enabled, d.profile, d.location, d.created_at, d.last_seen, d.credentials_rotated_at,"
        " s.state, s.since, s.updated_at, s.detail, a.id AS alert_id, a.state AS alert_state, a.since AS alert_since"
        " FROM devices d LEFT JOIN device_status s ON s.device = d.id"
        " LEFT JOIN device_alerts a ON a.id = (SELECT MAX(id) FROM device_alerts WHERE device = d.id)"
        f" {where} ORDER BY d.id",
        params,
    ).fetchall()
    result = []
    for row in rows:
        open_alert = row["alert_state"] is not None and row["alert_state"] != AlertState.BACK
        result.append(
            {
                "id": row["id"],
                "kind": row["kind"],
                "enabled": bool(row["enabled"]),
                "profile": row["profile"],
                "location": row["location"],
                "created_at": row["created_at"],
                "last_seen": row["last_seen"],
                "credentials_rotated_at": row["credentials_rotated_at"],
                "status": (
                    {
                        "state": row["state"],
                        "since": row["since"],
                        "updated_at": row["updated_at"],
                        "detail": json.loads(row["detail"]) if row["detail"] else None,
                    }
                    if row["state"]
                    else None
                ),
                "alert": (
                    {"id": row["alert_id"], "state": row["alert_state"], "since": row["alert_since"]}
                    if open_alert
                    else None
                ),
            }
        )
    return result


def get_device_record(conn: sqlite3.Connection, device_id: str) -> dict[str, Any]:
    """One device with its latest online/offline transitions (newest first); UnknownDevice if none."""
    records = device_records(conn, device_id)
    if not records:
        raise UnknownDevice(device_id)
    rows = conn.execute(
        "SELECT ts, state FROM device_status_changes WHERE device = ? ORDER BY id DESC LIMIT ?",
        (device_id, TRANSITIONS_SHOWN),
    ).fetchall()
    return {**records[0], "transitions": [{"ts": row["ts"], "state": row["state"]} for row in rows]}


def new_device_password() -> str:
    """A fresh random device password (shown once; the box keeps only hashes)."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


def _check_profile(profile: str | None) -> None:
    if profile is not None and re.fullmatch(PROFILE_PATTERN, profile) is None:
        raise InvalidProfileId(profile)


def _check_location(conn: sqlite3.Connection, location: str | None) -> None:
    if location is not None and conn.execute("SELECT 1 FROM locations WHERE code = ?", (location,)).fetchone() is None:
        raise UnknownLocation(location)


def _audit(conn: sqlite3.Connection, actor: str, action: str, device_id: str, now: datetime, **detail: Any) -> None:
    append_audit(
        conn, ts=_iso(now), actor=actor, device=None, action=action, object=f"device:{device_id}", detail=detail
    )


def register_device(
    conn: sqlite3.Connection,
    device_id: str,
    kind: str,
    password: str,
    actor: str,
    now: datetime,
    profile: str | None = None,
    location: str | None = None,
) -> dict[str, Any]:
    """Register a device with its password (runs in the writer); audited. Returns its record."""
    _check_profile(profile)
    _check_location(conn, location)
    create_device(conn, device_id, kind, password, now=now)
    set_device_placement(conn, device_id, profile=profile, location=location)
    set_broker_credential(conn, device_id, password, now=now)
    _audit(conn, actor, "device.register", device_id, now, kind=kind, profile=profile, location=location)
    return device_records(conn, device_id)[0]


def rotate_credentials(
    conn: sqlite3.Connection, device_id: str, password: str, actor: str, now: datetime
) -> dict[str, Any]:
    """A new password for the device; the old one stops working at the next connect (runs in the writer)."""
    rotate_device_password(conn, device_id, password, now)
    set_broker_credential(conn, device_id, password, now=now)
    _audit(conn, actor, "device.rotate", device_id, now)
    return device_records(conn, device_id)[0]


def set_enabled(conn: sqlite3.Connection, device_id: str, enabled: bool, actor: str, now: datetime) -> dict[str, Any]:
    """Enable or disable a device (a disabled one cannot connect); audited when it changes."""
    rows = device_records(conn, device_id)
    if not rows:
        raise UnknownDevice(device_id)
    if rows[0]["enabled"] != enabled:
        set_device_enabled(conn, device_id, enabled)
        _audit(conn, actor, "device.enable" if enabled else "device.disable", device_id, now)
    return device_records(conn, device_id)[0]


def update_placement(
    conn: sqlite3.Connection, device_id: str, changes: Mapping[str, str | None], actor: str, now: datetime
) -> dict[str, Any]:
    """Change the device's `profile` and/or `location` (only the keys given); audited."""
    rows = device_records(conn, device_id)
    if not rows:
        raise UnknownDevice(device_id)
    profile = changes.get("profile", rows[0]["profile"])
    location = changes.get("location", rows[0]["location"])
    _check_profile(profile)
    _check_location(conn, location)
    set_device_placement(conn, device_id, profile=profile, location=location)
    _audit(conn, actor, "device.update", device_id, now, **dict(changes))
    return device_records(conn, device_id)[0]


# --- time ---------------------------------------------------------------------------------------------


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds")


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _required(value: str) -> datetime:
    parsed = parse_time(value)
    assert parsed is not None
    return parsed
