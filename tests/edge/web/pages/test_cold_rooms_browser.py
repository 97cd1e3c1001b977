"""A cold-room alarm reaches an open page without a reload: the demo's sensor (its own MQTT credentials) reports
the cold room out of band, the box raises alert/cold-room, the page shows the toast and the room's alarm."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.edge.web.pages.browser import log_in
from tools.box_process import BoxProcess

pytestmark = pytest.mark.browser


def report(box: BoxProcess, readings: list[tuple[datetime, float]]) -> None:
    """Publish `evt/temp` readings as the demo sensor cold-1 does (tools/sim), and wait for the box's acks."""
    login = next(d for d in box.demo_json()["devices"] if d["kind"] == "sensor")
    prefix = f"storebox/{box.store_id}/dev/{login['id']}"
    acked: set[str] = set()
    done = threading.Event()
    ids = [f"{login['id']}-{uuid.uuid4().hex}" for _ in readings]

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        ack = json.loads(message.payload)
        assert ack["ok"], ack
        acked.add(ack["id"])
        if acked >= set(ids):
            done.set()

    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"{login['id']}-test")
    client.username_pw_set(login["username"], login["password"])
    client.on_message = on_message
    client.connect("127.0.0.1", box.mqtt_port)
    client.subscribe(f"{prefix}/ack", qos=1)
    client.loop_start()
    try:
        for event_id, (ts, celsius) in zip(ids, readings, strict=True):
            payload = {"id": event_id, "ts": ts.isoformat(), "data": {"celsius": celsius, "location": "cold"}}
            client.publish(f"{prefix}/evt/temp", json.dumps(payload), qos=1).wait_for_publish(5)
        assert done.wait(10), f"acks: {acked}"
    finally:
        client.loop_stop()
        client.disconnect()


def test_a_cold_room_alarm_appears_on_the_open_page_without_a_reload(page: Any, demo_box: BoxProcess) -> None:
    log_in(page, demo_box, "manager", path="/cold-rooms/cold")
    page.wait_for_selector("#live-state.on")
    assert page.locator("#room-status [role=alert]").count() == 0
    page.evaluate("window.__marker = 1")  # gone if the page reloads
    now = datetime.now(UTC)
    # Out of band since 20 minutes by the readings' own times: past cold_chain_alarm_seconds (900) at once.
    report(demo_box, [(now - timedelta(minutes=20), 9.5), (now - timedelta(minutes=10), 10.25), (now, 9.0)])
    toast = page.locator("#toasts .toast.alert-cold-room")
    toast.wait_for(timeout=14_000)  # the box publishes the alarm at its next check (fleet_check_seconds, 10 s)
    assert toast.get_attribute("role") == "alert"
    assert "冷藏库" in toast.inner_text() and "温度过高" in toast.inner_text()  # the alarm's own words
    alarm = page.locator("#room-status [role=alert]")
    alarm.wait_for(timeout=10_000)
    assert "报警" in alarm.inner_text() and "过高" in alarm.inner_text()
    assert "9 ℃" in page.locator("#room-status").inner_text()
    assert page.evaluate("window.__marker") == 1
