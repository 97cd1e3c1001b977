"""Scale weights (称重): the last reading of each scale, and the stable weight a scan takes from it.

A scale (or the serial adapter in front of it) publishes `evt/weight` with `{"grams", "stable", "status"?}`;
a writer job keeps the newest reading per scale (table `scale_readings`). A scan that names the scale
(`"scale": "scale-1"`, no `qty`) is posted by a writer job that takes that reading's weight in grams, refused
with a stable code when the reading is missing, not stable, too old, the scale is over or under its range, or
the reading was already taken: a stable reading is taken once (by a posted scan or a receipt draft), so the
same goods on the scale are not booked twice; a new reading (the goods off and back on, another stable
weight) can be taken again.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from edge.bus.payloads import DecodeOptions, EventEnvelope, JobOutcome, KindSpec, WriterJob
from edge.ledger.commands import DocType, PostDocument
from edge.ledger.errors import DomainError
from edge.ledger.posting import PostingContext, post

EVENT_KIND = "weight"
MAX_AGE_KEY = "scale_weight_max_age_s"  # DecodeOptions.extra key: how old a reading a scan may take
DEFAULT_MAX_AGE_S = 120
MAX_GRAMS = 10**9  # as the serial adapters bound a weight (edge/devices/frames.py)
WEIGHED_UNIT = "g"
# Statuses under which a stable weight may be used; "dynamic" comes with stable false and is refused as such.
USABLE_STATUSES = frozenset({"ok", "stable", "dynamic"})


class WeightData(BaseModel):
    """`evt/weight` from a scale: one reading in grams."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    grams: Annotated[int, Field(ge=-MAX_GRAMS, le=MAX_GRAMS)]
    stable: bool
    status: Annotated[str, StringConstraints(pattern=r"^[!-~]{1,32}$")] | None = None


@dataclass(frozen=True, slots=True)
class ScaleReading:
    """The last reading of a scale: `ts` when weighed (the scale's clock), `received_at` the box's clock."""

    scale: str
    grams: int
    stable: bool
    status: str | None
    ts: datetime
    received_at: datetime
    event_id: str
    taken_by: str | None = None  # what took its weight (an event key, "scan"): None while it may be taken


# --- refusals ------------------------------------------------------------------------------------------


class WeightUnusable(DomainError):
    """A scale's weight that a scan cannot take; each subclass has its own stable code."""

    code: ClassVar[str] = "weight_unusable"
    status: ClassVar[int] = 409


class ScaleNoReading(WeightUnusable):
    code = "scale_no_reading"

    def __init__(self, scale: str) -> None:
        super().__init__(
            f"秤 {scale} 没有读数 (未连接或不是秤)",
            f"scale {scale} has sent no weight (not connected, or not a scale)",
            scale=scale,
        )


class WeightNotStable(WeightUnusable):
    code = "weight_not_stable"

    def __init__(self, scale: str, grams: int) -> None:
        super().__init__(
            f"秤 {scale} 读数不稳定 ({grams} g), 请等待稳定后再扫",
            f"scale {scale} is not stable ({grams} g); wait for a stable weight and scan again",
            scale=scale,
            grams=grams,
        )


class WeightTooOld(WeightUnusable):
    code = "weight_too_old"

    def __init__(self, scale: str, age_s: int, max_age_s: int) -> None:
        super().__init__(
            f"秤 {scale} 的读数已过去 {age_s} 秒 (上限 {max_age_s} 秒), 请重新称重",
            f"the weight of scale {scale} is {age_s} s old (limit {max_age_s} s); weigh again",
            scale=scale,
            age_s=age_s,
            max_age_s=max_age_s,
        )


class ScanTooOld(WeightUnusable):
    code = "scan_too_old"

    def __init__(self, scale: str, age_s: int, max_age_s: int) -> None:
        super().__init__(
            f"扫码已过去 {age_s} 秒 (上限 {max_age_s} 秒): 取秤 {scale} 重量的扫码须实时发送, 请重新扫码",
            f"the scan is {age_s} s old (limit {max_age_s} s): a scan that takes the weight of scale {scale}"
            " must be sent live; scan again",
            scale=scale,
            age_s=age_s,
            max_age_s=max_age_s,
        )


class ScaleOverload(WeightUnusable):
    code = "scale_overload"

    def __init__(self, scale: str) -> None:
        super().__init__(f"秤 {scale} 超载", f"scale {scale} is overloaded", scale=scale)


class ScaleUnderload(WeightUnusable):
    code = "scale_underload"

    def __init__(self, scale: str, grams: int) -> None:
        super().__init__(
            f"秤 {scale} 低于零点 ({grams} g), 请清零或去皮",
            f"scale {scale} is below zero ({grams} g); zero or tare it",
            scale=scale,
            grams=grams,
        )


class ScaleFault(WeightUnusable):
    code = "scale_fault"

    def __init__(self, scale: str, status: str) -> None:
        super().__init__(
            f"秤 {scale} 状态异常: {status}", f"scale {scale} reports {status!r}", scale=scale, status=status
        )


class WeightAlreadyTaken(WeightUnusable):
    code = "weight_already_taken"

    def __init__(self, scale: str, grams: int, taken_by: str) -> None:
        super().__init__(
            f"秤 {scale} 的这次读数 ({grams} g) 已被使用 ({taken_by}): 请把商品取下再放上, 重新称重",
            f"this reading of scale {scale} ({grams} g) was already taken ({taken_by}); take the goods off and"
            " put them back on to weigh again",
            scale=scale,
            grams=grams,
            taken_by=taken_by,
        )


class WeightZero(WeightUnusable):
    code = "weight_zero"

    def __init__(self, scale: str) -> None:
        super().__init__(f"秤 {scale} 上没有商品 (0 g)", f"nothing on scale {scale} (0 g)", scale=scale, grams=0)


# --- the readings table --------------------------------------------------------------------------------


def record_reading(conn: sqlite3.Connection, reading: ScaleReading) -> bool:
    """Keep `reading` as its scale's last unless a newer one (by `ts`) is there; True when it is the last now.

    A kept reading stamped later than the box's clock when `reading` arrives came from a scale clock running
    ahead: it does not hold back the readings after the clock was set right. The same stable weight sent
    again (a scale that repeats itself, a `weigh` command) is the same goods: if it was taken, it stays taken.
    """
    current = latest_reading(conn, reading.scale)
    if current is not None and reading.ts < current.ts <= reading.received_at:
        return False  # a resent older reading arrived after a newer one
    unchanged = (
        current is not None
        and current.stable
        and reading.stable
        and (current.grams, current.status) == (reading.grams, reading.status)
    )
    taken_by = current.taken_by if current is not None and unchanged else None
    conn.execute(
        "INSERT INTO scale_readings (scale, grams, stable, status, ts, received_at, event_id, taken_by, taken_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL) ON CONFLICT (scale) DO UPDATE SET grams = excluded.grams,"
        " stable = excluded.stable, status = excluded.status, ts = excluded.ts,"
        " received_at = excluded.received_at, event_id = excluded.event_id, taken_by = excluded.taken_by,"
        " taken_at = CASE WHEN excluded.taken_by IS NULL THEN NULL ELSE scale_readings.taken_at END",
        (
            reading.scale,
            reading.grams,
            int(reading.stable),
            reading.status,
            reading.ts.isoformat(),
            reading.received_at.isoformat(),
            reading.event_id,
            taken_by,
        ),
    )
    return True


def latest_reading(conn: sqlite3.Connection, scale: str) -> ScaleReading | None:
    """The last reading of `scale`, or None when it has sent none."""
    row = conn.execute(
        "SELECT scale, grams, stable, status, ts, received_at, event_id, taken_by FROM scale_readings WHERE scale = ?",
        (scale,),
    ).fetchone()
    if row is None:
        return None
    return ScaleReading(
        scale=row[0],
        grams=int(row[1]),
        stable=bool(row[2]),
        status=row[3],
        ts=datetime.fromisoformat(row[4]),
        received_at=datetime.fromisoformat(row[5]),
        event_id=row[6],
        taken_by=row[7],
    )


def stable_grams(
    scale: str, reading: ScaleReading | None, now: datetime, max_age_s: int, *, allow_zero: bool = False
) -> int:
    """The weight in grams a scan at `now` may take from `reading`, or the WeightUnusable saying why not.

    The reading's age counts from the earlier of when the scale weighed it and when the box got it, so a
    reading resent late and a scale whose clock runs ahead are both judged by the box's clock. A reading
    already taken is refused (an empty scale, 0 g, is never taken: a count may read it for every item).
    """
    if reading is None:
        raise ScaleNoReading(scale)
    if reading.status == "overload":
        raise ScaleOverload(scale)
    if reading.status == "underload" or reading.grams < 0:
        raise ScaleUnderload(scale, reading.grams)
    if reading.status is not None and reading.status not in USABLE_STATUSES:
        raise ScaleFault(scale, reading.status)
    if not reading.stable:
        raise WeightNotStable(scale, reading.grams)
    if reading.taken_by is not None:
        raise WeightAlreadyTaken(scale, reading.grams, reading.taken_by)
    age_s = int((now - min(reading.ts, reading.received_at)).total_seconds())
    if age_s > max_age_s:
        raise WeightTooOld(scale, age_s, max_age_s)
    if reading.grams == 0 and not allow_zero:
        raise WeightZero(scale)
    return reading.grams


def take_stable_weight(
    conn: sqlite3.Connection,
    scale: str,
    now: datetime,
    max_age_s: int = DEFAULT_MAX_AGE_S,
    *,
    allow_zero: bool = False,
    taken_by: str = "scan",
) -> int:
    """The stable weight in grams of `scale` for a scan at `now`, and the reading marked as taken by `taken_by`
    (scan-to-receive uses this too; a refusal after it rolls the caller's transaction back, and the mark)."""
    reading = latest_reading(conn, scale)
    grams = stable_grams(scale, reading, now, max_age_s, allow_zero=allow_zero)
    assert reading is not None
    mark_taken(conn, reading, taken_by, now)
    return grams


def mark_taken(conn: sqlite3.Connection, reading: ScaleReading, taken_by: str, now: datetime) -> None:
    """Mark `reading` (while it is its scale's last) as taken: the next scan needs a new reading. An empty
    scale (0 g) is not marked: there are no goods on it to book twice."""
    if reading.grams == 0:
        return
    conn.execute(
        "UPDATE scale_readings SET taken_by = ?, taken_at = ? WHERE scale = ? AND event_id = ?",
        (taken_by, now.isoformat(), reading.scale, reading.event_id),
    )


# --- the weight event kind ----------------------------------------------------------------------------


def handle_weight(device: str, envelope: EventEnvelope, data: Any, options: DecodeOptions) -> WriterJob:
    assert isinstance(data, WeightData)
    return WriterJob(record_weight, (device, envelope.id, envelope.ts, data.grams, data.stable, data.status))


def record_weight(
    conn: sqlite3.Connection,
    ctx: PostingContext,
    device: str,
    event_id: str,
    ts: datetime,
    grams: int,
    stable: bool,
    status: str | None,
) -> JobOutcome:
    """Writer job of `evt/weight`: keep the reading as the scale's last (only a device of kind scale)."""
    row = conn.execute("SELECT kind FROM devices WHERE id = ?", (device,)).fetchone()
    if row is None or row[0] != "scale":
        kind = "unknown" if row is None else str(row[0])
        return JobOutcome(
            ok=False,
            code="not_a_scale",
            message=f"设备 {device} 的类型是 {kind}, 不是秤 (scale), 不能发送重量",
            message_en=f"device {device} is of kind {kind}, not a scale; it cannot send weights",
            detail={"device": device, "kind": kind},
        )
    reading = ScaleReading(device, grams, stable, status, ts.astimezone(UTC), ctx.now.astimezone(UTC), event_id)
    if record_reading(conn, reading):
        return JobOutcome(ok=True, code="ok", message="已记录", message_en="recorded")
    return JobOutcome(
        ok=True, code="ok", message="已记录 (已有更新的读数)", message_en="recorded (a newer reading is already in)"
    )


KIND = KindSpec(WeightData, handle_weight)


# --- a scan that takes a scale's weight --------------------------------------------------------------


def post_weighed_scan(
    conn: sqlite3.Connection,
    ctx: PostingContext,
    command: PostDocument,
    scale: str,
    scanned_at: datetime,
    max_age_s: int,
) -> JobOutcome:
    """Writer job of a scan with `scale`: post `command` with its one line's quantity the scale's stable weight
    in grams (a count may take 0 g); refused, with nothing posted, when the weight cannot be used. The reading
    is taken (used up) only when the document posts."""
    reading = latest_reading(conn, scale)
    try:
        scan_age_s = int((ctx.now - scanned_at).total_seconds())
        if scan_age_s > max_age_s:
            raise ScanTooOld(scale, scan_age_s, max_age_s)
        counting = command.type is DocType.STOCKTAKE
        grams = stable_grams(scale, reading, ctx.now, max_age_s, allow_zero=counting)
    except WeightUnusable as err:
        return JobOutcome(
            ok=False, code=err.code, message=err.message, message_en=err.message_en, detail=dict(err.detail)
        )
    (line,) = command.lines
    weighed = dataclasses.replace(command, lines=(dataclasses.replace(line, qty=grams, unit=WEIGHED_UNIT),))
    result = post(conn, weighed, ctx)
    if result.ok and reading is not None:
        mark_taken(conn, reading, command.key, ctx.now)
    return JobOutcome(
        ok=result.ok,
        code=result.code,
        message=result.message,
        message_en=result.message_en,
        document=result.document_id,
        detail={"scale": scale, "grams": grams},
        post_results=(result,),
    )
