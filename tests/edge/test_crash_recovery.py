"""Kill -9 of the box in the middle of a stream of sales from several devices; restart; devices resend
what they had no ack for: every event is posted exactly once and `ledger verify` is clean."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
import pytest

from tools.box_process import BoxProcess

pytestmark = pytest.mark.slow

EVENTS_PER_DEVICE = 120
DEVICES = ("pos-1", "pos-2", "pos-3")


class Terminal:
    """A POS that keeps each event until it sees the ack with its id, and resends otherwise."""

    def __init__(self, box: BoxProcess, device: str, password: str, codes: list[str]) -> None:
        self.box = box
        self.device = device
        self.events = {uuid.uuid4().hex: codes[i % len(codes)] for i in range(EVENTS_PER_DEVICE)}
        self.order = list(self.events)
        self.acks: dict[str, dict[str, object]] = {}
        self.ack_count = 0
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{device}-crash", clean_session=True)
        self.client.username_pw_set(device, password)
        self.client.reconnect_delay_set(min_delay=0.05, max_delay=0.5)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.on_message = self._on_message
        self.topic = f"storebox/{box.store_id}/dev/{device}"

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object) -> None:
        if not getattr(rc, "is_failure", False):
            client.subscribe(f"{self.topic}/ack", qos=1)
            self.connected.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        ack = json.loads(msg.payload)
        with self.lock:
            self.ack_count += 1
            self.acks.setdefault(ack["id"], ack)

    def connect(self) -> None:
        self.client.connect_async("127.0.0.1", self.box.mqtt_port, keepalive=5)
        self.client.loop_start()

    def unacked(self) -> list[str]:
        with self.lock:
            return [i for i in self.order if i not in self.acks]

    def send(self, event_id: str) -> None:
        payload = {
            "id": event_id,
            "ts": "2026-11-25T10:00:00+08:00",
            "data": {"lines": [{"code": self.events[event_id], "qty": 1}]},
        }
        self.client.publish(f"{self.topic}/evt/sale", json.dumps(payload), qos=1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_kill_9_mid_stream_then_resend_posts_every_event_exactly_once(tmp_path: Path) -> None:
    box = BoxProcess(tmp_path / "box")
    box.data_dir.mkdir(parents=True)
    passwords = {}
    for device in DEVICES:
        if device != "pos-1":
            passwords[device] = json.loads(box.cli("device", "add", device, "--kind", "pos").stdout)["password"]
    box.start()
    try:
        demo = box.demo_json()
        passwords["pos-1"] = next(d["password"] for d in demo["devices"] if d["id"] == "pos-1")
        codes = [item["barcode"] for item in demo["items"][:20]]
        db = sqlite3.connect(f"file:{box.data_dir / 'storebox.db'}?mode=ro", uri=True)
        opening = dict(
            db.execute(
                "SELECT b.code, SUM(bal.qty) FROM barcodes b JOIN balances bal ON bal.sku = b.sku"
                f" WHERE bal.location = 'floor' AND b.code IN ({','.join('?' * len(codes))}) GROUP BY b.code",
                codes,
            ).fetchall()
        )
        db.close()
        terminals = [Terminal(box, d, passwords[d], codes) for d in DEVICES]
        for t in terminals:
            t.connect()
        _wait(lambda: all(t.connected.is_set() for t in terminals), 30, "devices to connect")

        # Stream events from every device; kill -9 the box once some have been acked.
        stream_stop = threading.Event()

        def stream(t: Terminal) -> None:
            for event_id in t.order:
                if stream_stop.is_set():
                    return
                t.send(event_id)
                time.sleep(0.002)

        streams = [threading.Thread(target=stream, args=(t,)) for t in terminals]
        for s in streams:
            s.start()
        _wait(lambda: sum(len(t.acks) for t in terminals) >= 60, 60, "first acks")
        assert box.proc is not None
        children = psutil.Process(box.proc.pid).children()
        # The writer, and the demo's scenario modules each in a worker process of its own (docs/modules.md).
        writers = [c for c in children if "edge.modules.worker" not in " ".join(c.cmdline())]
        assert len(writers) == 1, children
        box.kill()
        # The writer sees its pipe close and exits on its own, never left holding the database; so do the module
        # workers (end of their stdin): nothing is left running.
        _wait(
            lambda: all(not c.is_running() or c.status() == psutil.STATUS_ZOMBIE for c in children),
            30,
            "writer and module workers to exit",
        )
        stream_stop.set()
        for s in streams:
            s.join()
        acked_before = {t.device: dict(t.acks) for t in terminals}
        assert sum(len(a) for a in acked_before.values()) < EVENTS_PER_DEVICE * len(DEVICES)

        box.start()
        _wait(lambda: all(t.connected.is_set() for t in terminals), 30, "devices to reconnect")
        # The delivery contract: resend everything without an ack, until all are acked.
        deadline = time.monotonic() + 120
        while any(t.unacked() for t in terminals):
            assert time.monotonic() < deadline, "events never acked"
            for t in terminals:
                for event_id in t.unacked():
                    t.send(event_id)
            time.sleep(0.5)
        # Resend some that were acked before the crash: the box answers with the first result.
        for t in terminals:
            for event_id in list(acked_before[t.device])[:5]:
                with t.lock:
                    t.acks.pop(event_id)
                t.send(event_id)
        _wait(lambda: not any(t.unacked() for t in terminals), 30, "acks of resent events")
        for t in terminals:
            for event_id, first in acked_before[t.device].items():
                assert t.acks[event_id]["document"] == first["document"]
            t.close()

        db = sqlite3.connect(f"file:{box.data_dir / 'storebox.db'}?mode=ro", uri=True)
        all_ids = {f"dev:{t.device}:{i}" for t in terminals for i in t.order}
        posted = db.execute(
            "SELECT command_key, COUNT(*) FROM documents WHERE type = 'sale' AND command_key LIKE 'dev:pos-%'"
            " GROUP BY command_key"
        ).fetchall()
        assert {key for key, _ in posted} == all_ids
        assert all(count == 1 for _, count in posted)
        assert all(t.acks[i]["ok"] for t in terminals for i in t.order)
        sold: dict[str, int] = {}
        for t in terminals:
            for code in t.events.values():
                sold[code] = sold.get(code, 0) + 1
        now = dict(
            db.execute(
                "SELECT b.code, SUM(bal.qty) FROM barcodes b JOIN balances bal ON bal.sku = b.sku"
                f" WHERE bal.location = 'floor' AND b.code IN ({','.join('?' * len(codes))}) GROUP BY b.code",
                codes,
            ).fetchall()
        )
        db.close()
        for code in sold:
            assert now[code] == opening[code] - sold[code], code
        assert box.terminate() == 0
        verify = box.cli("ledger", "verify", check=False)
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        box.stop()


def test_sigterm_mid_stream_finishes_what_is_in_flight_and_exits_zero(tmp_path: Path) -> None:
    box = BoxProcess(tmp_path / "box")
    box.start()
    try:
        demo = box.demo_json()
        password = next(d["password"] for d in demo["devices"] if d["id"] == "pos-1")
        codes = [item["barcode"] for item in demo["items"][:20]]
        terminal = Terminal(box, "pos-1", password, codes)
        terminal.connect()
        _wait(terminal.connected.is_set, 30, "device to connect")
        for event_id in terminal.order:
            terminal.send(event_id)
        _wait(lambda: len(terminal.acks) >= 20, 60, "first acks")
        assert box.terminate() == 0
        terminal.close()
        acked = {f"dev:pos-1:{i}" for i, ack in terminal.acks.items() if ack["ok"]}
        db = sqlite3.connect(f"file:{box.data_dir / 'storebox.db'}?mode=ro", uri=True)
        posted = {row[0] for row in db.execute("SELECT command_key FROM documents WHERE device = 'pos-1'")}
        db.close()
        assert acked <= posted  # nothing acknowledged is missing after a clean stop
        verify = box.cli("ledger", "verify", check=False)
        assert verify.returncode == 0, verify.stdout
    finally:
        box.stop()
