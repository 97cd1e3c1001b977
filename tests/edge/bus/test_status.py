"""Device status, offline alerts, credential changes and cold-room alarms through the real embedded broker: paho
devices connect with a last will and drop their socket; the fleet's clock is the test's."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from edge.bus.status import AckCounter, FleetMonitor
from edge.bus.topics import alert_topic, status_topic
from edge.db import connect
from edge.devices import fleet
from edge.ledger.commands import DocType, Line, PostDocument
from edge.ledger.masterdata import add_location
from edge.security.devices import set_device_placement
from tests.edge.bus.conftest import PASSWORDS, STORE, WAIT, Box, Device, sale
from tests.edge.bus.test_broker import raw_connect

OFFLINE_AFTER = 60
SILENT_AFTER = 600
ALARM_AFTER = 600
CHECK_SECONDS = 600.0


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Fleet:
    box: Box
    monitor: FleetMonitor
    clock: Clock

    def check(self) -> Any:
        return self.box.loop.run(self.monitor.check())

    def online(self, device_id: str, **kw: Any) -> Device:
        """Connect with a last will `offline` (retained) on the device's status topic and say `online`."""
        device = self.box.device(device_id, will_topic=status_topic(STORE, device_id), subscribe=False, **kw)
        device.client.publish(status_topic(STORE, device_id), b"online", qos=1, retain=True).wait_for_publish(WAIT)
        self.wait_state(device_id, "online")
        return device

    def state(self, device_id: str) -> str | None:
        rows = self.box.sql("SELECT state FROM device_status WHERE device = ?", (device_id,))
        return str(rows[0][0]) if rows else None

    def wait_state(self, device_id: str, state: str) -> None:
        until(lambda: self.state(device_id) == state)

    def watcher(self, kind: str) -> Device:
        """A device listening on `alert/<kind>`."""
        watcher = self.box.device("pos-2", client_id=f"watch-{kind}", subscribe=False)
        assert watcher.subscribe(alert_topic(STORE, kind)) == [1]
        return watcher


def drop(box: Box, device: Device) -> None:
    """Kill the device's socket without a DISCONNECT, as a pulled cable or a crash would."""
    device.client.loop_stop()
    sock = device.client.socket()
    assert sock is not None
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    box.clients.remove(device)


def until(condition: Any) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def alert(watcher: Device, kind: str, timeout: float = WAIT) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(watcher.next_message(alert_topic(STORE, kind), timeout).payload)
    return body


@pytest.fixture
def fleet_box(box: Box) -> Iterator[Fleet]:
    clock = Clock()
    settings = box.settings.model_copy(
        update={
            "device_offline_alert_seconds": OFFLINE_AFTER,
            "device_silent_alert_seconds": {"sensor": SILENT_AFTER},
            "cold_chain_alarm_seconds": ALARM_AFTER,
            "fleet_check_seconds": CHECK_SECONDS,  # the test runs the checks
        }
    )

    async def start() -> FleetMonitor:
        monitor = FleetMonitor(
            settings,
            box.writer,
            box.broker,
            lambda: connect(settings.db_path, readonly=True),
            box.registry,
            clock,
            sessions=box.broker,
        )
        box.broker.on_status = monitor.on_status
        box.ingest.attach(AckCounter(box.broker, STORE, monitor.metrics))
        monitor.start()
        while monitor.checks == 0:  # the loop's first check, at start
            await asyncio.sleep(0)
        async with monitor._check_lock:  # ... has finished
            return monitor

    monitor = box.loop.run(start())
    yield Fleet(box, monitor, clock)
    box.loop.run(monitor.stop())


# --- status and last will -----------------------------------------------------------------------------


def test_a_device_that_drops_its_socket_is_recorded_offline_by_its_last_will(fleet_box: Fleet) -> None:
    box = fleet_box.box
    pos = fleet_box.online("pos-1")
    assert box.metric("storebox_device_online", device="pos-1", kind="pos") == 1
    drop(box, pos)
    fleet_box.wait_state("pos-1", "offline")
    record = box.loop.run(box.writer.execute(fleet.get_device_record, "pos-1"))
    assert [t["state"] for t in record["transitions"]] == ["offline", "online"]
    assert box.metric("storebox_device_online", device="pos-1", kind="pos") == 0
    assert box.metric("storebox_device_status_messages_total", device="pos-1", state="offline") == 1


def test_a_device_that_says_offline_and_disconnects_is_offline(fleet_box: Fleet) -> None:
    pda = fleet_box.online("pda-1")
    pda.client.publish(status_topic(STORE, "pda-1"), b"offline", qos=1, retain=True).wait_for_publish(WAIT)
    pda.close()
    fleet_box.box.clients.remove(pda)
    fleet_box.wait_state("pda-1", "offline")


def test_a_json_status_keeps_its_fields_and_garbage_is_counted_not_recorded(fleet_box: Fleet) -> None:
    box = fleet_box.box
    pda = box.device("pda-1", subscribe=False)
    pda.publish(status_topic(STORE, "pda-1"), b'{"state": "not-sure"}')
    pda.publish(status_topic(STORE, "pda-1"), b'{"state": "online", "fw": "3.2.1", "battery": 64}')
    fleet_box.wait_state("pda-1", "online")
    record = box.loop.run(box.writer.execute(fleet.get_device_record, "pda-1"))
    assert record["status"]["detail"] == {"fw": "3.2.1", "battery": 64}
    assert box.metric("storebox_device_status_messages_total", device="pda-1", state="invalid") == 1
    assert len(record["transitions"]) == 1


def test_a_device_cannot_report_the_status_of_another(fleet_box: Fleet) -> None:
    box = fleet_box.box
    pos = box.device("pos-1", subscribe=False)
    pos.publish(status_topic(STORE, "pos-2"), b"offline")  # refused by the ACL
    pos.publish(status_topic(STORE, "pos-1"), b"online")  # the tap takes pos-1's publishes in order
    fleet_box.wait_state("pos-1", "online")
    assert fleet_box.state("pos-2") is None


# --- offline alerts -----------------------------------------------------------------------------------


def test_an_offline_device_is_alerted_after_the_configured_time_and_again_when_back(fleet_box: Fleet) -> None:
    box = fleet_box.box
    watcher = fleet_box.watcher("device-offline")
    drop(box, fleet_box.online("pos-1"))
    fleet_box.wait_state("pos-1", "offline")

    fleet_box.clock.advance(OFFLINE_AFTER - 1)
    assert fleet_box.check() == ([], [])
    fleet_box.clock.advance(1)
    (raised,), _ = fleet_box.check()
    offline = alert(watcher, "device-offline")
    assert offline["id"] == f"device-offline-{raised.id}"
    assert offline["data"]["device"] == "pos-1" and offline["data"]["state"] == "offline"
    assert offline["data"]["device_kind"] == "pos" and offline["data"]["seconds"] == OFFLINE_AFTER
    assert "离线" in offline["data"]["message"] and "offline for 1 min" in offline["data"]["message_en"]
    assert fleet_box.check() == ([], [])  # raised once

    fleet_box.clock.advance(240)
    fleet_box.online("pos-1", client_id="pos-1-again")
    back = alert(watcher, "device-offline")  # at once, without waiting for the next check
    assert back["data"]["state"] == "back" and back["data"]["seconds"] == 300
    until(lambda: box.sql("SELECT COUNT(*) FROM device_alerts WHERE published_at IS NULL")[0][0] == 0)
    assert box.metric("storebox_fleet_alerts_total", alert="device-offline", state="back") == 1


def test_a_sensor_silent_longer_than_its_kind_allows_is_alerted(fleet_box: Fleet) -> None:
    box = fleet_box.box
    watcher = fleet_box.watcher("device-offline")
    sensor = box.device("cold-1")
    sensor.send("temp", {"id": "t1", "ts": "2024-05-01T09:30:00+08:00", "data": {"celsius": 3.5}})
    assert sensor.ack("t1")["ok"] is True
    fleet_box.check()
    age = box.metric("storebox_device_last_seen_age_seconds", device="cold-1", kind="sensor")
    assert 0 <= age < 60
    fleet_box.clock.advance(SILENT_AFTER + 60)
    fleet_box.check()
    silent = alert(watcher, "device-offline")
    assert (silent["data"]["device"], silent["data"]["state"]) == ("cold-1", "silent")
    assert watcher.queue(alert_topic(STORE, "device-offline")).empty()  # pos-1 and pda-1 are not watched for silence


# --- credentials --------------------------------------------------------------------------------------


def test_a_rotated_password_is_refused_at_once_and_its_live_connection_closed(fleet_box: Fleet) -> None:
    box = fleet_box.box
    old = box.device("pos-2", subscribe=False)  # the broker now remembers this password for a minute
    box.loop.run(box.writer.execute(fleet.rotate_credentials, "pos-2", "pos-2-new-secret", "admin", fleet_box.clock()))

    again = Device(box, "pos-2", PASSWORDS["pos-2"], client_id="pos-2-again")
    box.clients.append(again)
    assert again.connect(expect_ok=False).is_failure
    renewed = box.device("pos-2", password="pos-2-new-secret", client_id="pos-2-renewed", subscribe=False)

    fleet_box.check()
    assert old.disconnected.wait(WAIT)
    assert box.metric("storebox_device_disconnects_total", device="pos-2") == 1
    assert not renewed.disconnected.is_set()
    assert renewed.subscribe(f"storebox/{STORE}/dev/pos-2/ack") == [1]  # still served


def test_a_disabled_device_is_refused_and_disconnected_and_its_will_says_offline(fleet_box: Fleet) -> None:
    box = fleet_box.box
    pda = fleet_box.online("pda-1")
    box.loop.run(box.writer.execute(fleet.set_enabled, "pda-1", False, "admin", fleet_box.clock()))
    late = Device(box, "pda-1", PASSWORDS["pda-1"], client_id="pda-1-late")
    box.clients.append(late)
    assert late.connect(expect_ok=False).is_failure
    fleet_box.check()
    assert pda.disconnected.wait(WAIT)
    fleet_box.wait_state("pda-1", "offline")


# --- per-device metrics -------------------------------------------------------------------------------


def test_acks_are_counted_per_device_by_outcome(fleet_box: Fleet) -> None:
    box = fleet_box.box
    pos = box.device("pos-1")
    pos.send("sale", sale("s1", ("MILK-1L", 1)))
    pos.send("sale", sale("s2", ("NO-SUCH-ITEM", 1)))
    pos.send("sale", b"not json")
    assert [a["ok"] for a in pos.acks(3)] == [True, False, False]
    assert box.metric("storebox_device_acks_total", device="pos-1", outcome="ok") == 1
    assert box.metric("storebox_device_acks_total", device="pos-1", outcome="refused") == 2
    assert box.metric("storebox_device_acks_total", device="pos-2", outcome="ok") == 0


# --- cold rooms ---------------------------------------------------------------------------------------


def test_a_cold_room_out_of_band_too_long_raises_an_alarm_with_its_lots_and_an_end(fleet_box: Fleet) -> None:
    box = fleet_box.box
    box.loop.run(box.writer.execute(add_location, "cold", "冷藏库", "cold room", "cold", "chilled"))
    box.loop.run(box.writer.execute(_place, "cold-1", "cold"))
    receipt = PostDocument(
        key="cold-stock",
        type=DocType.RECEIPT,
        lines=(Line("MILK-1L", 6, price_fen=300, lot="L0601", expiry=date(2030, 6, 8)),),
        location="cold",
    )
    assert box.loop.run(box.writer.post(receipt)).ok
    watcher = fleet_box.watcher("cold-room")
    sensor = box.device("cold-1")
    start = fleet_box.clock().replace(microsecond=0)

    def temp(event_id: str, minutes: int, celsius: float) -> None:
        ts = (start + timedelta(minutes=minutes)).isoformat()
        sensor.send("temp", {"id": event_id, "ts": ts, "data": {"celsius": celsius}})
        assert sensor.ack(event_id)["ok"] is True

    temp("c1", 0, 3.0)
    temp("c2", 1, 7.5)
    fleet_box.check()
    temp("c3", 9, 9.0)
    fleet_box.clock.advance(10 * 60)
    assert fleet_box.check()[1] == []  # out of band for 9 minutes: not yet
    fleet_box.clock.advance(60)
    _, (sent,) = fleet_box.check()  # 10 minutes by the box's clock with no reading back in band
    alarm = alert(watcher, "cold-room")
    assert alarm["id"] == f"cold-room-{sent.excursion}-alarm"
    data = alarm["data"]
    assert (data["state"], data["room"], data["device"], data["direction"]) == ("alarm", "cold", "cold-1", "above")
    assert (data["peak_celsius"], data["band"]) == (9.0, {"min_celsius": 0.0, "max_celsius": 4.0})
    assert data["lots"] == [{"sku": "MILK-1L", "name": "milk-1l", "lot": "L0601", "expiry": "2030-06-08", "qty": 6}]

    temp("c4", 20, 2.5)
    fleet_box.check()
    end = alert(watcher, "cold-room")
    assert end["data"]["state"] == "ended" and end["data"]["ended_at"] == (start + timedelta(minutes=20)).isoformat()
    assert fleet_box.check() == ([], [])


def _place(conn: Any, device: str, location: str) -> None:
    set_device_placement(conn, device, profile=None, location=location)


def test_the_last_will_of_a_bare_socket_reaches_the_fleet(fleet_box: Fleet) -> None:
    """A client that is not paho (raw MQTT 3.1.1 CONNECT with a will) is taken the same way."""
    sock = raw_connect(fleet_box.box, "pda-1", PASSWORDS["pda-1"], will=(status_topic(STORE, "pda-1"), b"offline"))
    sock.close()
    fleet_box.wait_state("pda-1", "offline")


def test_the_status_examples_of_the_guide_are_recorded_as_they_say(fleet_box: Fleet) -> None:
    from tests.edge.devices.test_fleet import doc_blocks

    pos = fleet_box.box.device("pos-1", subscribe=False)
    examples = doc_blocks("text status") + doc_blocks("json status")
    for body in examples:
        pos.publish(status_topic(STORE, "pos-1"), body.encode())
        expected = "offline" if "offline" in body else "online"
        fleet_box.wait_state("pos-1", expected)
    assert fleet_box.box.metric("storebox_device_status_messages_total", device="pos-1", state="invalid") == 0


def test_a_device_that_leaves_without_a_will_is_offline_after_a_check_period(fleet_box: Fleet) -> None:
    box = fleet_box.box
    pos = box.device("pos-1", subscribe=False)  # no last will
    pos.publish(status_topic(STORE, "pos-1"), b"online")
    fleet_box.wait_state("pos-1", "online")
    pos.close()
    box.clients.remove(pos)
    until(lambda: "pos-1" not in box.broker.connected_devices())
    fleet_box.check()
    fleet_box.clock.advance(CHECK_SECONDS - 1)
    fleet_box.check()
    assert fleet_box.state("pos-1") == "online"  # a device may reconnect within the grace
    fleet_box.clock.advance(1)
    fleet_box.check()
    fleet_box.wait_state("pos-1", "offline")


def test_after_a_restart_a_device_that_does_not_come_back_is_offline(fleet_box: Fleet) -> None:
    box = fleet_box.box
    online = [fleet.StatusRecord(d, fleet.DeviceState.ONLINE, fleet_box.clock()) for d in ("pda-1", "pos-2")]
    box.loop.run(box.writer.execute(fleet.record_statuses, online))  # as the box knew them before it stopped
    fleet_box.check()
    pda = fleet_box.online("pda-1")  # it comes back within the grace: no trace
    fleet_box.clock.advance(CHECK_SECONDS)
    fleet_box.check()
    fleet_box.wait_state("pos-2", "offline")  # it does not come back
    fleet_box.check()
    assert fleet_box.state("pda-1") == "online"
    record = box.loop.run(box.writer.execute(fleet.get_device_record, "pda-1"))
    assert [t["state"] for t in record["transitions"]] == ["online"]
    drop(box, pda)
    fleet_box.wait_state("pda-1", "offline")
