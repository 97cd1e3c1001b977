"""Cold rooms (冷库): their band and current temperature, downsampled history, and excursions (温度异常) with the
lots that were in the room. See docs/cold-chain.md; the domain is edge/devices/cold_chain.py."""

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from edge.devices import cold_chain
from edge.devices.cold_chain import ColdChainPolicy, Resolution
from edge.web.deps import Deps, Reader, require
from edge.web.errors import error_responses

router = APIRouter(prefix="/api/v1", tags=["cold_rooms"], responses=error_responses(401, 403, 500))

MAX_ID = 2**63 - 1
CODE = r"^[A-Za-z0-9._-]{1,64}$"
RoomCode = Annotated[str, Path(pattern=CODE, description="the room's location code")]
DEFAULT_HISTORY = timedelta(hours=24)


class BandOut(BaseModel):
    min_celsius: float | None
    max_celsius: float | None


class CurrentOut(BaseModel):
    celsius: float
    ts: str
    device: str
    in_band: bool | None = Field(description="null when the room's storage class has no band")


class ExcursionOut(BaseModel):
    id: int
    room: str
    device: str
    storage_class: str
    band: BandOut = Field(description="the band when it started")
    direction: Literal["above", "below"]
    state: Literal["pending", "alarm", "ended"]
    started_at: str = Field(description="the first reading out of band")
    alarmed_at: str | None = Field(description="when it had been out of band for cold_chain_alarm_seconds")
    ended_at: str | None = Field(description="the first reading back in band")
    peak_celsius: float = Field(description="the reading farthest from the band")
    last_celsius: float
    last_at: str
    readings: int


class LotOut(BaseModel):
    sku: str
    name: str | None
    lot: str = Field(description='"" for stock without a lot')
    expiry: str | None
    qty: int = Field(description="in the item's base unit, when the excursion started")


class ExcursionDetailOut(ExcursionOut):
    lots: list[LotOut] = Field(description="the stock in the room when the excursion started")


class RoomOut(BaseModel):
    room: str
    name: str
    name_en: str
    storage_class: str
    band: BandOut | None
    sensors: list[str] = Field(description="devices placed in the room")
    current: CurrentOut | None = Field(description="the latest reading")
    excursions: list[ExcursionOut] = Field(description="excursions going on (pending or alarm)")


class PointOut(BaseModel):
    ts: str = Field(description="the reading's time, or the start of the bucket")
    celsius: float | None = None
    device: str | None = None
    n: int | None = None
    min_celsius: float | None = None
    max_celsius: float | None = None
    avg_celsius: float | None = None


class HistoryOut(BaseModel):
    room: str
    resolution: Literal["raw", "minute", "15min"]
    since: str
    until: str
    points: list[PointOut]
    truncated: bool = Field(description="more points than `limit`; ask for a coarser resolution or a shorter range")


def policy(deps: Deps) -> ColdChainPolicy:
    s = deps.settings
    return ColdChainPolicy(cold_chain.parse_bands(s.cold_chain_bands), timedelta(seconds=s.cold_chain_alarm_seconds))


def _aware(value: datetime, deps: Deps) -> datetime:
    """A time without an offset is the store's local time."""
    return value if value.tzinfo is not None else value.replace(tzinfo=ZoneInfo(deps.settings.timezone))


@router.get(
    "/cold-rooms",
    response_model=list[RoomOut],
    dependencies=[require("cold_rooms:read")],
    summary="Cold rooms / 冷库列表",
)
def list_rooms(reader: Reader, deps: Deps) -> list[dict[str, Any]]:
    """Rooms whose storage class has a band (chilled, frozen) or that have a sensor placed in them: the band, the
    latest reading, and any excursion going on."""
    return cold_chain.cold_rooms(reader, policy(deps))


@router.get(
    "/cold-rooms/{room}",
    response_model=RoomOut,
    dependencies=[require("cold_rooms:read")],
    responses=error_responses(404, 422),
    summary="One cold room / 冷库详情",
)
def get_room(room: RoomCode, reader: Reader, deps: Deps) -> dict[str, Any]:
    return cold_chain.cold_rooms(reader, policy(deps), room)[0]


@router.get(
    "/cold-rooms/{room}/history",
    response_model=HistoryOut,
    dependencies=[require("cold_rooms:read")],
    responses=error_responses(404, 422),
    summary="A room's temperature history / 温度曲线",
)
def room_history(
    room: RoomCode,
    reader: Reader,
    deps: Deps,
    since: Annotated[datetime | None, Query(description="from (default: 24 hours before `until`)")] = None,
    until: Annotated[datetime | None, Query(description="to, excluded (default: now)")] = None,
    resolution: Annotated[
        Resolution, Query(description="raw, minute, 15min, or auto (by the range and what is still kept)")
    ] = Resolution.AUTO,
    limit: Annotated[int, Query(ge=1, le=cold_chain.MAX_HISTORY_POINTS)] = 5000,
) -> dict[str, Any]:
    """Readings (raw) or per-minute / per-15-minute min, max and average, oldest first. Times without an
    offset are the store's local time."""
    now = deps.clock()
    end = _aware(until, deps) if until is not None else now
    start = _aware(since, deps) if since is not None else end - DEFAULT_HISTORY
    s = deps.settings
    picked = cold_chain.pick_resolution(resolution, start, end, now, s.cold_chain_raw_days, s.cold_chain_minute_days)
    return cold_chain.room_history(reader, room, start, end, picked, limit)


@router.get(
    "/excursions",
    response_model=list[ExcursionDetailOut],
    dependencies=[require("cold_rooms:read")],
    responses=error_responses(422),
    summary="Temperature excursions / 温度异常记录",
)
def list_excursions(
    reader: Reader,
    room: Annotated[str | None, Query(pattern=CODE, description="only this room")] = None,
    sku: Annotated[str | None, Query(pattern=CODE, description="only those that had this item in the room")] = None,
    lot: Annotated[str | None, Query(max_length=64, description='with sku: only this lot ("" for no lot)')] = None,
    open: Annotated[bool, Query(description="only those going on")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> list[dict[str, Any]]:
    """Excursions newest first, each with the lots in its room when it started; `sku` (and `lot`) find the
    excursions a lot went through, for near-expiry and quality decisions."""
    return cold_chain.list_excursions(reader, room=room, sku=sku, lot=lot, open_only=open, limit=limit, offset=offset)


@router.get(
    "/excursions/{excursion_id}",
    response_model=ExcursionDetailOut,
    dependencies=[require("cold_rooms:read")],
    responses=error_responses(404, 422),
    summary="One excursion with its lots / 温度异常详情",
)
def get_excursion(reader: Reader, excursion_id: Annotated[int, Path(ge=1, le=MAX_ID)]) -> dict[str, Any]:
    return cold_chain.get_excursion(reader, excursion_id)
