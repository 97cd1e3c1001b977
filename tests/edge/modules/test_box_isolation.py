"""Isolation in a real `storebox serve --demo` process: the shipped modules are installed and running, a module
that hangs is installed from the command line while the box runs, and a POS keeps selling over MQTT while the bad
module is killed at its timeout and disabled with an alert on alert/module. Then a crashing upgrade and a rollback,
all without restarting the box."""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
import pytest

from tests.edge.modules.modkit import wait_for, write_module
from tools.box_process import BoxProcess

pytestmark = pytest.mark.slow

HANG = """
def handle(ctx, event):
    while True:
        pass

def judge(ctx, decision):
    return None
"""

CRASH = """
def handle(ctx, event):
    raise ZeroDivisionError("divided by zero in the module")

def judge(ctx, decision):
    return None
"""


class Pos:
    """A POS over MQTT that also listens to the module alerts."""

    def __init__(self, box: BoxProcess, device: str, password: str) -> None:
        self.topic = f"storebox/{box.store_id}/dev/{device}"
        self.acks: dict[str, dict[str, Any]] = {}
        self.alerts: queue.Queue[dict[str, Any]] = queue.Queue()
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{device}-iso", clean_session=True)
        self.client.username_pw_set(device, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.connect("127.0.0.1", box.mqtt_port, keepalive=10)
        self.client.loop_start()
        assert self.ready.wait(30)

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        client.subscribe([(f"{self.topic}/ack", 1), (f"storebox/{self.topic.split('/')[1]}/alert/module", 1)])

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        if msg.topic.endswith("/alert/module"):
            self.alerts.put(body)
        else:
            with self.lock:
                self.acks[body["id"]] = body

    def sell(self, code: str) -> str:
        event_id = uuid.uuid4().hex
        payload = {"id": event_id, "ts": "2026-12-06T10:00:00+08:00", "data": {"lines": [{"code": code, "qty": 1}]}}
        self.client.publish(f"{self.topic}/evt/sale", json.dumps(payload), qos=1)
        return event_id

    def acked(self, ids: list[str]) -> bool:
        with self.lock:
            return all(i in self.acks for i in ids)

    def alert(self, timeout: float = 60) -> dict[str, Any]:
        return self.alerts.get(timeout=timeout)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _worker_of(box: BoxProcess, folder: str) -> bool:
    """Is a worker of this module version running under the box (the host noticed the install)?"""
    assert box.proc is not None
    for child in psutil.Process(box.proc.pid).children(recursive=True):
        try:
            if any(folder in part for part in child.cmdline()):
                return True
        except psutil.Error:
            continue
    return False


def _rows(box: BoxProcess, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(f"file:{box.data_dir / 'storebox.db'}?mode=ro", uri=True)
    try:
        return [tuple(r) for r in db.execute(sql).fetchall()]
    finally:
        db.close()


def test_a_hanging_then_crashing_module_never_stops_a_running_box_from_posting(tmp_path: Path) -> None:
    box = BoxProcess(tmp_path / "box", extra_env={"STOREBOX_MODULES_REFRESH_SECONDS": "0.2"})
    box.start()
    pos = None
    try:
        shipped = _rows(box, "SELECT name, version, state FROM modules ORDER BY name")
        assert shipped == [
            ("near-expiry", 1, "enabled"),
            ("new-product-burst", 1, "enabled"),
            ("recipe-loss", 1, "enabled"),
        ]
        demo = box.demo_json()
        password = next(d["password"] for d in demo["devices"] if d["id"] == "pos-1")
        codes = [item["barcode"] for item in demo["items"][:5]]
        pos = Pos(box, "pos-1", password)

        budget = {"timeout_seconds": 2, "memory_mb": 256, "cpu_seconds": 30}
        source = write_module(tmp_path / "src", "spinner", 1, HANG, budget=budget)
        installed = json.loads(box.cli("modules", "install", str(source)).stdout)
        assert installed == {"name": "spinner", "version": 1, "previous": 0, "changed": True}
        wait_for(lambda: _rows(box, "SELECT COUNT(*) FROM module_history WHERE name = 'spinner'") == [(1,)], "install")
        wait_for(lambda: _worker_of(box, "modules/spinner/1-"), "the box to start the module's worker")
        sent: list[str] = []
        for n in range(40):  # sales keep coming while the module spins, is killed and disabled
            sent.append(pos.sell(codes[n % len(codes)]))
        wait_for(lambda: pos.acked(sent), "every sale acked", timeout=60)
        alert = pos.alert()
        assert alert["data"]["module"] == "spinner" and alert["data"]["kind"] == "timeout"
        assert wait_for(
            lambda: _rows(box, "SELECT state FROM modules WHERE name = 'spinner'") == [("failed",)], "failed"
        )

        # A crashing upgrade, then a rollback to the (fixed-by-then) previous version: no restart in between.
        crash = write_module(tmp_path / "src", "spinner", 2, CRASH)
        assert json.loads(box.cli("modules", "install", str(crash)).stdout)["previous"] == 1
        wait_for(lambda: _worker_of(box, "modules/spinner/2-"), "the box to start version 2")
        more = [pos.sell(codes[0]) for _ in range(10)]
        wait_for(lambda: pos.acked(more), "the sales after the upgrade acked", timeout=60)
        alert = pos.alert()
        assert alert["data"]["version"] == 2 and alert["data"]["kind"] == "raised"
        assert "divided by zero" in alert["data"]["message_en"]
        rolled = json.loads(box.cli("modules", "rollback", "spinner").stdout)
        assert (rolled["from_version"], rolled["to_version"]) == (2, 1)
        assert rolled["state"] == "disabled"  # v1 had failed: it comes back disabled, not spinning again

        assert all(pos.acks[i]["ok"] for i in sent + more)
        posted = _rows(box, "SELECT COUNT(*) FROM documents WHERE type = 'sale' AND command_key LIKE 'dev:pos-1:%'")
        assert posted == [(50,)]
        assert box.proc is not None and box.proc.poll() is None  # the same process all along
        assert box.terminate() == 0
    finally:
        if pos is not None:
            pos.close()
        box.stop()
