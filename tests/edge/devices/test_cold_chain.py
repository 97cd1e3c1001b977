"""Cold chain: bands, excursion steps, rollups, alarms with the room's lots, history and pruning; readings are
stored as the ingest stores them, with device times in +08:00, and the clock is the test's."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.bus.payloads import TemperatureReading
from edge.bus.storage import insert_readings
from edge.db import connect, migrate
from edge.devices import cold_chain
from edge.devices.cold_chain import (
    Band,
    ColdChainPolicy,
    Direction,
    Reading,
    Resolution,
    Step,
    parse_bands,
    pick_resolution,
    step,
)
from edge.finance.rulebook import rule_book
from edge.finance.setup import prepare_books
from edge.ledger.commands import DocType, Line, PostDocument
from edge.ledger.errors import UnknownLocation
from edge.ledger.masterdata import add_item, add_location
from edge.ledger.posting import PostingContext, post
from edge.security.devices import create_device, set_device_placement

T0 = datetime(2024, 6, 1, 2, 0, tzinfo=UTC)
CST = timezone(timedelta(hours=8))
CHILLED = Band(0, 4000)
FROZEN = Band(None, -18000)
POLICY = ColdChainPolicy(bands={"chilled": CHILLED, "frozen": FROZEN}, alarm_after=timedelta(minutes=15))


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = connect(tmp_path / "storebox.db", synchronous="NORMAL")
    migrate(connection)
    connection.execute("BEGIN")
    prepare_books(connection)
    add_location(connection, "floor", "卖场", "sales floor", "floor", "ambient")
    add_location(connection, "cold", "冷藏库", "cold room", "cold", "chilled")
    add_location(connection, "freezer", "冷冻库", "freezer", "freezer", "frozen")
    add_item(connection, "MILK", "鲜牛奶 1L", base_unit="bottle", storage_class="chilled", price_fen=1290, cost_fen=900)
    add_item(connection, "YOG", "酸奶", base_unit="cup", storage_class="chilled", price_fen=590, cost_fen=400)
    ctx = PostingContext(now=T0, business_date=T0.date(), rules=rule_book())
    lines = (
        Line("MILK", 24, price_fen=900, lot="M0601", expiry=date(2024, 6, 8)),
        Line("MILK", 12, price_fen=900, lot="M0603", expiry=date(2024, 6, 10)),
        Line("YOG", 30, price_fen=400),
    )
    result = post(connection, PostDocument(key="r1", type=DocType.RECEIPT, lines=lines, location="cold"), ctx)
    assert result.ok, result
    for device in ("cold-1", "cold-2", "frz-1", "roam-1"):
        create_device(connection, device, "sensor", f"{device}-secret", now=T0)
    set_device_placement(connection, "cold-1", profile=None, location="cold")
    set_device_placement(connection, "cold-2", profile=None, location="cold")
    set_device_placement(connection, "frz-1", profile=None, location="freezer")
    connection.execute("COMMIT")
    yield connection
    connection.close()


def read(conn: sqlite3.Connection, device: str, at: datetime, celsius: float, location: str | None = None) -> None:
    """Store one reading as the ingest does (device time in +08:00), in its own transaction."""
    event = f"{device}-{at.timestamp()}"
    reading = TemperatureReading(device, event, at.astimezone(CST), location, round(celsius * 1000))
    conn.execute("BEGIN")
    insert_readings(conn, [reading], T0)
    conn.execute("COMMIT")


def run(conn: sqlite3.Connection, now: datetime, policy: ColdChainPolicy = POLICY) -> list[cold_chain.ColdAlert]:
    conn.execute("BEGIN")
    cold_chain.process_readings(conn, policy, now)
    alerts = cold_chain.unpublished_cold_alerts(conn)
    conn.execute("COMMIT")
    return alerts


# --- bands --------------------------------------------------------------------------------------------


def test_default_bands_are_chilled_0_to_4_and_frozen_at_or_below_minus_18() -> None:
    bands = parse_bands(cold_chain.DEFAULT_BANDS)
    assert bands == {"chilled": CHILLED, "frozen": FROZEN}
    assert CHILLED.direction(0) is None and CHILLED.direction(4000) is None
    assert CHILLED.direction(4001) is Direction.ABOVE and CHILLED.direction(-1) is Direction.BELOW
    assert FROZEN.direction(-18000) is None and FROZEN.direction(-17999) is Direction.ABOVE
    assert FROZEN.direction(-40000) is None
    assert (CHILLED.describe(), FROZEN.describe()) == ("0–4 ℃", "≤ -18 ℃")


@pytest.mark.parametrize(
    ("setting", "reason"),
    [
        ({"cool": {"max": 8}}, "unknown storage class"),
        ({"chilled": {"min": 4, "max": 0}}, "min must be below max"),
        ({"chilled": {"max": 99}}, "between"),
        ({"chilled": {"max": True}}, "number"),
        ({"chilled": {}}, "min and/or max"),
        ({"chilled": {"low": 1}}, "min and/or max"),
        ({"chilled": {"max": float("nan")}}, "number"),
    ],
)
def test_a_bad_band_setting_is_refused_naming_the_problem(setting: dict[str, object], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_bands(setting)


# --- the excursion steps, pure ------------------------------------------------------------------------


def reading(minute: float, celsius: float, n: int = 0) -> Reading:
    return Reading(n, "cold-1", "cold", T0 + timedelta(minutes=minute), round(celsius * 1000))


def walk(temps: list[tuple[float, float]], alarm_after: timedelta = POLICY.alarm_after) -> list[Step]:
    current, steps = None, []
    for minute, celsius in temps:
        current, happened = step(current, reading(minute, celsius), "chilled", CHILLED, alarm_after)
        steps.extend(happened)
    return steps


def test_out_of_band_shorter_than_the_delay_is_dropped_longer_alarms_and_ends() -> None:
    assert walk([(0, 3), (1, 6), (10, 7), (12, 3)]) == [Step.STARTED, Step.DROPPED]
    assert walk([(0, 6), (14, 7), (15, 8), (20, 9), (21, 2), (22, 3)]) == [Step.STARTED, Step.ALARM, Step.ENDED]


def test_a_zero_delay_alarms_on_the_first_reading_out_of_band() -> None:
    assert walk([(0, 5), (1, 1)], timedelta(0)) == [Step.STARTED, Step.ALARM, Step.ENDED]


def test_the_peak_is_the_reading_farthest_from_the_band_and_old_readings_do_not_move_it() -> None:
    current, _ = step(None, reading(0, 6), "chilled", CHILLED, POLICY.alarm_after)
    for minute, celsius in ((5, 9.5), (3, 30.0), (8, 7)):
        current, _ = step(current, reading(minute, celsius), "chilled", CHILLED, POLICY.alarm_after)
    assert current is not None
    assert (current.peak_mc, current.last_mc, current.readings) == (9500, 7000, 3)
    too_cold, _ = step(None, reading(0, -2), "chilled", CHILLED, POLICY.alarm_after)
    assert too_cold is not None and too_cold.direction is Direction.BELOW


@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), max_size=40), st.integers(0, 20))
def test_steps_match_a_plain_model_of_runs_out_of_band(gaps_and_out: list[tuple[int, bool]], delay: int) -> None:
    """Runs of readings out of band: each starts once; alarms once it spans `delay` minutes; ends (if it
    alarmed) or is dropped at the next reading in band."""
    minute, temps = 0, []
    for gap, out in gaps_and_out:
        minute += gap
        temps.append((minute, 6.0 if out else 2.0))
    expected: list[Step] = []
    run_start: float | None = None
    alarmed = False
    for at, celsius in temps:
        if celsius > 4:
            if run_start is None:
                run_start, alarmed = at, False
                expected.append(Step.STARTED)
            if not alarmed and at - run_start >= delay:
                alarmed = True
                expected.append(Step.ALARM)
        elif run_start is not None:
            expected.append(Step.ENDED if alarmed else Step.DROPPED)
            run_start = None
    assert walk(temps, timedelta(minutes=delay)) == expected


# --- readings, rollups and excursions in the database -------------------------------------------------


def test_a_reading_without_a_location_belongs_to_its_sensors_room_and_is_kept_in_utc(conn: sqlite3.Connection) -> None:
    read(conn, "cold-1", T0, 3.2)
    read(conn, "roam-1", T0, 20.0)  # placed nowhere
    read(conn, "roam-1", T0, 21.0)  # the same event id again: kept once
    read(conn, "roam-1", T0 + timedelta(minutes=1), 21.0, location="freezer")  # its own location wins
    rows = conn.execute("SELECT device, location, ts, ts_utc, milli_celsius FROM sensor_readings ORDER BY id")
    assert [tuple(r) for r in rows] == [
        ("cold-1", "cold", "2024-06-01T10:00:00+08:00", "2024-06-01T02:00:00.000Z", 3200),
        ("roam-1", None, "2024-06-01T10:00:00+08:00", "2024-06-01T02:00:00.000Z", 20000),
        ("roam-1", "freezer", "2024-06-01T10:01:00+08:00", "2024-06-01T02:01:00.000Z", 21000),
    ]


def test_rollups_keep_min_max_average_per_minute_and_per_quarter_hour(conn: sqlite3.Connection) -> None:
    for second, celsius in ((0, 2.0), (20, 3.0), (50, 4.0), (70, 1.0)):
        read(conn, "cold-1", T0 + timedelta(seconds=second), celsius)
        read(conn, "cold-2", T0 + timedelta(seconds=second, milliseconds=1), celsius + 0.5)
    run(conn, T0 + timedelta(minutes=2))
    minute = dict(
        (r["bucket"], (r["n"], r["min_mc"], r["max_mc"], r["sum_mc"]))
        for r in conn.execute("SELECT * FROM temperature_rollups WHERE location = 'cold' AND period = 60")
    )
    assert minute == {
        "2024-06-01T02:00:00.000Z": (6, 2000, 4500, 2000 + 2500 + 3000 + 3500 + 4000 + 4500),
        "2024-06-01T02:01:00.000Z": (2, 1000, 1500, 2500),
    }
    (quarter,) = conn.execute("SELECT n, min_mc, max_mc FROM temperature_rollups WHERE period = 900").fetchall()
    assert tuple(quarter) == (8, 1000, 4500)
    run(conn, T0 + timedelta(minutes=3))  # taken once: the cursor moved on
    assert conn.execute("SELECT SUM(n) FROM temperature_rollups WHERE period = 900").fetchone()[0] == 8


def test_an_excursion_records_the_rooms_lots_alarms_after_the_delay_and_ends(conn: sqlite3.Connection) -> None:
    read(conn, "cold-1", T0, 3.0)
    read(conn, "cold-1", T0 + timedelta(minutes=1), 6.5)
    assert run(conn, T0 + timedelta(minutes=2)) == []
    (pending,) = cold_chain.list_excursions(conn, open_only=True)
    assert (pending["state"], pending["direction"], pending["room"]) == ("pending", "above", "cold")
    assert pending["lots"] == [
        {"sku": "MILK", "name": "鲜牛奶 1L", "lot": "M0601", "expiry": "2024-06-08", "qty": 24},
        {"sku": "MILK", "name": "鲜牛奶 1L", "lot": "M0603", "expiry": "2024-06-10", "qty": 12},
        {"sku": "YOG", "name": "酸奶", "lot": "", "expiry": None, "qty": 30},
    ]
    read(conn, "cold-1", T0 + timedelta(minutes=10), 8.25)
    read(conn, "cold-1", T0 + timedelta(minutes=16), 7.0)
    (alarm,) = run(conn, T0 + timedelta(minutes=16))
    body = alarm.to_json()
    assert (body["state"], body["room"], body["peak_celsius"], body["celsius"]) == ("alarm", "cold", 8.25, 7.0)
    assert body["alarmed_at"] == (T0 + timedelta(minutes=16)).isoformat()
    assert body["band"] == {"min_celsius": 0.0, "max_celsius": 4.0} and len(body["lots"]) == 3
    assert "冷藏库" in body["message"] and "too warm" in body["message_en"]

    conn.execute("BEGIN")
    cold_chain.mark_cold_alerts_published(conn, [(alarm.excursion, "alarm")], T0 + timedelta(minutes=16))
    conn.execute("COMMIT")
    assert run(conn, T0 + timedelta(minutes=17)) == []
    read(conn, "cold-1", T0 + timedelta(minutes=25), 3.5)
    (ended,) = run(conn, T0 + timedelta(minutes=25))
    assert (ended.state, ended.ended_at) == ("ended", T0 + timedelta(minutes=25))
    excursion = cold_chain.get_excursion(conn, alarm.excursion)
    assert excursion["state"] == "ended" and excursion["readings"] == 3


def test_a_sensor_that_stops_reporting_out_of_band_alarms_by_the_box_clock(conn: sqlite3.Connection) -> None:
    read(conn, "frz-1", T0, -12.0)
    assert run(conn, T0 + timedelta(minutes=14)) == []
    (alarm,) = run(conn, T0 + timedelta(minutes=15))
    assert (alarm.location, alarm.direction, alarm.alarmed_at) == (
        "freezer",
        Direction.ABOVE,
        T0 + timedelta(minutes=15),
    )
    assert alarm.lots == ()  # nothing in the freezer


def test_a_short_excursion_leaves_nothing_behind(conn: sqlite3.Connection) -> None:
    read(conn, "cold-1", T0, 5.0)
    read(conn, "cold-1", T0 + timedelta(minutes=5), 2.0)
    assert run(conn, T0 + timedelta(minutes=30)) == []
    assert conn.execute("SELECT COUNT(*) FROM cold_excursions").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM cold_excursion_lots").fetchone()[0] == 0


def test_each_sensor_in_a_room_has_its_own_excursion(conn: sqlite3.Connection) -> None:
    read(conn, "cold-1", T0, 6.0)
    read(conn, "cold-2", T0, 2.0)
    read(conn, "cold-2", T0 + timedelta(minutes=1), 2.1)
    run(conn, T0 + timedelta(minutes=1))
    assert [e["device"] for e in cold_chain.list_excursions(conn, open_only=True)] == ["cold-1"]


def test_excursions_are_found_by_the_lot_they_touched(conn: sqlite3.Connection) -> None:
    read(conn, "cold-1", T0, 9.0)
    run(conn, T0 + timedelta(minutes=20))
    assert len(cold_chain.list_excursions(conn, sku="MILK", lot="M0603")) == 1
    assert cold_chain.list_excursions(conn, sku="MILK", lot="OTHER") == []
    assert cold_chain.list_excursions(conn, room="freezer") == []
    with pytest.raises(cold_chain.UnknownExcursion):
        cold_chain.get_excursion(conn, 999)


def test_rooms_show_band_sensors_latest_reading_and_what_goes_on(conn: sqlite3.Connection) -> None:
    read(conn, "cold-1", T0, 3.0)
    read(conn, "cold-1", T0 + timedelta(minutes=1), 5.0)
    run(conn, T0 + timedelta(minutes=1))
    rooms = {r["room"]: r for r in cold_chain.cold_rooms(conn, POLICY)}
    assert set(rooms) == {"cold", "freezer"}
    cold = rooms["cold"]
    assert cold["sensors"] == ["cold-1", "cold-2"] and cold["band"] == {"min_celsius": 0.0, "max_celsius": 4.0}
    assert cold["current"] == {
        "celsius": 5.0,
        "ts": (T0 + timedelta(minutes=1)).isoformat(),
        "device": "cold-1",
        "in_band": False,
    }
    assert [e["state"] for e in cold["excursions"]] == ["pending"]
    assert rooms["freezer"]["current"] is None
    with pytest.raises(UnknownLocation):
        cold_chain.cold_rooms(conn, POLICY, "nowhere")


def test_history_at_each_resolution_and_auto_picks_by_span_and_keeping(conn: sqlite3.Connection) -> None:
    for minute in range(0, 40):
        read(conn, "cold-1", T0 + timedelta(minutes=minute, seconds=10), 2.0 + (minute % 3))
    run(conn, T0 + timedelta(hours=1))
    since, until = T0, T0 + timedelta(minutes=30)
    raw = cold_chain.room_history(conn, "cold", since, until, Resolution.RAW)
    assert len(raw["points"]) == 30 and raw["points"][0] == {
        "ts": (T0 + timedelta(seconds=10)).isoformat(),
        "celsius": 2.0,
        "device": "cold-1",
    }
    quarter = cold_chain.room_history(conn, "cold", since, until, Resolution.QUARTER)
    assert [p["n"] for p in quarter["points"]] == [15, 15]
    assert quarter["points"][0]["min_celsius"] == 2.0 and quarter["points"][0]["max_celsius"] == 4.0
    limited = cold_chain.room_history(conn, "cold", since, until, Resolution.MINUTE, limit=10)
    assert len(limited["points"]) == 10 and limited["truncated"] is True

    now = T0 + timedelta(days=1)
    assert pick_resolution(Resolution.AUTO, now - timedelta(hours=2), now, now, 7, 90) is Resolution.RAW
    assert pick_resolution(Resolution.AUTO, now - timedelta(days=2), now, now, 7, 90) is Resolution.MINUTE
    assert pick_resolution(Resolution.AUTO, now - timedelta(days=30), now, now, 7, 90) is Resolution.QUARTER
    old = now - timedelta(days=10)
    assert pick_resolution(Resolution.AUTO, old, old + timedelta(hours=1), now, 7, 90) is Resolution.MINUTE
    with pytest.raises(cold_chain.InvalidHistoryRange):
        cold_chain.room_history(conn, "cold", until, since, Resolution.RAW)
    with pytest.raises(UnknownLocation):
        cold_chain.room_history(conn, "nowhere", since, until, Resolution.RAW)


def test_pruning_drops_old_raw_readings_and_minute_rollups_but_keeps_quarter_hours(conn: sqlite3.Connection) -> None:
    read(conn, "cold-1", T0, 2.0)
    read(conn, "cold-1", T0 + timedelta(days=8), 2.0)  # not yet taken into rollups: kept whatever its age
    conn.execute("BEGIN")
    cold_chain.process_readings(conn, POLICY, T0, batch=1)
    removed = cold_chain.prune_history(conn, T0 + timedelta(days=100), raw_days=7, minute_days=90)
    conn.execute("COMMIT")
    assert removed == (1, 1)
    assert conn.execute("SELECT COUNT(*) FROM sensor_readings").fetchone()[0] == 1
    assert conn.execute("SELECT COUNT(*) FROM temperature_rollups WHERE period = 900").fetchone()[0] == 1


def test_readings_in_an_ambient_room_raise_no_excursion(conn: sqlite3.Connection) -> None:
    read(conn, "roam-1", T0, 30.0, location="floor")
    assert run(conn, T0 + timedelta(hours=1)) == []
    assert conn.execute("SELECT COUNT(*) FROM temperature_rollups WHERE period = 60").fetchone()[0] == 1


def test_a_reading_naming_an_unknown_room_is_refused_and_not_stored(conn: sqlite3.Connection) -> None:
    unknown = TemperatureReading("roam-1", "r-1", T0.astimezone(CST), "dock-9", 30000)
    known = TemperatureReading("roam-1", "r-2", T0.astimezone(CST), "cold", 3000)
    placed = TemperatureReading("cold-1", "r-3", T0.astimezone(CST), None, 3000)
    conn.execute("BEGIN")
    refused = insert_readings(conn, [unknown, known, placed], T0)
    conn.execute("COMMIT")
    assert refused == [unknown]
    rows = conn.execute("SELECT event_id, location FROM sensor_readings ORDER BY id")
    assert [tuple(r) for r in rows] == [("r-2", "cold"), ("r-3", "cold")]


# --- docs/cold-chain.md -------------------------------------------------------------------------------

DOC = Path(__file__).parents[3] / "docs" / "cold-chain.md"


def doc_blocks(info: str) -> list[str]:
    pattern = re.compile(r"^```([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
    return [body for head, body in pattern.findall(DOC.read_text("utf-8")) if head.strip() == info]


def test_the_alarm_in_the_guide_is_what_the_box_publishes() -> None:
    (text,) = doc_blocks("json alert:cold-room")
    example = json.loads(text)
    lots = ({"sku": "MILK", "name": "鲜牛奶 1L", "lot": "M0601", "expiry": "2024-06-08", "qty": 24},)
    alarm = cold_chain.ColdAlert(
        excursion=3,
        state="alarm",
        location="cold",
        location_name="冷藏库",
        storage_class="chilled",
        device="cold-1",
        band=CHILLED,
        direction=Direction.ABOVE,
        started_at=T0 + timedelta(minutes=1),
        alarmed_at=T0 + timedelta(minutes=16),
        ended_at=None,
        peak_mc=8250,
        last_mc=7000,
        lots=lots,
    )
    assert example["data"] == alarm.to_json()
    assert example["id"] == alarm.key and set(example) == {"id", "ts", "data"}


def test_the_settings_example_in_the_guide_gives_the_default_bands(tmp_path: Path) -> None:
    from edge.config import load_settings

    (toml,) = doc_blocks("toml settings")
    path = tmp_path / "storebox.toml"
    path.write_text(toml, "utf-8")
    settings = load_settings(path)
    assert parse_bands(settings.cold_chain_bands) == {"chilled": CHILLED, "frozen": FROZEN}
    assert settings.cold_chain_alarm_seconds == 900
