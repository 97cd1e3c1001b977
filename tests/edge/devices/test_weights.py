"""Scale weights: the last reading per scale, the rules for taking a stable weight, and the writer jobs of
`evt/weight` and of a scan that names a scale, over a real temp SQLite database."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.bus.event_kinds import device_event_kinds
from edge.bus.payloads import DecodedEvent, DecodeOptions, Rejection, ScanData, decode_event, to_command
from edge.db import connect, migrate
from edge.devices import weights
from edge.devices.weights import (
    ScaleReading,
    WeightData,
    latest_reading,
    post_weighed_scan,
    record_reading,
    record_weight,
    stable_grams,
    take_stable_weight,
)
from edge.ledger.posting import PostingContext
from edge.security.devices import create_device
from tests.edge.ledger.sample_store import RULES, seed

NOW = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
KINDS = device_event_kinds()


def reading(grams: int = 1250, *, stable: bool = True, status: str | None = None, age_s: int = 5) -> ScaleReading:
    at = NOW - timedelta(seconds=age_s)
    return ScaleReading("scale-1", grams, stable, status, at, at, "w-1")


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = connect(tmp_path / "box.db", synchronous="NORMAL")
    migrate(connection)
    seed(connection)  # the sample store: R1 is rice sold by the gram
    connection.execute("BEGIN")
    create_device(connection, "scale-1", "scale", "scale-1-secret", now=NOW)
    create_device(connection, "pda-1", "handheld", "pda-1-secret", now=NOW)
    connection.execute("COMMIT")
    yield connection
    connection.close()


def ctx(now: datetime = NOW) -> PostingContext:
    return PostingContext(now=now, business_date=now.date(), rules=RULES)


def in_transaction(conn: sqlite3.Connection, fn: Any, *args: Any) -> Any:
    conn.execute("BEGIN IMMEDIATE")
    try:
        return fn(conn, *args)
    finally:
        conn.execute("COMMIT")


# --- the rules ----------------------------------------------------------------------------------------


def test_a_stable_fresh_reading_gives_its_grams() -> None:
    assert stable_grams("scale-1", reading(1250), NOW, 120) == 1250
    assert stable_grams("scale-1", reading(1250, status="ok"), NOW, 120) == 1250


@pytest.mark.parametrize(
    ("the_reading", "code"),
    [
        (None, "scale_no_reading"),
        (reading(stable=False, status="dynamic"), "weight_not_stable"),
        (reading(age_s=121), "weight_too_old"),
        (reading(status="overload"), "scale_overload"),
        (reading(status="underload"), "scale_underload"),
        (reading(-20), "scale_underload"),
        (reading(status="error"), "scale_fault"),
        (reading(0), "weight_zero"),
    ],
)
def test_a_weight_that_cannot_be_used_is_refused_with_its_code(the_reading: ScaleReading | None, code: str) -> None:
    with pytest.raises(weights.WeightUnusable) as caught:
        stable_grams("scale-1", the_reading, NOW, 120)
    assert caught.value.code == code
    assert caught.value.message and caught.value.message_en and caught.value.detail["scale"] == "scale-1"


def test_age_counts_from_the_earlier_of_weighing_and_receipt() -> None:
    ahead = ScaleReading("scale-1", 500, True, None, NOW + timedelta(hours=1), NOW - timedelta(seconds=200), "w")
    with pytest.raises(weights.WeightTooOld):
        stable_grams("scale-1", ahead, NOW, 120)  # a scale clock running ahead does not make it fresh
    late = ScaleReading("scale-1", 500, True, None, NOW - timedelta(seconds=200), NOW, "w")
    with pytest.raises(weights.WeightTooOld):
        stable_grams("scale-1", late, NOW, 120)  # resent late: weighed long ago


def test_a_count_may_take_zero_grams() -> None:
    assert stable_grams("scale-1", reading(0), NOW, 120, allow_zero=True) == 0


# --- the readings table and the weight job ---------------------------------------------------------------


def test_the_newest_reading_by_the_scale_s_time_is_kept(conn: sqlite3.Connection) -> None:
    def weighed(grams: int, age_s: int) -> ScaleReading:
        return ScaleReading("scale-1", grams, True, None, NOW - timedelta(seconds=age_s), NOW, f"w-{grams}")

    assert in_transaction(conn, record_reading, weighed(100, 30))
    assert in_transaction(conn, record_reading, weighed(200, 10))
    assert not in_transaction(conn, record_reading, weighed(300, 20))  # an older reading that arrived late
    latest = latest_reading(conn, "scale-1")
    assert latest is not None and latest.grams == 200
    assert in_transaction(conn, take_stable_weight, "scale-1", NOW) == 200
    assert latest_reading(conn, "scale-2") is None


def test_a_reading_stamped_in_the_future_does_not_hold_back_later_readings(conn: sqlite3.Connection) -> None:
    ahead = ScaleReading("scale-1", 100, True, None, NOW + timedelta(hours=1), NOW - timedelta(seconds=60), "w-1")
    assert in_transaction(conn, record_reading, ahead)
    assert in_transaction(conn, record_reading, reading(200, age_s=5))  # the scale's clock was set right
    assert in_transaction(conn, take_stable_weight, "scale-1", NOW) == 200


def test_the_weight_job_keeps_a_scale_s_reading_and_refuses_other_devices(conn: sqlite3.Connection) -> None:
    at = NOW - timedelta(seconds=3)
    done = in_transaction(conn, record_weight, ctx(), "scale-1", "w-1", at, 1250, True, None)
    assert (done.ok, done.code, done.document) == (True, "ok", None)
    stored = latest_reading(conn, "scale-1")
    assert stored is not None and (stored.grams, stored.stable, stored.ts, stored.received_at) == (1250, True, at, NOW)
    refused = in_transaction(conn, record_weight, ctx(), "pda-1", "w-2", at, 999, True, None)
    assert (refused.ok, refused.code) == (False, "not_a_scale")
    assert latest_reading(conn, "pda-1") is None
    # The refusal names the device's own kind, in both languages.
    assert "handheld" in refused.message and "handheld" in refused.message_en, refused
    assert "类型 scale" not in refused.message and refused.detail == {"device": "pda-1", "kind": "handheld"}


def test_weight_events_decode_to_the_weight_job_and_garbage_is_refused() -> None:
    body = {"id": "w-1", "ts": "2026-11-25T17:30:00+08:00", "data": {"grams": 1250, "stable": True}}
    decoded = decode_event("scale-1", "weight", json.dumps(body).encode(), kinds=KINDS)
    assert isinstance(decoded, DecodedEvent) and decoded.job is not None
    assert decoded.job.fn is record_weight and decoded.job.args[3:] == (1250, True, None)
    for data in (
        {"grams": 1.5, "stable": True},
        {"grams": 5},
        {"grams": 5, "stable": "yes"},
        {"grams": 5, "stable": True, "unit": "g"},
    ):
        bad = decode_event("scale-1", "weight", json.dumps({**body, "data": data}).encode(), kinds=KINDS)
        assert isinstance(bad, Rejection) and bad.code == "invalid_data"


@given(
    st.dictionaries(
        st.sampled_from(["grams", "stable", "status", "x"]),
        st.none()
        | st.booleans()
        | st.integers(-(2**40), 2**40)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=40),
    )
)
def test_any_weight_data_is_a_reading_or_a_refusal(data: dict[str, Any]) -> None:
    body = json.dumps({"id": "w-1", "ts": "2026-11-25T17:30:00+08:00", "data": data}).encode()
    decoded = decode_event("scale-1", "weight", body, kinds=KINDS)
    if isinstance(decoded, DecodedEvent):
        parsed = WeightData.model_validate(data)
        assert abs(parsed.grams) <= weights.MAX_GRAMS and isinstance(parsed.stable, bool)
    else:
        assert decoded.code == "invalid_data"


# --- a scan that takes the scale's weight ----------------------------------------------------------------


def scan_job(data: dict[str, Any], max_age_s: int = 120) -> tuple[Any, tuple[Any, ...]]:
    body = json.dumps({"id": "s-1", "ts": NOW.isoformat(), "data": data}).encode()
    options = DecodeOptions(extra={weights.MAX_AGE_KEY: max_age_s})
    decoded = decode_event("pda-1", "scan", body, kinds=KINDS, options=options)
    assert isinstance(decoded, DecodedEvent) and decoded.job is not None, decoded
    assert decoded.job.fn is post_weighed_scan
    return decoded.job.fn, decoded.job.args


def test_a_scan_naming_a_scale_posts_the_scale_s_stable_weight_in_grams(conn: sqlite3.Connection) -> None:
    in_transaction(conn, record_reading, reading(1250))
    fn, args = scan_job({"code": "R1", "mode": "receive", "scale": "scale-1", "price_fen": 1, "supplier": "sup1"})
    outcome = in_transaction(conn, fn, ctx(), *args)
    assert outcome.ok, outcome
    assert outcome.detail == {"scale": "scale-1", "grams": 1250}
    assert [r.ok for r in outcome.post_results] == [True]
    row = conn.execute("SELECT sku, unit, qty_base FROM document_lines WHERE document_id = ?", (outcome.document,))
    assert tuple(row.fetchone()) == ("R1", "g", 1250)


@pytest.mark.parametrize(
    ("the_reading", "scan_age_s", "code"),
    [
        (reading(stable=False), 0, "weight_not_stable"),
        (reading(age_s=600), 0, "weight_too_old"),
        (reading(status="overload"), 0, "scale_overload"),
        (None, 0, "scale_no_reading"),
        (reading(), 600, "scan_too_old"),
    ],
)
def test_a_weighed_scan_that_cannot_take_the_weight_posts_nothing(
    conn: sqlite3.Connection, the_reading: ScaleReading | None, scan_age_s: int, code: str
) -> None:
    if the_reading is not None:
        in_transaction(conn, record_reading, the_reading)
    fn, args = scan_job({"code": "R1", "mode": "receive", "scale": "scale-1"})
    outcome = in_transaction(conn, fn, ctx(NOW + timedelta(seconds=scan_age_s)), *args)
    assert (outcome.ok, outcome.code, outcome.document, outcome.post_results) == (False, code, None, ())
    assert conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0] == 0


def weighed_scan(conn: sqlite3.Connection, event_id: str, data: dict[str, Any]) -> Any:
    body = json.dumps({"id": event_id, "ts": NOW.isoformat(), "data": data}).encode()
    decoded = decode_event("pda-1", "scan", body, kinds=KINDS)
    assert isinstance(decoded, DecodedEvent) and decoded.job is not None, decoded
    return in_transaction(conn, decoded.job.fn, ctx(), *decoded.job.args)


def test_a_stable_reading_is_taken_once(conn: sqlite3.Connection) -> None:
    in_transaction(conn, record_reading, reading(800))
    received = weighed_scan(conn, "s-1", {"code": "R1", "mode": "receive", "scale": "scale-1", "supplier": "sup1"})
    assert received.ok and received.detail == {"scale": "scale-1", "grams": 800}, received
    documents = conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
    for n, mode in enumerate(("sale", "count", "receive")):
        again = weighed_scan(conn, f"s-{n + 2}", {"code": "R1", "mode": mode, "scale": "scale-1"})
        assert (again.ok, again.code, again.document) == (False, "weight_already_taken", None), again
        assert "800 g" in again.message and "800 g" in again.message_en
        assert again.detail["taken_by"] == "dev:pda-1:s-1"
    assert conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0] == documents
    with pytest.raises(weights.WeightAlreadyTaken):  # a receipt draft takes by the same rule
        in_transaction(conn, take_stable_weight, "scale-1", NOW)


def test_the_same_stable_weight_sent_again_stays_taken_and_a_new_reading_can_be_taken(
    conn: sqlite3.Connection,
) -> None:
    def weighed(event_id: str, grams: int, *, stable: bool = True) -> ScaleReading:
        return ScaleReading("scale-1", grams, stable, None, NOW - timedelta(seconds=1), NOW, event_id)

    in_transaction(conn, record_reading, weighed("w-1", 800))
    assert in_transaction(conn, take_stable_weight, "scale-1", NOW, 120) == 800
    in_transaction(conn, record_reading, weighed("w-2", 800))  # the scale repeats itself: the same goods
    with pytest.raises(weights.WeightAlreadyTaken):
        in_transaction(conn, take_stable_weight, "scale-1", NOW, 120)
    in_transaction(conn, record_reading, weighed("w-3", 800, stable=False))  # taken off (moving) ...
    in_transaction(conn, record_reading, weighed("w-4", 800))  # ... and put back on
    assert in_transaction(conn, take_stable_weight, "scale-1", NOW, 120) == 800
    in_transaction(conn, record_reading, weighed("w-5", 650))  # another stable weight
    assert in_transaction(conn, take_stable_weight, "scale-1", NOW, 120) == 650


def test_a_scan_the_ledger_refuses_does_not_use_up_the_reading(conn: sqlite3.Connection) -> None:
    in_transaction(conn, record_reading, reading(10**6))
    refused = weighed_scan(conn, "s-1", {"code": "R1", "mode": "sale", "scale": "scale-1"})
    assert (refused.ok, refused.code) == (False, "insufficient_stock"), refused
    received = weighed_scan(conn, "s-2", {"code": "R1", "mode": "receive", "scale": "scale-1"})
    assert received.ok, received


def test_an_empty_scale_is_never_used_up_by_counts(conn: sqlite3.Connection) -> None:
    in_transaction(conn, record_reading, reading(0))
    for n in range(2):
        counted = weighed_scan(conn, f"s-{n}", {"code": "R1", "mode": "count", "scale": "scale-1"})
        assert counted.ok and counted.detail == {"scale": "scale-1", "grams": 0}, counted


def test_a_count_on_an_empty_scale_counts_zero(conn: sqlite3.Connection) -> None:
    in_transaction(conn, record_reading, reading(0))
    fn, args = scan_job({"code": "R1", "mode": "count", "scale": "scale-1"})
    outcome = in_transaction(conn, fn, ctx(), *args)
    assert outcome.ok and outcome.detail == {"scale": "scale-1", "grams": 0}


def test_scale_and_qty_or_a_code_with_its_own_weight_are_refused() -> None:
    body = {"id": "s-1", "ts": NOW.isoformat(), "data": {"code": "R1", "mode": "sale", "scale": "scale-1", "qty": 5}}
    assert isinstance(decode_event("pda-1", "scan", json.dumps(body).encode(), kinds=KINDS), Rejection)
    labelled = {**body, "data": {"code": "2000011012502", "mode": "sale", "scale": "scale-1"}}
    refused = decode_event("pda-1", "scan", json.dumps(labelled).encode(), kinds=KINDS)
    assert isinstance(refused, Rejection) and "carries its own weight" in refused.message_en


def test_the_command_of_a_weighed_scan_waits_for_its_quantity() -> None:
    command = to_command("pda-1", "s-1", ScanData.model_validate({"code": "R1", "mode": "sale", "scale": "scale-1"}))
    assert command.lines[0].qty == 0  # the writer job puts the weight in
