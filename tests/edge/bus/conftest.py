"""Real parts for bus tests: a migrated temp SQLite file, the one writer, the embedded broker on a free
port of 127.0.0.1 and the ingest consumer, running on an event loop in a background thread; devices are
real paho-mqtt 2.x clients. Waits are on queues and events with deadlines, never sleeps."""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
import pytest
from prometheus_client import CollectorRegistry

from edge.bus.broker import EmbeddedBroker
from edge.bus.ingest import IngestConsumer, make_stock_publisher
from edge.bus.topics import ack_topic, device_prefix
from edge.config import Settings
from edge.db import connect, migrate
from edge.finance.rulebook import rule_book
from edge.finance.setup import prepare_books
from edge.ledger.commands import DocType, Line, PostDocument
from edge.ledger.masterdata import add_item, add_location, add_store, add_supplier
from edge.ledger.posting import PostingContext
from edge.security.devices import create_device
from edge.writer import LedgerWriter
from tools.box_process import free_port

T = TypeVar("T")
STORE = "store-t"
WAIT = 10.0  # seconds any single wait may take before the test fails
PASSWORDS = {"pos-1": "pos-1-secret", "pos-2": "pos-2-secret", "pda-1": "pda-1-secret", "cold-1": "cold-1-secret"}
KINDS = {"pos-1": "pos", "pos-2": "pos", "pda-1": "handheld", "cold-1": "sensor"}
# (sku, barcode, opening stock on the floor)
ITEMS = (("MILK-1L", "6901234567892", 10), ("BREAD", "6901234567809", 5), ("EMPTY", "6901234567816", 0))


class LoopThread:
    """An asyncio loop in a thread, so that tests can block on paho clients while the box runs."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="box-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = WAIT) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()


def seed(db_path: Path) -> None:
    conn = connect(db_path)
    try:
        migrate(conn)
        conn.execute("BEGIN IMMEDIATE")
        prepare_books(conn)
        add_store(conn, STORE, "测试门店", is_local=True)
        add_location(conn, "floor", "卖场", "sales floor", "floor", "ambient")
        add_location(conn, "backroom", "后仓", "back room", "backroom", "ambient")
        add_supplier(conn, "sup-1", "供应商一")
        for sku, barcode, _ in ITEMS:
            add_item(conn, sku, sku.lower(), base_unit="pcs", price_fen=500, cost_fen=300, barcodes={barcode: "pcs"})
        for device, password in PASSWORDS.items():
            create_device(conn, device, KINDS[device], password)
        conn.execute("COMMIT")
    finally:
        conn.close()


@dataclass
class Box:
    """The running parts, and helpers to look inside."""

    settings: Settings
    loop: LoopThread
    writer: LedgerWriter
    broker: EmbeddedBroker
    ingest: IngestConsumer
    registry: CollectorRegistry
    clients: list[Device] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.broker.port

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        conn = connect(self.settings.db_path, readonly=True)
        try:
            return conn.execute(query, params).fetchall()
        finally:
            conn.close()

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def device(self, device_id: str, *, password: str | None = None, subscribe: bool = True, **kw: Any) -> Device:
        client = Device(self, device_id, PASSWORDS[device_id] if password is None else password, **kw)
        self.clients.append(client)
        client.connect()
        if subscribe:
            assert client.subscribe(ack_topic(STORE, device_id)) == [1]
        return client


def _posting_context() -> PostingContext:
    now = datetime.now(UTC)
    return PostingContext(now=now, business_date=now.date(), rules=rule_book())


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    settings = Settings(data_dir=tmp_path, store_id=STORE, mqtt_host="127.0.0.1", mqtt_port=free_port())
    seed(settings.db_path)
    loop = LoopThread()
    registry = CollectorRegistry()
    writer = LedgerWriter(settings.db_path, context=_posting_context, batch_max=settings.ingest_batch_max)

    def clock() -> datetime:
        return datetime.now(UTC)

    async def start() -> tuple[EmbeddedBroker, IngestConsumer]:
        writer.start()
        opening = [Line(barcode, qty) for _, barcode, qty in ITEMS if qty]
        result = await writer.post(PostDocument(key="opening", type=DocType.RECEIPT, lines=tuple(opening)))
        assert result.ok, result
        ingest = IngestConsumer(settings=settings, writer=writer, registry=registry, clock=clock)
        broker = EmbeddedBroker(
            settings, open_reader=lambda: connect(settings.db_path, readonly=True), ingest=ingest, registry=registry
        )
        await broker.start()
        ingest.attach(broker)
        await ingest.start()
        writer.add_listener(make_stock_publisher(broker, STORE, clock))
        return broker, ingest

    broker, ingest = loop.run(start())
    the_box = Box(settings, loop, writer, broker, ingest, registry)
    try:
        yield the_box
    finally:
        for client in the_box.clients:
            client.close()

        async def stop() -> None:
            await ingest.stop()
            await writer.close()
            await broker.stop()

        loop.run(stop())
        loop.close()


class Device:
    """A device on the bus: a paho client whose messages land in a queue."""

    def __init__(
        self,
        box: Box,
        device_id: str,
        password: str | None,
        *,
        client_id: str | None = None,
        will_topic: str | None = None,
        clean_session: bool = True,
    ) -> None:
        self.box = box
        self.id = device_id
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"{device_id}-test",
            protocol=mqtt.MQTTv311,
            clean_session=clean_session,
        )
        self.client.reconnect_delay_set(min_delay=0.05, max_delay=0.1)  # a refused client stops quickly
        if password is not None:
            self.client.username_pw_set(device_id, password)
        if will_topic is not None:
            self.client.will_set(will_topic, b"offline", qos=1, retain=True)
        self._topics: dict[str, queue.Queue[mqtt.MQTTMessage]] = {}
        self._lock = threading.Lock()
        self.connack: queue.Queue[Any] = queue.Queue()
        self.subacks: queue.Queue[list[Any]] = queue.Queue()
        self.disconnected = threading.Event()
        self.client.on_connect = lambda c, u, flags, rc, props: self.connack.put(rc)
        self.client.on_message = lambda c, u, msg: self.queue(msg.topic).put(msg)
        self.client.on_subscribe = lambda c, u, mid, codes, props: self.subacks.put(list(codes))
        self.client.on_disconnect = lambda *args: self.disconnected.set()

    def connect(self, *, expect_ok: bool = True) -> Any:
        self.client.connect("127.0.0.1", self.box.port, keepalive=30)
        self.client.loop_start()
        rc = self.connack.get(timeout=WAIT)
        if expect_ok:
            assert not rc.is_failure, rc
        return rc

    def subscribe(self, topic_filter: str) -> list[int]:
        self.client.subscribe(topic_filter, qos=1)
        return [code.value for code in self.subacks.get(timeout=WAIT)]

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(WAIT)

    def send(self, kind: str, payload: bytes | dict[str, Any]) -> None:
        """Publish an event on this device's own `evt/<kind>` topic (`kind` unchecked, to test garbage)."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()
        self.publish(f"{device_prefix(STORE, self.id)}evt/{kind}", body)

    def queue(self, topic: str) -> queue.Queue[mqtt.MQTTMessage]:
        """Messages received on `topic`, in order."""
        with self._lock:
            return self._topics.setdefault(topic, queue.Queue())

    def next_message(self, topic: str, timeout: float = WAIT) -> mqtt.MQTTMessage:
        return self.queue(topic).get(timeout=timeout)

    def ack(self, event_id: str | None, timeout: float = WAIT) -> dict[str, Any]:
        """The next ack for `event_id` (None: the next ack without an id)."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.next_message(ack_topic(STORE, self.id), max(0.0, deadline - time.monotonic()))
            body = json.loads(msg.payload)
            if body["id"] == event_id:
                return body

    def acks(self, count: int, timeout: float = WAIT) -> list[dict[str, Any]]:
        return [json.loads(self.next_message(ack_topic(STORE, self.id), timeout).payload) for _ in range(count)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def sale(event_id: str, *lines: tuple[str, int], **data: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "ts": "2024-05-01T09:30:00+08:00",
        "data": {"lines": [{"code": code, "qty": qty} for code, qty in lines], **data},
    }
