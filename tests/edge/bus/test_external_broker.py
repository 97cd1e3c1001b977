"""The box against an external broker (edge/bus/external.py): Mosquitto from Debian, started by the test on a
free port of 127.0.0.1 with the files tools/mosquitto writes, and real paho MQTT 5 devices.

Tests that need Mosquitto carry the marker `mosquitto` (`make test` installs the package; `make test-fast`
leaves them out); the pure ones run everywhere.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from prometheus_client import CollectorRegistry

from edge.bus.broker_credentials import set_broker_credential, verify_mosquitto_hash
from edge.bus.external import ExternalBroker, reply_topic_allowed, status_filter
from edge.bus.ingest import IngestConsumer, make_stock_publisher
from edge.bus.topics import ack_topic, device_prefix, event_topic, status_topic, stock_topic
from edge.config import Settings, load_settings
from edge.db import connect
from edge.ledger.commands import DocType, Line, PostDocument
from edge.security.devices import create_device, set_device_enabled
from edge.writer import LedgerWriter
from tests.edge.bus.conftest import ITEMS, PASSWORDS, STORE, WAIT, LoopThread, _posting_context, free_port, sale, seed
from tools.mosquitto.__main__ import cli as mosquitto_cli
from tools.mosquitto.files import (
    ListenerTls,
    MosquittoFiles,
    render_acl,
    write_files,
    write_logins,
    write_password_file,
)

BOX_USER, BOX_PASSWORD = "storebox_box", "box-secret"
NOT_AUTHORIZED = 135  # MQTT 5 reason code 0x87
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def deadline_wait(predicate: Any, what: str, timeout: float = WAIT) -> None:
    """Poll `predicate` until true; fail naming `what` after `timeout` seconds."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# --- Mosquitto ------------------------------------------------------------------------------------------


@dataclass
class Mosquitto:
    """One Mosquitto process on `files`; stop() and start() again keep its persistence directory."""

    files: MosquittoFiles
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.files.conf)], stdout=log, stderr=log)
        proc = self.proc

        def listening() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"mosquitto exited {proc.returncode}: {self.log.read_text()[-2000:]}")
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port)) == 0

        deadline_wait(listening, "mosquitto to listen")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()  # SIGTERM: mosquitto saves its persistence file and exits
            proc.wait(WAIT)

    def reload(self) -> None:
        """SIGHUP: mosquitto reads its password file and ACL again."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)


@pytest.fixture
def mosquitto_binary() -> str:
    if not os.access(MOSQUITTO, os.X_OK):
        pytest.skip(f"mosquitto not found at {MOSQUITTO}: `make mosquitto` installs the Debian package")
    return MOSQUITTO


# --- devices --------------------------------------------------------------------------------------------


class V5Device:
    """A device on Mosquitto: a paho MQTT 5 client whose messages land in queues by topic."""

    def __init__(self, port: int, device_id: str, password: str | None, *, client_id: str | None = None) -> None:
        self.port = port
        self.id = device_id
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or f"{device_id}-v5",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.reconnect_delay_set(1, 2)
        if password is not None:
            self.client.username_pw_set(device_id, password)
        self._topics: dict[str, queue.Queue[mqtt.MQTTMessage]] = {}
        self._lock = threading.Lock()
        self.connacks: queue.Queue[ReasonCode] = queue.Queue()
        self.subacks: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.pubacks: dict[int, ReasonCode] = {}
        self.client.on_connect = lambda c, u, flags, rc, props: self.connacks.put(rc)
        self.client.on_subscribe = lambda c, u, mid, codes, props: self.subacks.put(list(codes))
        self.client.on_message = lambda c, u, msg: self.queue(msg.topic).put(msg)
        self.client.on_publish = lambda c, u, mid, rc, props: self.pubacks.__setitem__(mid, rc)

    def connect(self, *, expect_ok: bool = True, clean_start: bool = True, will: bool = False) -> ReasonCode:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 0 if clean_start else 3600
        if will:
            self.client.will_set(status_topic(STORE, self.id), b"offline", qos=1, retain=True)
        self.client.connect("127.0.0.1", self.port, keepalive=30, clean_start=clean_start, properties=properties)
        self.client.loop_start()
        rc = self.connacks.get(timeout=WAIT)
        if expect_ok:
            assert not rc.is_failure, rc
        return rc

    def subscribe(self, topic_filter: str) -> list[int]:
        self.client.subscribe(topic_filter, qos=1)
        return [code.value for code in self.subacks.get(timeout=WAIT)]

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        response_topic: str | None = None,
        correlation: bytes | None = None,
        retain: bool = False,
    ) -> int:
        """Publish at QoS 1 and return the broker's PUBACK reason code (0: accepted)."""
        properties = Properties(PacketTypes.PUBLISH)
        if response_topic is not None:
            properties.ResponseTopic = response_topic
        if correlation is not None:
            properties.CorrelationData = correlation
        info = self.client.publish(topic, payload, qos=1, retain=retain, properties=properties)
        info.wait_for_publish(WAIT)
        deadline_wait(lambda: info.mid in self.pubacks, "PUBACK")
        return int(self.pubacks[info.mid].value)

    def send(self, event: dict[str, Any], **kw: Any) -> int:
        return self.publish(event_topic(STORE, self.id, "sale"), json.dumps(event).encode(), **kw)

    def queue(self, topic: str) -> queue.Queue[mqtt.MQTTMessage]:
        with self._lock:
            return self._topics.setdefault(topic, queue.Queue())

    def next_message(self, topic: str, timeout: float = WAIT) -> mqtt.MQTTMessage:
        return self.queue(topic).get(timeout=timeout)

    def ack(self, event_id: str, topic: str | None = None) -> dict[str, Any]:
        """The next ack for `event_id` on `topic` (default: the device's ack topic)."""
        end = time.monotonic() + WAIT
        while True:
            msg = self.next_message(topic or ack_topic(STORE, self.id), max(0.0, end - time.monotonic()))
            body: dict[str, Any] = json.loads(msg.payload)
            if body["id"] == event_id:
                return body

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --- the box against Mosquitto --------------------------------------------------------------------------


@dataclass
class ExternalBox:
    settings: Settings
    mosquitto: Mosquitto
    loop: LoopThread
    writer: LedgerWriter
    ingest: IngestConsumer
    registry: CollectorRegistry
    broker: ExternalBroker | None = None
    statuses: queue.Queue[tuple[str, bytes]] = field(default_factory=queue.Queue)
    devices: list[V5Device] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.mosquitto.port

    def start_client(self) -> ExternalBroker:
        """Connect the box to Mosquitto (a new client with the same id: a restarted box) and wait until ready."""

        async def start() -> ExternalBroker:
            broker = ExternalBroker(self.settings, ingest=self.ingest, registry=CollectorRegistry())
            broker.on_status = lambda device, payload: self.statuses.put((device, payload))
            # Acks go out through it as soon as the broker hands over the events queued for the box.
            self.broker = broker
            await broker.start()
            assert await broker.wait_ready(WAIT), "the box did not connect to mosquitto"
            return broker

        return self.loop.run(start())

    async def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1, correlation: bytes | None = None
    ) -> None:
        """The ingest and the stock publisher publish through the box's current client (the box restarts)."""
        if self.broker is None:
            raise RuntimeError("the box's client is stopped")
        await self.broker.publish(topic, payload, retain=retain, qos=qos, correlation=correlation)

    def stop_client(self) -> None:
        broker = self.broker
        if broker is not None:
            self.loop.run(broker.stop())
        self.broker = None

    def device(self, device_id: str, *, password: str | None = None, ack: bool = True, **kw: Any) -> V5Device:
        device = V5Device(self.port, device_id, PASSWORDS[device_id] if password is None else password)
        self.devices.append(device)
        device.connect(**kw)
        if ack:
            assert device.subscribe(ack_topic(STORE, device_id)) == [1]
        return device

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
        conn = connect(self.settings.db_path, readonly=True)
        try:
            return conn.execute(query, params).fetchall()
        finally:
            conn.close()


def write_mosquitto(settings: Settings, directory: Path) -> MosquittoFiles:
    files, missing = write_files(settings, directory, bind="127.0.0.1", run_as=getpass.getuser(), log_dest="stderr")
    assert missing == []
    return files


def external_settings(tmp_path: Path, port: int) -> Settings:
    return Settings(
        data_dir=tmp_path,
        store_id=STORE,
        mqtt_url=f"mqtt://{BOX_USER}:{BOX_PASSWORD}@127.0.0.1:{port}",
        mqtt_client_id="storebox-test-box",
    )


def seed_with_broker_credentials(settings: Settings) -> None:
    seed(settings.db_path)
    conn = connect(settings.db_path)
    try:
        with conn:
            for device, password in PASSWORDS.items():
                set_broker_credential(conn, device, password)
    finally:
        conn.close()


@pytest.fixture
def ext(tmp_path: Path, mosquitto_binary: str) -> Iterator[ExternalBox]:
    port = free_port()
    settings = external_settings(tmp_path, port)
    seed_with_broker_credentials(settings)
    mosquitto = Mosquitto(write_mosquitto(settings, tmp_path / "mosquitto"), port, tmp_path / "mosquitto.log")
    mosquitto.start()
    loop = LoopThread()
    registry = CollectorRegistry()
    writer = LedgerWriter(settings.db_path, context=_posting_context, batch_max=settings.ingest_batch_max)

    def clock() -> datetime:
        return datetime.now(UTC)

    async def start() -> IngestConsumer:
        writer.start()
        opening = [Line(barcode, qty) for _, barcode, qty in ITEMS if qty]
        result = await writer.post(PostDocument(key="opening", type=DocType.RECEIPT, lines=tuple(opening)))
        assert result.ok, result
        return IngestConsumer(settings=settings, writer=writer, registry=registry, clock=clock)

    ingest = loop.run(start())
    box = ExternalBox(settings, mosquitto, loop, writer, ingest, registry)
    ingest.attach(box)

    async def start_ingest() -> None:
        await ingest.start()
        writer.add_listener(make_stock_publisher(box, STORE, clock))

    box.start_client()

    loop.run(start_ingest())
    try:
        yield box
    finally:
        for device in box.devices:
            device.close()

        async def stop() -> None:
            await ingest.stop()
            await writer.close()

        loop.run(stop())
        box.stop_client()
        loop.close()
        mosquitto.stop()


# --- MQTT 5 request / response --------------------------------------------------------------------------


@pytest.mark.mosquitto
def test_mqtt5_device_gets_its_ack_on_its_response_topic_with_its_correlation_data(ext: ExternalBox) -> None:
    pos = ext.device("pos-1")
    reply = f"{ack_topic(STORE, 'pos-1')}/rpc"
    assert pos.subscribe(reply) == [1]

    assert pos.send(sale("r-1", ("6901234567892", 2)), response_topic=reply, correlation=b"\x00corr-1\xff") == 0
    msg = pos.next_message(reply)
    assert msg.properties.CorrelationData == b"\x00corr-1\xff"
    body = json.loads(msg.payload)
    assert (body["id"], body["ok"], body["code"]) == ("r-1", True, "ok")
    doc = ext.sql("SELECT device, command_key FROM documents WHERE id = ?", (body["document"],))[0]
    assert tuple(doc) == ("pos-1", "dev:pos-1:r-1")

    # Without a response topic the ack goes to the ack topic, as for a 3.1.1 device; r-1's went only to `reply`.
    assert pos.send(sale("r-2", ("6901234567892", 1))) == 0
    first = json.loads(pos.next_message(ack_topic(STORE, "pos-1")).payload)
    assert (first["id"], first["ok"]) == ("r-2", True)

    # A resent request gets the first answer again, on the response topic it names this time.
    assert pos.send(sale("r-1", ("6901234567892", 2)), response_topic=reply, correlation=b"again") == 0
    again = pos.next_message(reply)
    assert again.properties.CorrelationData == b"again" and json.loads(again.payload) == body
    assert ext.sql("SELECT COUNT(*) FROM documents WHERE command_key = 'dev:pos-1:r-1'")[0][0] == 1


@pytest.mark.mosquitto
def test_a_response_topic_outside_the_devices_ack_tree_is_not_used(ext: ExternalBox) -> None:
    watcher = ext.device("pda-1", ack=False)
    assert watcher.subscribe(f"storebox/{STORE}/stock/#") == [1]
    pos = ext.device("pos-1")
    stock = stock_topic(STORE, "MILK-1L")

    # The box may write on stock topics; a device must not make it write an ack there.
    assert pos.send(sale("x-1", ("MILK-1L", 1)), response_topic=stock, correlation=b"c1") == 0
    msg = pos.next_message(ack_topic(STORE, "pos-1"))
    assert json.loads(msg.payload)["id"] == "x-1" and msg.properties.CorrelationData == b"c1"
    # What the stock watcher sees on the stock topic is stock, not the ack.
    assert json.loads(watcher.next_message(stock).payload)["sku"] == "MILK-1L"
    assert ext.broker is not None
    assert ext.broker.metrics.reply_topics_refused._value.get() == 1


# --- the ACL and the password file ----------------------------------------------------------------------


@pytest.mark.mosquitto
def test_the_acl_refuses_publishing_as_another_device(ext: ExternalBox) -> None:
    pos = ext.device("pos-1")
    assert pos.publish(event_topic(STORE, "pos-2", "sale"), json.dumps(sale("f-1", ("MILK-1L", 1))).encode()) == (
        NOT_AUTHORIZED
    )
    assert pos.publish(status_topic(STORE, "pos-2"), b"offline", retain=True) == NOT_AUTHORIZED
    assert pos.publish(stock_topic(STORE, "MILK-1L"), b"{}", retain=True) == NOT_AUTHORIZED
    # Mosquitto passes one publisher's messages on in order: once pos-1's own event is acked, the forged one
    # would have reached the box before it.
    assert pos.send(sale("own-1", ("MILK-1L", 1))) == 0
    assert pos.ack("own-1")["ok"] is True
    assert ext.ingest.events == 1
    assert ext.sql("SELECT COUNT(*) FROM documents WHERE device = 'pos-2'")[0][0] == 0

    # Nor does it read another device's acks: Mosquitto 2.0 grants the subscription but delivers nothing
    # (the box publishes pos-2's ack before pos-1's next one, and pos-1 sees only its own).
    assert pos.subscribe(ack_topic(STORE, "pos-2")) == [1]
    pos2 = ext.device("pos-2")
    assert pos2.send(sale("p2-1", ("BREAD", 1))) == 0
    assert pos2.ack("p2-1")["ok"] is True
    assert pos.send(sale("own-2", ("MILK-1L", 1))) == 0
    assert pos.ack("own-2")["ok"] is True
    assert pos.queue(ack_topic(STORE, "pos-2")).empty()


@pytest.mark.mosquitto
def test_only_enabled_registered_devices_with_the_right_password_log_in(ext: ExternalBox) -> None:
    refused = V5Device(ext.port, "pos-1", "wrong")
    ext.devices.append(refused)
    assert refused.connect(expect_ok=False).value == NOT_AUTHORIZED
    anonymous = V5Device(ext.port, "pos-1", None)
    ext.devices.append(anonymous)
    assert anonymous.connect(expect_ok=False).value == NOT_AUTHORIZED
    ext.device("pos-2", ack=False).close()

    # Disable pos-2 on the box, write the password file again, reload mosquitto: pos-2 is out, pos-1 still in.
    conn = connect(ext.settings.db_path)
    try:
        with conn:
            set_device_enabled(conn, "pos-2", False)
    finally:
        conn.close()
    assert write_password_file(ext.settings, ext.mosquitto.files.passwd) == []
    ext.mosquitto.reload()
    deadline_wait(lambda: _login(ext.port, "pos-2") == NOT_AUTHORIZED, "mosquitto to drop pos-2")
    assert _login(ext.port, "pos-1") == 0


@pytest.mark.mosquitto
def test_a_suppliers_device_reads_only_its_own_tree_and_the_stores_devices_read_stock(ext: ExternalBox) -> None:
    conn = connect(ext.settings.db_path)
    try:
        with conn:
            create_device(conn, "sup-acme", "supplier", "sup-acme-secret")
            set_broker_credential(conn, "sup-acme", "sup-acme-secret")
    finally:
        conn.close()
    write_logins(ext.settings, ext.mosquitto.files.directory)
    ext.mosquitto.reload()
    deadline_wait(lambda: _login(ext.port, "sup-acme", "sup-acme-secret") == 0, "mosquitto to let sup-acme in")

    watcher = ext.device("pos-2", ack=False)
    assert watcher.subscribe(f"storebox/{STORE}/stock/#") == [1]
    pos = ext.device("pos-1")
    assert pos.send(sale("s-1", ("MILK-1L", 1))) == 0
    assert pos.ack("s-1")["ok"] is True
    assert b"MILK-1L" in watcher.next_message(stock_topic(STORE, "MILK-1L")).payload  # a store device reads stock

    supplier = V5Device(ext.port, "sup-acme", "sup-acme-secret")
    ext.devices.append(supplier)
    supplier.connect()
    assert supplier.subscribe(ack_topic(STORE, "sup-acme")) == [1]
    supplier.subscribe(f"storebox/{STORE}/stock/#")  # Mosquitto 2.0 grants it, and delivers nothing on it
    supplier.subscribe(f"storebox/{STORE}/alert/#")
    assert pos.send(sale("s-2", ("MILK-1L", 1))) == 0
    assert pos.ack("s-2")["ok"] is True
    assert watcher.next_message(stock_topic(STORE, "MILK-1L")).payload
    # The box answers the supplier after it published that stock, over the same connection: had the supplier
    # been allowed the stock (retained at its subscription, or live), it would have arrived first.
    event = {"id": "asn-1", "ts": "2024-06-01T08:30:00+08:00", "data": {}}
    assert supplier.publish(event_topic(STORE, "sup-acme", "asn"), json.dumps(event).encode()) == 0
    assert supplier.ack("asn-1")["ok"] is False
    assert supplier.queue(stock_topic(STORE, "MILK-1L")).empty()


def _login(port: int, device_id: str, password: str | None = None) -> int:
    password = PASSWORDS[device_id] if password is None else password
    device = V5Device(port, device_id, password, client_id=f"{device_id}-probe-{time.monotonic_ns()}")
    try:
        return int(device.connect(expect_ok=False).value)
    finally:
        device.close()


@pytest.mark.mosquitto
def test_broker_hashes_are_the_ones_mosquitto_passwd_writes(tmp_path: Path, mosquitto_binary: str) -> None:
    path = tmp_path / "passwd"
    subprocess.run([MOSQUITTO_PASSWD, "-c", "-b", str(path), "pos-1", "pässwörd"], check=True, timeout=WAIT)
    stored = path.read_text().strip().split(":", 1)[1]
    assert verify_mosquitto_hash(stored, "pässwörd")
    assert not verify_mosquitto_hash(stored, "password")


# --- reconnect, offline replay --------------------------------------------------------------------------


@pytest.mark.mosquitto
def test_the_box_reconnects_after_the_broker_restarts_and_posts_each_event_once(ext: ExternalBox) -> None:
    pos = ext.device("pos-1", clean_start=False)
    for i in range(1, 4):
        assert pos.send(sale(f"e-{i}", ("MILK-1L", 1))) == 0
        assert pos.ack(f"e-{i}")["ok"] is True
    broker = ext.broker
    assert broker is not None and broker.running

    ext.mosquitto.stop()
    deadline_wait(lambda: not broker.running, "the box to notice the broker is gone")
    ext.mosquitto.start()
    deadline_wait(lambda: broker.running, "the box to reconnect", timeout=3 * WAIT)
    deadline_wait(pos.client.is_connected, "the device to reconnect", timeout=3 * WAIT)

    # The device resends e-3 (it did not trust the ack it saw) and sends new events: each is posted once.
    assert pos.send(sale("e-3", ("MILK-1L", 1))) == 0
    assert pos.ack("e-3")["ok"] is True
    assert pos.send(sale("e-4", ("MILK-1L", 1))) == 0
    assert pos.ack("e-4")["ok"] is True
    assert _documents(ext, "e-") == {f"dev:pos-1:e-{i}": 1 for i in range(1, 5)}
    assert _on_hand(ext, "MILK-1L") == 10 - 4


@pytest.mark.mosquitto
def test_events_sent_while_the_box_is_away_are_queued_by_the_broker_and_posted_once(ext: ExternalBox) -> None:
    pos = ext.device("pos-1", clean_start=False)
    assert pos.send(sale("q-0", ("MILK-1L", 1))) == 0
    assert pos.ack("q-0")["ok"] is True

    # The box stops (its session stays at the broker); the broker itself restarts meanwhile.
    ext.stop_client()
    for i in range(1, 51):
        assert pos.send(sale(f"q-{i}", ("BREAD", 1) if i <= 5 else ("MILK-1L", 1))) == 0
    ext.mosquitto.stop()
    ext.mosquitto.start()
    deadline_wait(pos.client.is_connected, "the device to reconnect", timeout=3 * WAIT)
    ext.start_client()

    # Every queued event reaches the box once; the device's session gets the acks.
    acks = [pos.ack(f"q-{i}") for i in range(1, 51)]
    assert sum(a["ok"] for a in acks) == 5 + 9 and {a["code"] for a in acks} == {"ok", "insufficient_stock"}
    counts = _documents(ext, "q-")
    assert counts["dev:pos-1:q-0"] == 1 and all(n == 1 for n in counts.values())
    assert _on_hand(ext, "BREAD") == 0  # 5 on hand, 5 sold
    # MILK-1L: 10 on hand; q-0 and 9 of q-6..q-50 post, the rest are refused for stock (an answer, not a loss).
    assert _on_hand(ext, "MILK-1L") == 0


def _documents(ext: ExternalBox, prefix: str) -> dict[str, int]:
    rows = ext.sql(
        "SELECT command_key, COUNT(*) FROM documents WHERE command_key LIKE ? GROUP BY command_key",
        (f"dev:pos-1:{prefix}%",),
    )
    return {row[0]: row[1] for row in rows}


def _on_hand(ext: ExternalBox, sku: str) -> int:
    rows = ext.sql("SELECT COALESCE(SUM(qty), 0) FROM balances WHERE sku = ?", (sku,))
    return int(rows[0][0])


# --- device status --------------------------------------------------------------------------------------


@pytest.mark.mosquitto
def test_a_devices_retained_status_and_last_will_reach_the_box(ext: ExternalBox) -> None:
    pda = ext.device("pda-1", ack=False, will=True)
    assert pda.publish(status_topic(STORE, "pda-1"), b"online", retain=True) == 0
    assert _next_status(ext, "pda-1") == b"online"

    # The device drops off with its will: the broker publishes "offline", retained.
    pda.client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"))
    pda.client.loop_stop()
    assert _next_status(ext, "pda-1") == b"offline"

    # A box that (re)connects learns every device's current status from the retained messages.
    ext.stop_client()
    ext.start_client()
    assert _next_status(ext, "pda-1") == b"offline"
    # ...and so does any reader allowed to see it: the device itself, on its own tree.
    again = ext.device("pda-1", ack=False)
    assert again.subscribe(status_topic(STORE, "pda-1")) == [1]
    msg = again.next_message(status_topic(STORE, "pda-1"))
    assert (msg.payload, msg.retain) == (b"offline", True)


def _next_status(ext: ExternalBox, device: str) -> bytes:
    end = time.monotonic() + WAIT
    while True:
        got, payload = ext.statuses.get(timeout=max(0.0, end - time.monotonic()))
        if got == device:
            return payload


# --- TLS ----------------------------------------------------------------------------------------------


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for localhost / 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem)."""
    import ipaddress
    from datetime import timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)

    def build(subject: str, issuer: str, public: Any, signer: Any, *, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = build("storebox test CA", "storebox test CA", ca_key.public_key(), ca_key, ca=True)
    cert = build("localhost", "storebox test CA", key.public_key(), ca_key, ca=False)
    paths = (directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@pytest.mark.mosquitto
def test_the_box_connects_over_mqtts_and_checks_the_brokers_certificate(
    tmp_path: Path, mosquitto_binary: str, caplog: pytest.LogCaptureFixture
) -> None:
    ca, cert, key = _certificates(tmp_path)
    port = free_port()
    plain = external_settings(tmp_path, port)
    seed_with_broker_credentials(plain)
    files, _ = write_files(
        plain,
        tmp_path / "mosquitto",
        bind="127.0.0.1",
        run_as=getpass.getuser(),
        tls=ListenerTls(cert, key),
    )
    mosquitto = Mosquitto(files, port, tmp_path / "mosquitto.log")
    mosquitto.start()
    url = f"mqtts://{BOX_USER}:{BOX_PASSWORD}@localhost:{port}"
    loop = LoopThread()
    events: queue.Queue[tuple[str, Any]] = queue.Queue()

    class Sink:
        def offer(self, device: str, kind: str, topic: str, payload: bytes, **kw: Any) -> None:
            events.put((device, kw["correlation"]))

    async def connect(settings: Settings, registry: CollectorRegistry) -> ExternalBroker:
        broker = ExternalBroker(settings, ingest=Sink(), registry=registry, reconnect_delay=(1, 1))
        await broker.start()
        return broker

    try:
        # A CA that did not sign the broker's certificate: the box does not connect, and says why.
        (tmp_path / "other").mkdir()
        other_ca = _certificates(tmp_path / "other")[0]
        registry = CollectorRegistry()
        wrong = loop.run(connect(plain.model_copy(update={"mqtt_url": url, "mqtt_ca_file": other_ca}), registry))
        failures = {"result": "unreachable"}
        deadline_wait(lambda: registry.get_sample_value("storebox_mqtt_external_connects_total", failures), "a failure")
        assert not wrong.running
        assert "certificate verify failed" in caplog.text
        loop.run(wrong.stop())

        box = loop.run(connect(plain.model_copy(update={"mqtt_url": url, "mqtt_ca_file": ca}), CollectorRegistry()))
        assert loop.run(box.wait_ready(WAIT)) and box.running
        pos = V5Device(port, "pos-1", PASSWORDS["pos-1"])
        pos.client.tls_set(ca_certs=str(ca))
        pos.connect()
        try:
            assert pos.send(sale("t-1", ("MILK-1L", 1)), correlation=b"tls") == 0
            assert events.get(timeout=WAIT) == ("pos-1", b"tls")
        finally:
            pos.close()
        loop.run(box.stop())
    finally:
        loop.close()
        mosquitto.stop()


# --- the composition root -------------------------------------------------------------------------------


@pytest.mark.mosquitto
@pytest.mark.slow
def test_storebox_with_mqtt_url_runs_against_the_external_broker(tmp_path: Path, mosquitto_binary: str) -> None:
    from edge.app import StoreBox
    from edge.bus.external import ExternalBroker as External

    port = free_port()
    settings = external_settings(tmp_path, port)
    seed_with_broker_credentials(settings)
    mosquitto = Mosquitto(write_mosquitto(settings, tmp_path / "mosquitto"), port, tmp_path / "mosquitto.log")
    mosquitto.start()
    loop = LoopThread()
    box = StoreBox(settings)
    pos: V5Device | None = None
    try:
        loop.run(box.start(), timeout=3 * WAIT)
        assert isinstance(box.broker, External)
        assert box.broker.on_status is not None  # the fleet takes device status from the external broker too
        deadline_wait(lambda: box.health()["broker"] is True, "health to report the broker")
        pos = V5Device(port, "pos-1", PASSWORDS["pos-1"])
        pos.connect()
        assert pos.subscribe(ack_topic(STORE, "pos-1")) == [1]
        assert pos.send(sale("app-1", ("BREAD", 1))) == 0
        ack = pos.ack("app-1")
        assert (ack["ok"], ack["code"]) == (False, "insufficient_stock")  # no opening stock in this box

        mosquitto.stop()
        deadline_wait(lambda: box.health()["broker"] is False, "health to report the broker gone")
    finally:
        if pos is not None:
            pos.close()
        loop.run(box.stop(), timeout=3 * WAIT)
        loop.close()
        mosquitto.stop()


# --- pure: which response topics are honoured -----------------------------------------------------------


def test_reply_topics_are_the_devices_ack_topic_or_below_it() -> None:
    own = ack_topic(STORE, "pos-1")
    assert reply_topic_allowed(STORE, "pos-1", own)
    assert reply_topic_allowed(STORE, "pos-1", f"{own}/rpc/42")
    for topic in (
        ack_topic(STORE, "pos-2"),
        f"{ack_topic(STORE, 'pos-2')}/x",
        f"{device_prefix(STORE, 'pos-1')}evt/sale",
        f"{device_prefix(STORE, 'pos-1')}status",
        f"{device_prefix(STORE, 'pos-1')}cmd/beep",
        stock_topic(STORE, "MILK-1L"),
        f"{own}x",
        f"{own}/",
        f"{own}//x",
        f"{own}/+",
        f"{own}/#",
        "",
    ):
        assert not reply_topic_allowed(STORE, "pos-1", topic), topic
    assert status_filter(STORE) == f"storebox/{STORE}/dev/+/status"


@given(st.text(max_size=120))
def test_a_reply_topic_is_never_outside_the_devices_ack_tree(topic: str) -> None:
    own = ack_topic(STORE, "pos-1")
    if reply_topic_allowed(STORE, "pos-1", topic):
        assert topic == own or (topic.startswith(own + "/") and "+" not in topic and "#" not in topic)


def test_the_external_broker_needs_a_url(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mqtt_url"):
        ExternalBroker(Settings(data_dir=tmp_path), ingest=_NoIngest())


class _NoIngest:
    def offer(self, device: str, kind: str, topic: str, payload: bytes, **kw: Any) -> None:
        raise AssertionError("no events expected")


def test_publish_before_start_is_refused(tmp_path: Path) -> None:
    broker = ExternalBroker(external_settings(tmp_path, 1883), ingest=_NoIngest())
    assert not broker.running
    with pytest.raises(RuntimeError, match="not running"):
        asyncio.run(broker.publish("storebox/x", b""))


# --- docs/mqtt5.md: every example holds -----------------------------------------------------------------

DOC = Path(__file__).parents[3] / "docs" / "mqtt5.md"
_FENCE = re.compile(r"^ *```(\w+)([^\n]*)\n(.*?)^ *```", re.MULTILINE | re.DOTALL)


def _blocks(language: str) -> list[tuple[str, str]]:
    found = _FENCE.findall(DOC.read_text("utf-8"))
    return [(info.strip(), textwrap.dedent(body)) for lang, info, body in found if lang == language]


def test_the_acl_in_the_guide_is_the_one_the_tool_writes() -> None:
    ((_, shown),) = [block for block in _blocks("text") if block[0] == "acl"]
    acl = render_acl("store-001", "storebox_box", ["pda-1", "pos-1"])  # and sup-acme, a supplier's device
    written = [line for line in acl.splitlines() if line and line[0] != "#"]
    assert shown.splitlines() == written


def test_the_settings_in_the_guide_exist_with_their_environment_names() -> None:
    rows = re.findall(r"^\| `(\w+)` \| `(STOREBOX_\w+)` \|", DOC.read_text("utf-8"), re.MULTILINE)
    assert {name for name, _ in rows} == {"mqtt_url", "mqtt_ca_file", "mqtt_client_id"}
    for name, env in rows:
        assert name in Settings.model_fields and env == f"STOREBOX_{name.upper()}"


@pytest.mark.mosquitto
def test_the_setup_commands_in_the_guide_work_on_a_fresh_install_followed_literally(
    tmp_path: Path, mosquitto_binary: str
) -> None:
    from typer.testing import CliRunner

    from edge.cli import app

    ((_, toml),) = _blocks("toml")
    data_dir = tmp_path / "var-lib-storebox"  # nothing there yet: a box that has never run
    config = tmp_path / "storebox.toml"
    config.write_text(toml.replace("/var/lib/storebox", str(data_dir)))
    settings = load_settings(config)
    assert settings.store_id == "store-001" and settings.mqtt_url is not None and settings.data_dir == data_dir
    _, cert, key = _certificates(tmp_path)
    etc = tmp_path / "etc"
    lines = [line for _, body in _blocks("sh") for line in body.splitlines() if line.strip()]
    assert {line.split()[0] for line in lines} == {"storebox", "python", "systemctl"}
    ran = []
    for line in lines:
        argv = shlex.split(
            line.replace("/etc/storebox/storebox.toml", str(config))
            .replace("/etc/mosquitto/storebox", str(etc))
            .replace("/etc/mosquitto/certs/box.pem", str(cert))
            .replace("/etc/mosquitto/certs/box.key", str(key))
        )
        if argv[0] == "systemctl":  # Mosquitto's service: started and reloaded by the other tests here
            continue
        if argv[0] == "storebox":
            result = CliRunner().invoke(app, argv[1:])
            assert result.exit_code == 0, (line, result.output)
        else:
            assert argv[:3] == ["python", "-m", "tools.mosquitto"]
            assert mosquitto_cli(argv[3:]) == 0, line
        ran.append(argv[1] if argv[0] == "storebox" else argv[3])
    assert ran == ["migrate", "device", "write", "device", "passwd", "write"]
    conf = (etc / "storebox.conf").read_text()
    assert "listener 8883 0.0.0.0" in conf and f"certfile {cert}" in conf  # the last command: TLS
    users = [line.split(":", 1)[0] for line in (etc / "storebox.passwd").read_text().splitlines()]
    assert users == ["storebox_box", "pda-1", "pos-1"]  # the devices the guide adds log in
    acl = (etc / "storebox.acl").read_text()
    assert "user pda-1\n" in acl and "user pos-1\n" in acl


@pytest.mark.mosquitto
def test_the_mqtt5_device_in_the_guide_gets_its_ack_with_its_correlation_data(ext: ExternalBox) -> None:
    ((_, source),) = _blocks("python")
    source = source.replace('"store-001", "pos-1", "…"', f'"{STORE}", "pos-1", "{PASSWORDS["pos-1"]}"')
    source = source.replace('client.connect("127.0.0.1", 1883)', f'client.connect("127.0.0.1", {ext.port})')
    printed: list[tuple[Any, ...]] = []
    namespace: dict[str, Any] = {"print": lambda *args: printed.append(args)}
    exec(compile(source, str(DOC), "exec"), namespace)
    client = namespace["client"]
    try:
        assert printed and printed[0][:3] == (True, True, "ok"), printed
    finally:
        client.disconnect()
        client.loop_stop()
    assert ext.sql("SELECT COUNT(*) FROM documents WHERE device = 'pos-1'")[0][0] == 1
