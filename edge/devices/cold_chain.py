"""Cold chain (冷链): temperature bands per storage class, excursions out of them, downsampled history per room.

A room is a ledger location; its storage class (`chilled` 冷藏, `frozen` 冷冻) selects its band (setting
`cold_chain_bands`, by default chilled 0–4 ℃ and frozen at or below −18 ℃). Each sensor's readings in a room
drive one excursion (温度异常) at a time: it starts at the first reading out of band, with the stock in the room
at that moment (lots and expiry) recorded; it becomes an alarm once out of band for `alarm_after` (by the
readings' own times, or by the box clock when no reading comes back in band), and ends at the first reading
back in band. One that comes back in band before the alarm is not kept (a door opened for a delivery).

The readings the bus stores are taken here in order of arrival (a cursor over `sensor_readings.id`): each goes
into per-minute and per-15-minute rollups (min/max/avg) and through the excursion steps. Raw readings are kept
for some days, per-minute rollups longer, 15-minute rollups for good.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from edge.ledger.errors import DomainError, UnknownLocation

MIN_BAND_CELSIUS, MAX_BAND_CELSIUS = -60.0, 60.0
ROLLUP_PERIODS = (60, 900)  # seconds: per minute, per 15 minutes
BATCH_READINGS = 5000  # readings taken per run; a backlog is worked off over successive runs
MAX_HISTORY_POINTS = 20_000
MAX_HISTORY_SPAN = timedelta(days=400)
LOTS_SHOWN = 500


class StorageClass(StrEnum):
    AMBIENT = "ambient"  # 常温
    CHILLED = "chilled"  # 冷藏
    FROZEN = "frozen"  # 冷冻


STORAGE_CLASS_NAMES = {"ambient": "常温", "chilled": "冷藏", "frozen": "冷冻"}


class Direction(StrEnum):
    ABOVE = "above"  # too warm
    BELOW = "below"  # too cold


class Resolution(StrEnum):
    AUTO = "auto"
    RAW = "raw"
    MINUTE = "minute"
    QUARTER = "15min"


class ColdChainError(DomainError):
    code = "cold_chain_error"


class UnknownExcursion(ColdChainError):
    code = "unknown_excursion"
    status = 404

    def __init__(self, excursion_id: int) -> None:
        super().__init__(
            f"温度异常记录不存在: {excursion_id}", f"no such excursion: {excursion_id}", excursion=excursion_id
        )


class InvalidHistoryRange(ColdChainError):
    code = "invalid_history_range"
    status = 422

    def __init__(self, message: str, message_en: str, **detail: Any) -> None:
        super().__init__(message, message_en, **detail)


# --- bands ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Band:
    """Allowed temperatures in milli-degrees Celsius, both ends included; None is open-ended."""

    min_mc: int | None
    max_mc: int | None

    def direction(self, mc: int) -> Direction | None:
        """None when `mc` is in the band, else on which side it is out."""
        if self.max_mc is not None and mc > self.max_mc:
            return Direction.ABOVE
        if self.min_mc is not None and mc < self.min_mc:
            return Direction.BELOW
        return None

    def distance(self, mc: int) -> int:
        """How far `mc` is outside the band (0 inside)."""
        if self.max_mc is not None and mc > self.max_mc:
            return mc - self.max_mc
        if self.min_mc is not None and mc < self.min_mc:
            return self.min_mc - mc
        return 0

    def to_json(self) -> dict[str, float | None]:
        return {"min_celsius": _celsius(self.min_mc), "max_celsius": _celsius(self.max_mc)}

    def describe(self) -> str:
        low, high = _celsius(self.min_mc), _celsius(self.max_mc)
        if low is None:
            return f"≤ {high:g} ℃"
        if high is None:
            return f"≥ {low:g} ℃"
        return f"{low:g}–{high:g} ℃"


DEFAULT_BANDS: dict[str, dict[str, float]] = {"chilled": {"min": 0.0, "max": 4.0}, "frozen": {"max": -18.0}}


def parse_bands(value: Mapping[str, Any]) -> dict[str, Band]:
    """Bands from the setting `{"chilled": {"min": 0, "max": 4}, "frozen": {"max": -18}}` (degrees Celsius).
    Raises ValueError naming what is wrong."""
    if not isinstance(value, Mapping):
        raise ValueError('a table of storage classes, e.g. {"chilled": {"min": 0, "max": 4}, "frozen": {"max": -18}}')
    bands: dict[str, Band] = {}
    for name, limits in value.items():
        if name not in StorageClass.__members__.values():
            raise ValueError(f"unknown storage class {name!r}: ambient, chilled or frozen")
        if not isinstance(limits, Mapping) or not limits or set(limits) - {"min", "max"}:
            raise ValueError(f"{name}: give min and/or max in degrees Celsius, e.g. {{min = 0, max = 4}}")
        ends: dict[str, int | None] = {"min": None, "max": None}
        for end, number in limits.items():
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
                raise ValueError(f"{name}.{end} must be a number of degrees Celsius")
            if not MIN_BAND_CELSIUS <= number <= MAX_BAND_CELSIUS:
                raise ValueError(f"{name}.{end} must be between {MIN_BAND_CELSIUS:g} and {MAX_BAND_CELSIUS:g} ℃")
            ends[end] = round(number * 1000)
        low, high = ends["min"], ends["max"]
        if low is not None and high is not None and low >= high:
            raise ValueError(f"{name}: min must be below max")
        bands[name] = Band(low, high)
    return bands


@dataclass(frozen=True, slots=True)
class ColdChainPolicy:
    """The store's bands by storage class and how long out of band raises the alarm."""

    bands: Mapping[str, Band]
    alarm_after: timedelta


# --- excursions, pure -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reading:
    """One stored reading as the cold chain takes it."""

    id: int
    device: str
    location: str | None
    at: datetime  # UTC
    mc: int


@dataclass(frozen=True, slots=True)
class Excursion:
    """One sensor's time out of its room's band."""

    location: str
    device: str
    storage_class: str
    band: Band
    direction: Direction
    started_at: datetime
    peak_mc: int
    last_mc: int
    last_at: datetime
    readings: int
    alarmed_at: datetime | None = None
    ended_at: datetime | None = None
    id: int | None = None


class Step(StrEnum):
    STARTED = "started"  # first reading out of band
    ALARM = "alarm"  # out of band for alarm_after
    ENDED = "ended"  # back in band after an alarm
    DROPPED = "dropped"  # back in band before the alarm: not kept


def step(
    current: Excursion | None, reading: Reading, storage_class: str, band: Band, alarm_after: timedelta
) -> tuple[Excursion | None, list[Step]]:
    """The excursion after one reading of its sensor in its room, and what happened. Readings older than the
    last one taken do not move an excursion (a device resending an old buffer)."""
    direction = band.direction(reading.mc)
    if current is not None and current.ended_at is not None:
        current = None
    if current is None:
        if direction is None:
            return None, []
        started = Excursion(
            location=reading.location or "",
            device=reading.device,
            storage_class=storage_class,
            band=band,
            direction=direction,
            started_at=reading.at,
            peak_mc=reading.mc,
            last_mc=reading.mc,
            last_at=reading.at,
            readings=1,
        )
        if alarm_after <= timedelta(0):
            return replace(started, alarmed_at=reading.at), [Step.STARTED, Step.ALARM]
        return started, [Step.STARTED]
    if reading.at < current.last_at:
        return current, []
    if direction is None:
        if current.alarmed_at is None:
            return None, [Step.DROPPED]
        return replace(current, ended_at=reading.at, last_mc=reading.mc, last_at=reading.at), [Step.ENDED]
    peak = reading.mc if current.band.distance(reading.mc) > current.band.distance(current.peak_mc) else current.peak_mc
    moved = replace(current, peak_mc=peak, last_mc=reading.mc, last_at=reading.at, readings=current.readings + 1)
    if current.alarmed_at is None and reading.at - current.started_at >= alarm_after:
        return replace(moved, alarmed_at=reading.at), [Step.ALARM]
    return moved, []


def overdue(current: Excursion, now: datetime, alarm_after: timedelta) -> bool:
    """A pending excursion whose sensor has not come back in band by `now` (box clock) is an alarm too."""
    return current.alarmed_at is None and current.ended_at is None and now - current.started_at >= alarm_after


# --- rollups --------------------------------------------------------------------------------------------


def utc_text(value: datetime) -> str:
    """The sortable UTC form kept in `ts_utc` and rollup buckets: 2024-05-01T01:30:00.123Z."""
    utc = value.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def parse_utc(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


def bucket_start(value: datetime, period: int) -> datetime:
    seconds = math.floor(value.timestamp() / period) * period
    return datetime.fromtimestamp(seconds, UTC)


def _add_to_rollups(conn: sqlite3.Connection, location: str, at: datetime, mc: int) -> None:
    conn.executemany(
        "INSERT INTO temperature_rollups (location, period, bucket, n, sum_mc, min_mc, max_mc)"
        " VALUES (?, ?, ?, 1, ?, ?, ?) ON CONFLICT (location, period, bucket) DO UPDATE SET"
        " n = n + 1, sum_mc = sum_mc + excluded.sum_mc,"
        " min_mc = min(min_mc, excluded.min_mc), max_mc = max(max_mc, excluded.max_mc)",
        [(location, period, utc_text(bucket_start(at, period)), mc, mc, mc) for period in ROLLUP_PERIODS],
    )


# --- the run over new readings (writer) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ColdAlert:
    """An alarm or its end, as published on `alert/cold-room`."""

    excursion: int
    state: str  # "alarm" or "ended"
    location: str
    location_name: str
    storage_class: str
    device: str
    band: Band
    direction: Direction
    started_at: datetime
    alarmed_at: datetime
    ended_at: datetime | None
    peak_mc: int
    last_mc: int
    lots: tuple[dict[str, Any], ...]

    @property
    def key(self) -> str:
        return f"cold-room-{self.excursion}-{self.state}"

    def to_json(self) -> dict[str, Any]:
        peak, last = _celsius(self.peak_mc), _celsius(self.last_mc)
        klass = STORAGE_CLASS_NAMES.get(self.storage_class, self.storage_class)
        side = ("过高", "too warm") if self.direction is Direction.ABOVE else ("过低", "too cold")
        started = self.started_at.strftime("%Y-%m-%d %H:%M UTC")
        if self.state == "alarm":
            message = (
                f"{self.location_name} ({klass}, {self.band.describe()}) 温度{side[0]}: 自 {started} 起超出范围,"
                f" 当前 {last:g} ℃, 峰值 {peak:g} ℃; 涉及 {len(self.lots)} 个批次"
            )
            message_en = (
                f"{self.location} ({self.storage_class}, {self.band.describe()}) {side[1]}: out of band since"
                f" {started}, now {last:g} ℃, peak {peak:g} ℃; lots in the room: {len(self.lots)}"
            )
        else:
            message = f"{self.location_name} 温度已恢复正常 (异常自 {started}, 峰值 {peak:g} ℃)"
            message_en = f"{self.location} back in band (out since {started}, peak {peak:g} ℃)"
        return {
            "excursion": self.excursion,
            "state": self.state,
            "room": self.location,
            "room_name": self.location_name,
            "storage_class": self.storage_class,
            "device": self.device,
            "band": self.band.to_json(),
            "direction": self.direction.value,
            "started_at": self.started_at.isoformat(),
            "alarmed_at": self.alarmed_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "peak_celsius": peak,
            "celsius": last,
            "lots": list(self.lots),
            "message": message,
            "message_en": message_en,
        }


def process_readings(
    conn: sqlite3.Connection, policy: ColdChainPolicy, now: datetime, batch: int = BATCH_READINGS
) -> int:
    """Take the readings stored since the last run into rollups and excursions, then raise the alarms that are
    overdue by the box clock (runs in the writer). Returns how many readings were taken."""
    cursor_row = conn.execute("SELECT last_reading_id FROM cold_chain_cursor WHERE id = 1").fetchone()
    after = int(cursor_row[0]) if cursor_row else 0
    rows = conn.execute(
        "SELECT id, device, location, ts_utc, milli_celsius FROM sensor_readings WHERE id > ? ORDER BY id LIMIT ?",
        (after, batch),
    ).fetchall()
    rooms = {row["code"]: row["storage_class"] for row in conn.execute("SELECT code, storage_class FROM locations")}
    open_excursions = {(e.location, e.device): e for e in _open_excursions(conn)}
    for row in rows:
        reading = Reading(row["id"], row["device"], row["location"], parse_utc(row["ts_utc"]), row["milli_celsius"])
        if reading.location is None:
            continue
        _add_to_rollups(conn, reading.location, reading.at, reading.mc)
        storage_class = rooms.get(reading.location)
        band = policy.bands.get(storage_class) if storage_class else None
        if storage_class is None or band is None:
            continue
        key = (reading.location, reading.device)
        before = open_excursions.get(key)
        after_step, steps = step(before, reading, storage_class, band, policy.alarm_after)
        if not steps and after_step is before:
            continue
        saved = _save_excursion(conn, after_step, steps, before)
        if saved is None or saved.ended_at is not None:
            open_excursions.pop(key, None)
        else:
            open_excursions[key] = saved
    for excursion in open_excursions.values():
        if overdue(excursion, now, policy.alarm_after):
            conn.execute("UPDATE cold_excursions SET alarmed_at = ? WHERE id = ?", (utc_text(now), excursion.id))
    if rows:
        conn.execute("UPDATE cold_chain_cursor SET last_reading_id = ? WHERE id = 1", (rows[-1]["id"],))
    return len(rows)


def _save_excursion(
    conn: sqlite3.Connection, excursion: Excursion | None, steps: Sequence[Step], before: Excursion | None
) -> Excursion | None:
    if Step.DROPPED in steps:
        assert before is not None and before.id is not None
        conn.execute("DELETE FROM cold_excursions WHERE id = ?", (before.id,))
        return None
    assert excursion is not None
    if excursion.id is None:
        cursor = conn.execute(
            "INSERT INTO cold_excursions (location, device, storage_class, min_mc, max_mc, direction, started_at,"
            " alarmed_at, ended_at, peak_mc, last_mc, last_at, readings)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                excursion.location,
                excursion.device,
                excursion.storage_class,
                excursion.band.min_mc,
                excursion.band.max_mc,
                excursion.direction.value,
                utc_text(excursion.started_at),
                utc_text(excursion.alarmed_at) if excursion.alarmed_at else None,
                None,
                excursion.peak_mc,
                excursion.last_mc,
                utc_text(excursion.last_at),
                excursion.readings,
            ),
        )
        assert cursor.lastrowid is not None
        excursion = replace(excursion, id=cursor.lastrowid)
        _record_lots(conn, cursor.lastrowid, excursion.location)
        return excursion
    conn.execute(
        "UPDATE cold_excursions SET alarmed_at = ?, ended_at = ?, peak_mc = ?, last_mc = ?, last_at = ?, readings = ?"
        " WHERE id = ?",
        (
            utc_text(excursion.alarmed_at) if excursion.alarmed_at else None,
            utc_text(excursion.ended_at) if excursion.ended_at else None,
            excursion.peak_mc,
            excursion.last_mc,
            utc_text(excursion.last_at),
            excursion.readings,
            excursion.id,
        ),
    )
    return excursion


def _record_lots(conn: sqlite3.Connection, excursion_id: int, location: str) -> None:
    """The stock in the room now, by item and lot with expiry: what the excursion may have touched."""
    conn.execute(
        "INSERT INTO cold_excursion_lots (excursion_id, sku, lot, expiry, qty)"
        " SELECT ?, b.sku, b.lot, l.expiry, b.qty FROM balances b"
        " LEFT JOIN lots l ON l.sku = b.sku AND l.lot = b.lot WHERE b.location = ? AND b.qty != 0",
        (excursion_id, location),
    )


_EXCURSION_COLUMNS = (
    "e.id, e.location, e.device, e.storage_class, e.min_mc, e.max_mc, e.direction, e.started_at, e.alarmed_at,"
    " e.ended_at, e.peak_mc, e.last_mc, e.last_at, e.readings, e.alarm_published_at, e.end_published_at"
)


def _excursion(row: sqlite3.Row) -> Excursion:
    return Excursion(
        id=row["id"],
        location=row["location"],
        device=row["device"],
        storage_class=row["storage_class"],
        band=Band(row["min_mc"], row["max_mc"]),
        direction=Direction(row["direction"]),
        started_at=parse_utc(row["started_at"]),
        peak_mc=row["peak_mc"],
        last_mc=row["last_mc"],
        last_at=parse_utc(row["last_at"]),
        readings=row["readings"],
        alarmed_at=parse_utc(row["alarmed_at"]) if row["alarmed_at"] else None,
        ended_at=parse_utc(row["ended_at"]) if row["ended_at"] else None,
    )


def _open_excursions(conn: sqlite3.Connection) -> list[Excursion]:
    rows = conn.execute(f"SELECT {_EXCURSION_COLUMNS} FROM cold_excursions e WHERE e.ended_at IS NULL").fetchall()
    return [_excursion(row) for row in rows]


def _lots(conn: sqlite3.Connection, excursion_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT x.sku, i.name, x.lot, x.expiry, x.qty FROM cold_excursion_lots x LEFT JOIN items i ON i.sku = x.sku"
        " WHERE x.excursion_id = ? ORDER BY x.sku, x.lot LIMIT ?",
        (excursion_id, LOTS_SHOWN),
    ).fetchall()
    return [{"sku": r["sku"], "name": r["name"], "lot": r["lot"], "expiry": r["expiry"], "qty": r["qty"]} for r in rows]


def unpublished_cold_alerts(conn: sqlite3.Connection) -> list[ColdAlert]:
    """Alarms and ends not yet published, oldest first; an end only after its alarm."""
    rows = conn.execute(
        f"SELECT {_EXCURSION_COLUMNS}, l.name AS location_name FROM cold_excursions e"
        " LEFT JOIN locations l ON l.code = e.location"
        " WHERE e.alarmed_at IS NOT NULL AND (e.alarm_published_at IS NULL"
        " OR (e.ended_at IS NOT NULL AND e.end_published_at IS NULL)) ORDER BY e.id"
    ).fetchall()
    alerts: list[ColdAlert] = []
    for row in rows:
        excursion = _excursion(row)
        assert excursion.id is not None and excursion.alarmed_at is not None
        lots = tuple(_lots(conn, excursion.id))
        states = [] if row["alarm_published_at"] else ["alarm"]
        if excursion.ended_at is not None:
            states.append("ended")
        for state in states:
            alerts.append(
                ColdAlert(
                    excursion=excursion.id,
                    state=state,
                    location=excursion.location,
                    location_name=row["location_name"] or excursion.location,
                    storage_class=excursion.storage_class,
                    device=excursion.device,
                    band=excursion.band,
                    direction=excursion.direction,
                    started_at=excursion.started_at,
                    alarmed_at=excursion.alarmed_at,
                    ended_at=excursion.ended_at if state == "ended" else None,
                    peak_mc=excursion.peak_mc,
                    last_mc=excursion.last_mc,
                    lots=lots,
                )
            )
    return alerts


def mark_cold_alerts_published(conn: sqlite3.Connection, sent: Sequence[tuple[int, str]], now: datetime) -> None:
    """Mark `(excursion id, "alarm" | "ended")` as published."""
    for excursion_id, state in sent:
        column = "alarm_published_at" if state == "alarm" else "end_published_at"
        conn.execute(f"UPDATE cold_excursions SET {column} = ? WHERE id = ?", (utc_text(now), excursion_id))


def prune_history(conn: sqlite3.Connection, now: datetime, raw_days: int, minute_days: int) -> tuple[int, int]:
    """Drop raw readings older than `raw_days` (once taken into rollups) and per-minute rollups older than
    `minute_days`; 15-minute rollups stay. Returns (readings, rollups) removed."""
    cursor_row = conn.execute("SELECT last_reading_id FROM cold_chain_cursor WHERE id = 1").fetchone()
    taken = int(cursor_row[0]) if cursor_row else 0
    raw = conn.execute(
        "DELETE FROM sensor_readings WHERE ts_utc < ? AND id <= ?", (utc_text(now - timedelta(days=raw_days)), taken)
    ).rowcount
    minutes = conn.execute(
        "DELETE FROM temperature_rollups WHERE period = 60 AND bucket < ?",
        (utc_text(now - timedelta(days=minute_days)),),
    ).rowcount
    return raw, minutes


# --- reads for the API ----------------------------------------------------------------------------------


def _excursion_json(row: sqlite3.Row, lots: list[dict[str, Any]] | None) -> dict[str, Any]:
    excursion = _excursion(row)
    body: dict[str, Any] = {
        "id": excursion.id,
        "room": excursion.location,
        "device": excursion.device,
        "storage_class": excursion.storage_class,
        "band": excursion.band.to_json(),
        "direction": excursion.direction.value,
        "started_at": excursion.started_at.isoformat(),
        "alarmed_at": excursion.alarmed_at.isoformat() if excursion.alarmed_at else None,
        "ended_at": excursion.ended_at.isoformat() if excursion.ended_at else None,
        "state": "ended" if excursion.ended_at else ("alarm" if excursion.alarmed_at else "pending"),
        "peak_celsius": _celsius(excursion.peak_mc),
        "last_celsius": _celsius(excursion.last_mc),
        "last_at": excursion.last_at.isoformat(),
        "readings": excursion.readings,
    }
    if lots is not None:
        body["lots"] = lots
    return body


def list_excursions(
    conn: sqlite3.Connection,
    *,
    room: str | None = None,
    sku: str | None = None,
    lot: str | None = None,
    open_only: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Excursions newest first, each with the lots in its room at its start; filtered by room, or by an item
    (and lot) that was in the room."""
    where: list[str] = ["1 = 1"]
    params: list[Any] = []
    if room is not None:
        where.append("e.location = ?")
        params.append(room)
    if open_only:
        where.append("e.ended_at IS NULL")
    if sku is not None:
        where.append(
            "EXISTS (SELECT 1 FROM cold_excursion_lots x WHERE x.excursion_id = e.id AND x.sku = ?"
            + (" AND x.lot = ?)" if lot is not None else ")")
        )
        params.extend([sku, lot] if lot is not None else [sku])
    rows = conn.execute(
        f"SELECT {_EXCURSION_COLUMNS} FROM cold_excursions e WHERE {' AND '.join(where)}"
        " ORDER BY e.started_at DESC, e.id DESC LIMIT ? OFFSET ?",
        (*params, limit, offset),
    ).fetchall()
    return [_excursion_json(row, _lots(conn, row["id"])) for row in rows]


def get_excursion(conn: sqlite3.Connection, excursion_id: int) -> dict[str, Any]:
    row = conn.execute(f"SELECT {_EXCURSION_COLUMNS} FROM cold_excursions e WHERE e.id = ?", (excursion_id,)).fetchone()
    if row is None:
        raise UnknownExcursion(excursion_id)
    return _excursion_json(row, _lots(conn, excursion_id))


def _room_rows(conn: sqlite3.Connection, policy: ColdChainPolicy, code: str | None) -> list[sqlite3.Row]:
    classes = sorted(policy.bands)
    marks = ", ".join("?" for _ in classes) or "NULL"
    where = f"(l.storage_class IN ({marks}) OR EXISTS (SELECT 1 FROM devices d WHERE d.location = l.code))"
    params: list[Any] = list(classes)
    if code is not None:
        where = "l.code = ?"
        params = [code]
    return conn.execute(
        f"SELECT l.code, l.name, l.name_en, l.storage_class FROM locations l WHERE {where} ORDER BY l.code", params
    ).fetchall()


def cold_rooms(conn: sqlite3.Connection, policy: ColdChainPolicy, code: str | None = None) -> list[dict[str, Any]]:
    """Rooms (locations with a band, or with a sensor placed in them): band, sensors, the latest reading, and
    the excursion going on. With `code`, that room only (UnknownLocation if there is no such location)."""
    rows = _room_rows(conn, policy, code)
    if code is not None and not rows:
        raise UnknownLocation(code)
    rooms = []
    for row in rows:
        band = policy.bands.get(row["storage_class"])
        latest = conn.execute(
            "SELECT device, ts_utc, milli_celsius FROM sensor_readings WHERE location = ? ORDER BY ts_utc DESC LIMIT 1",
            (row["code"],),
        ).fetchone()
        sensors = [r[0] for r in conn.execute("SELECT id FROM devices WHERE location = ? ORDER BY id", (row["code"],))]
        open_rows = conn.execute(
            f"SELECT {_EXCURSION_COLUMNS} FROM cold_excursions e WHERE e.location = ? AND e.ended_at IS NULL"
            " ORDER BY e.started_at",
            (row["code"],),
        ).fetchall()
        current = None
        if latest is not None:
            current = {
                "celsius": _celsius(latest["milli_celsius"]),
                "ts": parse_utc(latest["ts_utc"]).isoformat(),
                "device": latest["device"],
                "in_band": band.direction(latest["milli_celsius"]) is None if band else None,
            }
        rooms.append(
            {
                "room": row["code"],
                "name": row["name"],
                "name_en": row["name_en"],
                "storage_class": row["storage_class"],
                "band": band.to_json() if band else None,
                "sensors": sensors,
                "current": current,
                "excursions": [_excursion_json(r, None) for r in open_rows],
            }
        )
    return rooms


def pick_resolution(
    requested: Resolution, since: datetime, until: datetime, now: datetime, raw_days: int, minute_days: int
) -> Resolution:
    """`auto`: raw for up to 6 hours still kept raw, per minute for up to 3 days still kept, else 15 minutes."""
    if requested is not Resolution.AUTO:
        return requested
    span = until - since
    if span <= timedelta(hours=6) and since >= now - timedelta(days=raw_days):
        return Resolution.RAW
    if span <= timedelta(days=3) and since >= now - timedelta(days=minute_days):
        return Resolution.MINUTE
    return Resolution.QUARTER


def room_history(
    conn: sqlite3.Connection,
    room: str,
    since: datetime,
    until: datetime,
    resolution: Resolution,
    limit: int = MAX_HISTORY_POINTS,
) -> dict[str, Any]:
    """A room's temperatures from `since` to `until` (UTC), oldest first, at a resolution already picked."""
    if conn.execute("SELECT 1 FROM locations WHERE code = ?", (room,)).fetchone() is None:
        raise UnknownLocation(room)
    if until <= since:
        raise InvalidHistoryRange(
            "结束时间须晚于开始时间", "until must be after since", since=str(since), until=str(until)
        )
    if until - since > MAX_HISTORY_SPAN:
        raise InvalidHistoryRange(
            f"时间范围最长 {MAX_HISTORY_SPAN.days} 天",
            f"the range is at most {MAX_HISTORY_SPAN.days} days",
            max_days=MAX_HISTORY_SPAN.days,
        )
    bounds = (room, utc_text(since), utc_text(until))
    points: list[dict[str, Any]]
    if resolution is Resolution.RAW:
        rows = conn.execute(
            "SELECT ts_utc, device, milli_celsius FROM sensor_readings"
            " WHERE location = ? AND ts_utc >= ? AND ts_utc < ? ORDER BY ts_utc, id LIMIT ?",
            (*bounds, limit + 1),
        ).fetchall()
        points = [
            {"ts": parse_utc(r["ts_utc"]).isoformat(), "celsius": _celsius(r["milli_celsius"]), "device": r["device"]}
            for r in rows
        ]
    else:
        period = 60 if resolution is Resolution.MINUTE else 900
        rows = conn.execute(
            "SELECT bucket, n, sum_mc, min_mc, max_mc FROM temperature_rollups"
            " WHERE location = ? AND period = ? AND bucket >= ? AND bucket < ? ORDER BY bucket LIMIT ?",
            (room, period, utc_text(bucket_start(since, period)), bounds[2], limit + 1),
        ).fetchall()
        points = [
            {
                "ts": parse_utc(r["bucket"]).isoformat(),
                "n": r["n"],
                "min_celsius": _celsius(r["min_mc"]),
                "max_celsius": _celsius(r["max_mc"]),
                "avg_celsius": round(r["sum_mc"] / r["n"] / 1000, 3),
            }
            for r in rows
        ]
    truncated = len(points) > limit
    return {
        "room": room,
        "resolution": resolution.value,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "points": points[:limit],
        "truncated": truncated,
    }


def _celsius(mc: int | None) -> float | None:
    return None if mc is None else round(mc / 1000, 3)
