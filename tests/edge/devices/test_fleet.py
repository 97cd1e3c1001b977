"""The fleet's domain: status messages, when a device is offline, silent or back, and the registry acts."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.db import connect, migrate
from edge.devices import fleet
from edge.devices.fleet import (
    AlertState,
    DeviceHealth,
    DeviceState,
    FleetPolicy,
    StatusRecord,
    StatusReport,
    due_alert,
    parse_status,
)
from edge.ledger.audit import verify_chain
from edge.ledger.errors import UnknownLocation
from edge.ledger.masterdata import add_location
from edge.security.devices import create_device, credential_stamp, verify_device
from edge.security.errors import DeviceExists, UnknownDevice

T0 = datetime(2024, 6, 1, 2, 0, tzinfo=UTC)
POLICY = FleetPolicy(offline_after=timedelta(minutes=5), silent_after={"sensor": timedelta(minutes=15)})


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = connect(tmp_path / "storebox.db")
    migrate(connection)
    add_location(connection, "cold", "冷藏库", "cold room", "cold", "chilled")
    create_device(connection, "pos-1", "pos", "pos-1-secret", now=T0)
    create_device(connection, "cold-1", "sensor", "cold-1-secret", now=T0)
    yield connection
    connection.close()


# --- status messages ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "state"),
    [
        (b"online", DeviceState.ONLINE),
        (b"offline", DeviceState.OFFLINE),
        (b" Online\r\n", DeviceState.ONLINE),
        (b'"offline"', DeviceState.OFFLINE),
        (b'{"state": "online"}', DeviceState.ONLINE),
    ],
)
def test_a_status_is_online_or_offline_as_text_or_json(payload: bytes, state: DeviceState) -> None:
    assert parse_status(payload) == StatusReport(state)


def test_a_json_status_keeps_its_other_plain_fields() -> None:
    report = parse_status(b'{"state": "online", "fw": "2.1.0", "ip": "10.0.0.7", "battery": 87, "charging": true}')
    assert report == StatusReport(
        DeviceState.ONLINE, {"fw": "2.1.0", "ip": "10.0.0.7", "battery": 87, "charging": True}
    )


def test_an_empty_status_clears_the_retained_topic_and_reports_nothing() -> None:
    assert parse_status(b"") is None
    assert parse_status(b"  \n") is None


@pytest.mark.parametrize(
    "payload",
    [
        b"maybe",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"state": 1}',
        b'{"status": "online"}',
        b'{"state": "online", "nested": {"a": 1}}',
        b'{"state": "online", "n": NaN}',
        b'{"state": "online"',
        b'{"state": "online", "fw": "' + b"x" * 300 + b'"}',
        b"online" + b" " * 3000,
    ],
)
def test_garbage_status_is_refused_with_a_reason(payload: bytes) -> None:
    with pytest.raises(ValueError):
        parse_status(payload)


@given(st.binary(max_size=300))
def test_any_bytes_either_parse_or_are_refused_with_value_error(payload: bytes) -> None:
    try:
        report = parse_status(payload)
    except ValueError:
        return
    assert report is None or report.state in DeviceState


# --- offline, silent, back ----------------------------------------------------------------------------


def health(**kw: object) -> DeviceHealth:
    values: dict[str, object] = {
        "device": "pos-1",
        "kind": "pos",
        "state": DeviceState.OFFLINE,
        "state_since": T0,
        "last_heard": T0 - timedelta(minutes=1),
        "open_alert": None,
        "open_since": None,
    }
    values.update(kw)
    return DeviceHealth(**values)  # type: ignore[arg-type]


def test_a_device_offline_longer_than_allowed_raises_an_offline_alert_from_when_it_went() -> None:
    assert due_alert(health(), T0 + timedelta(minutes=4, seconds=59), POLICY) is None
    alert = due_alert(health(), T0 + timedelta(minutes=5), POLICY)
    assert alert is not None and alert.state is AlertState.OFFLINE and alert.since == T0
    assert "pos-1" in alert.message and "5 分钟" in alert.message and "5 min" in alert.message_en


def test_a_device_heard_from_after_its_will_fired_is_not_offline() -> None:
    assert due_alert(health(last_heard=T0 + timedelta(seconds=30)), T0 + timedelta(hours=1), POLICY) is None


def test_a_device_that_never_reported_nor_was_seen_raises_nothing() -> None:
    never = health(state=None, state_since=None, last_heard=None, kind="sensor")
    assert due_alert(never, T0 + timedelta(days=3), POLICY) is None


def test_a_sensor_silent_longer_than_its_kind_allows_raises_a_silent_alert_a_pos_does_not() -> None:
    quiet = {"state": DeviceState.ONLINE, "last_heard": T0}
    later = T0 + timedelta(minutes=15)
    sensor = due_alert(health(kind="sensor", device="cold-1", **quiet), later, POLICY)
    assert sensor is not None and sensor.state is AlertState.SILENT and sensor.since == T0
    assert due_alert(health(kind="pos", **quiet), later + timedelta(hours=8), POLICY) is None


def test_an_open_alert_stays_while_the_device_is_away_and_is_closed_by_back() -> None:
    open_alert = {"open_alert": AlertState.OFFLINE, "open_since": T0}
    assert due_alert(health(**open_alert), T0 + timedelta(hours=1), POLICY) is None
    back = due_alert(
        health(state=DeviceState.ONLINE, state_since=T0 + timedelta(hours=1), **open_alert),
        T0 + timedelta(hours=1, minutes=1),
        POLICY,
    )
    assert back is not None and back.state is AlertState.BACK and back.since == T0
    assert "恢复" in back.message and "61 min" in back.message_en


def test_a_silent_alert_is_closed_when_the_device_is_heard_again() -> None:
    silent = health(kind="sensor", state=None, state_since=None, open_alert=AlertState.SILENT, open_since=T0)
    assert due_alert(silent, T0 + timedelta(minutes=20), POLICY) is None  # last heard T0 - 1 min
    heard = health(
        kind="sensor",
        state=None,
        state_since=None,
        last_heard=T0 + timedelta(minutes=30),
        open_alert=AlertState.SILENT,
        open_since=T0,
    )
    alert = due_alert(heard, T0 + timedelta(minutes=31), POLICY)
    assert alert is not None and alert.state is AlertState.BACK


# --- recording and raising in the database ------------------------------------------------------------


def test_status_messages_record_each_transition_once_and_mark_the_device_seen(conn: sqlite3.Connection) -> None:
    records = [
        StatusRecord("pos-1", DeviceState.ONLINE, T0),
        StatusRecord("pos-1", DeviceState.ONLINE, T0 + timedelta(minutes=1), {"fw": "1.2"}),
        StatusRecord("pos-1", DeviceState.OFFLINE, T0 + timedelta(minutes=2)),
        StatusRecord("ghost", DeviceState.ONLINE, T0),
    ]
    changed = fleet.record_statuses(conn, records)
    assert changed == [("pos-1", DeviceState.ONLINE), ("pos-1", DeviceState.OFFLINE)]
    (record,) = [r for r in fleet.device_records(conn) if r["id"] == "pos-1"]
    assert record["status"]["state"] == "offline"
    assert record["status"]["since"] == (T0 + timedelta(minutes=2)).isoformat()
    assert record["status"]["detail"] == {"fw": "1.2"}
    assert record["last_seen"] == (T0 + timedelta(minutes=1)).isoformat()  # the will is not the device speaking
    detail = fleet.get_device_record(conn, "pos-1")
    assert [t["state"] for t in detail["transitions"]] == ["offline", "online"]
    assert conn.execute("SELECT COUNT(*) FROM device_status WHERE device = 'ghost'").fetchone()[0] == 0


def test_alerts_are_raised_once_published_once_and_closed_by_back(conn: sqlite3.Connection) -> None:
    fleet.record_statuses(conn, [StatusRecord("pos-1", DeviceState.OFFLINE, T0)])
    assert fleet.raise_due_alerts(conn, T0 + timedelta(minutes=1), POLICY) == []
    (raised,) = fleet.raise_due_alerts(conn, T0 + timedelta(minutes=6), POLICY)
    assert (raised.device, raised.state, raised.since) == ("pos-1", AlertState.OFFLINE, T0)
    assert fleet.raise_due_alerts(conn, T0 + timedelta(minutes=30), POLICY) == []
    assert [a.id for a in fleet.unpublished_alerts(conn)] == [raised.id]
    fleet.mark_alerts_published(conn, [raised.id], T0 + timedelta(minutes=6))
    assert fleet.unpublished_alerts(conn) == []
    assert fleet.device_records(conn, "pos-1")[0]["alert"] == {
        "id": raised.id,
        "state": "offline",
        "since": T0.isoformat(),
    }

    fleet.record_statuses(conn, [StatusRecord("pos-1", DeviceState.ONLINE, T0 + timedelta(minutes=40))])
    (back,) = fleet.raise_due_alerts(conn, T0 + timedelta(minutes=40), POLICY)
    assert back.state is AlertState.BACK and back.to_json()["seconds"] == 40 * 60
    assert fleet.device_records(conn, "pos-1")[0]["alert"] is None
    assert [a.state for a in fleet.list_alerts(conn, device="pos-1")] == [AlertState.BACK, AlertState.OFFLINE]


def test_a_disabled_device_raises_no_alert(conn: sqlite3.Connection) -> None:
    fleet.record_statuses(conn, [StatusRecord("pos-1", DeviceState.OFFLINE, T0)])
    fleet.set_enabled(conn, "pos-1", False, "admin", T0)
    assert fleet.raise_due_alerts(conn, T0 + timedelta(hours=2), POLICY) == []


# --- the registry -------------------------------------------------------------------------------------


def test_register_rotate_disable_enable_are_audited_and_keep_the_broker_credential(conn: sqlite3.Connection) -> None:
    record = fleet.register_device(conn, "pda-3", "handheld", "first-secret", "admin", T0, "pda-generic", "cold")
    assert (record["kind"], record["profile"], record["location"], record["enabled"]) == (
        "handheld",
        "pda-generic",
        "cold",
        True,
    )
    stamp = credential_stamp(conn, "pda-3")
    fleet.rotate_credentials(conn, "pda-3", "second-secret", "admin", T0 + timedelta(hours=1))
    assert credential_stamp(conn, "pda-3") not in (None, stamp)
    assert verify_device(conn, "pda-3", "first-secret") is None
    assert verify_device(conn, "pda-3", "second-secret") == "pda-3"
    assert fleet.device_records(conn, "pda-3")[0]["credentials_rotated_at"] == (T0 + timedelta(hours=1)).isoformat()
    assert conn.execute("SELECT COUNT(*) FROM broker_credentials WHERE device_id = 'pda-3'").fetchone()[0] == 1

    assert fleet.set_enabled(conn, "pda-3", False, "admin", T0)["enabled"] is False
    assert credential_stamp(conn, "pda-3") is None
    fleet.set_enabled(conn, "pda-3", False, "admin", T0)  # no change, no audit row
    fleet.set_enabled(conn, "pda-3", True, "admin", T0)
    actions = [row[0] for row in conn.execute("SELECT action FROM audit WHERE object = 'device:pda-3' ORDER BY seq")]
    assert actions == ["device.register", "device.rotate", "device.disable", "device.enable"]
    detail = json.loads(conn.execute("SELECT detail FROM audit WHERE action = 'device.register'").fetchone()[0])
    assert detail == {"kind": "handheld", "location": "cold", "profile": "pda-generic"}
    assert verify_chain(conn) == []


def test_registry_refusals_name_what_is_wrong(conn: sqlite3.Connection) -> None:
    with pytest.raises(DeviceExists):
        fleet.register_device(conn, "pos-1", "pos", "another-secret", "admin", T0)
    with pytest.raises(UnknownLocation):
        fleet.register_device(conn, "cold-9", "sensor", "sensor-secret", "admin", T0, None, "no-such-room")
    for act in (
        lambda: fleet.rotate_credentials(conn, "ghost", "ghost-secret", "admin", T0),
        lambda: fleet.set_enabled(conn, "ghost", False, "admin", T0),
        lambda: fleet.update_placement(conn, "ghost", {"location": "cold"}, "admin", T0),
        lambda: fleet.get_device_record(conn, "ghost"),
    ):
        with pytest.raises(UnknownDevice):
            act()
    with pytest.raises(UnknownLocation):
        fleet.update_placement(conn, "cold-1", {"location": "nowhere"}, "admin", T0)
    with pytest.raises(fleet.InvalidProfileId):
        fleet.update_placement(conn, "cold-1", {"profile": "Not A Profile"}, "admin", T0)


def test_placement_changes_only_what_is_given(conn: sqlite3.Connection) -> None:
    fleet.update_placement(conn, "cold-1", {"location": "cold", "profile": "mqtt-cold-sensor"}, "admin", T0)
    record = fleet.update_placement(conn, "cold-1", {"profile": None}, "admin", T0)
    assert (record["location"], record["profile"]) == ("cold", None)


def test_new_passwords_are_long_and_different() -> None:
    passwords = {fleet.new_device_password() for _ in range(50)}
    assert len(passwords) == 50 and all(len(p) >= 24 for p in passwords)


# --- the command line ---------------------------------------------------------------------------------


def test_device_commands_list_rotate_disable_enable_and_place(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edge.cli import app

    runner = CliRunner()
    env = {"STOREBOX_DATA_DIR": str(tmp_path)}

    def storebox(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, list(args), env=env)
        assert result.exit_code == code, result.output
        return result.output

    first = json.loads(storebox("device", "add", "cold-7", "--kind", "sensor"))["password"]
    conn = connect(tmp_path / "storebox.db")
    add_location(conn, "cold", "冷藏库", "cold room", "cold", "chilled")
    conn.close()
    assert json.loads(storebox("device", "set", "cold-7", "--location", "cold"))["location"] == "cold"
    second = json.loads(storebox("device", "rotate", "cold-7"))["password"]
    assert second != first
    assert json.loads(storebox("device", "disable", "cold-7")) == {"id": "cold-7", "enabled": False}
    (listed,) = json.loads(storebox("device", "list", "--json"))
    assert (listed["id"], listed["enabled"], listed["location"]) == ("cold-7", False, "cold")
    assert "DISABLED" in storebox("device", "list")
    storebox("device", "enable", "cold-7")
    conn = connect(tmp_path / "storebox.db", readonly=True)
    try:
        assert verify_device(conn, "cold-7", second) == "cold-7"
        assert verify_device(conn, "cold-7", first) is None
        actions = [r[0] for r in conn.execute("SELECT actor || ' ' || action FROM audit ORDER BY seq")]
    finally:
        conn.close()
    assert actions == ["cli device.update", "cli device.rotate", "cli device.disable", "cli device.enable"]

    assert "no such device" in storebox("device", "rotate", "ghost", code=2)
    assert "unknown location" in storebox("device", "set", "cold-7", "--location", "attic", code=2)
    assert "password" in storebox("device", "rotate", "cold-7", "--password", "short", code=2)


# --- docs/fleet.md ------------------------------------------------------------------------------------

DOC = Path(__file__).parents[3] / "docs" / "fleet.md"


def doc_blocks(info: str, doc: Path = DOC) -> list[str]:
    """The bodies of the fenced blocks of `doc` whose info string is `info` (e.g. "json alert:device-offline")."""
    pattern = re.compile(r"^```([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
    return [body for head, body in pattern.findall(doc.read_text("utf-8")) if head.strip() == info]


def test_the_offline_alert_in_the_guide_is_what_the_box_publishes() -> None:
    (text,) = doc_blocks("json alert:device-offline")
    example = json.loads(text)
    health = DeviceHealth("pos-1", "pos", DeviceState.OFFLINE, T0, T0 - timedelta(minutes=1), None, None)
    due = due_alert(health, T0 + timedelta(minutes=5), POLICY)
    assert due is not None
    alert = fleet.DeviceAlert(
        7, "pos-1", "pos", due.state, due.since, T0 + timedelta(minutes=5), due.message, due.message_en
    )
    assert example["data"] == alert.to_json()
    assert example["id"] == f"device-offline-{alert.id}" and set(example) == {"id", "ts", "data"}


def test_the_status_examples_in_the_guide_parse() -> None:
    examples = doc_blocks("text status") + doc_blocks("json status")
    assert len(examples) == 3
    assert {parse_status(body.encode()).state for body in examples} == set(DeviceState)  # type: ignore[union-attr]


def test_the_settings_example_in_the_guide_loads(tmp_path: Path) -> None:
    from edge.config import load_settings

    (toml,) = doc_blocks("toml settings")
    path = tmp_path / "storebox.toml"
    path.write_text(toml, "utf-8")
    settings = load_settings(path)
    assert settings.device_offline_alert_seconds == 600
    assert settings.device_silent_alert_seconds == {"sensor": 900, "scale": 3600}
