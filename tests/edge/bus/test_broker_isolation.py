"""The embedded broker keeps each device to what it may read: retained messages at connect and subscribe, the
messages queued for a persistent session, a supplier's device (own tree only), and a connect storm."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

from amqtt.contexts import Action
from prometheus_client import CollectorRegistry

from edge.bus.broker import BrokerMetrics, DeviceGate
from edge.bus.topics import (
    ack_topic,
    alert_topic,
    device_prefix,
    may_subscribe,
    status_topic,
    stock_topic,
    subscribe_allowed,
)
from edge.db import connect, migrate
from edge.security.devices import create_device
from tests.edge.bus.conftest import PASSWORDS, STORE, WAIT, Box, Device, sale

SUPPLIER, SUPPLIER_PASSWORD = "sup-acme", "sup-acme-secret"


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def received_topics(device: Device) -> set[str]:
    """Every topic on which `device` has received at least one message."""
    with device._lock:
        return {topic for topic, messages in device._topics.items() if not messages.empty()}


def echo(device: Device) -> None:
    """A barrier: publish in the device's own tree and wait for it to come back. Whatever the broker sent the
    device before (retained messages at connect and at its subscriptions) has arrived by then."""
    topic = f"{device_prefix(STORE, device.id)}echo"
    assert device.subscribe(topic) == [1]
    device.publish(topic, b"echo")
    assert device.next_message(topic).payload == b"echo"


def foreign(device: Device) -> set[str]:
    return {topic for topic in received_topics(device) if not topic.startswith(device_prefix(STORE, device.id))}


def retain_in_own_tree(device: Device, *topics: str) -> None:
    for topic in topics:
        device.client.publish(topic, b"secret of " + device.id.encode(), qos=1, retain=True).wait_for_publish(WAIT)


def test_a_connecting_device_receives_no_other_devices_retained_messages(box: Box) -> None:
    pos1 = box.device("pos-1", subscribe=False)
    assert pos1.subscribe(f"{device_prefix(STORE, 'pos-1')}#") == [1]  # a filter in the broker that matches them
    private = f"{device_prefix(STORE, 'pos-1')}private/cfg"
    retain_in_own_tree(pos1, private, status_topic(STORE, "pos-1"))
    assert pos1.next_message(private).retain is False  # pos-1 itself got it live; the broker now holds it
    wait_for(lambda: private in box.broker._broker.retained_messages, "the retained message")

    cold1 = box.device("cold-1", subscribe=False)  # subscribed to nothing
    echo(cold1)
    assert foreign(cold1) == set()

    # Its own subscriptions to the shared trees bring their retained messages, and nothing of pos-1's.
    assert cold1.subscribe(f"storebox/{STORE}/stock/#") == [1]
    assert cold1.subscribe(f"storebox/{STORE}/alert/#") == [1]
    echo(cold1)
    assert foreign(cold1) == set()


def test_the_stock_a_device_subscribes_to_comes_retained(box: Box) -> None:
    pos1 = box.device("pos-1")
    pos1.send("sale", sale("s1", ("MILK-1L", 1)))
    assert pos1.ack("s1")["ok"] is True
    wait_for(lambda: stock_topic(STORE, "MILK-1L") in box.broker._broker.retained_messages, "retained stock")

    pos2 = box.device("pos-2", subscribe=False)
    assert pos2.subscribe(f"storebox/{STORE}/stock/#") == [1]
    stock = pos2.next_message(stock_topic(STORE, "MILK-1L"))
    assert stock.retain and b"MILK-1L" in stock.payload


def test_a_device_taking_over_a_persistent_session_gets_none_of_its_retained_or_queued_messages(box: Box) -> None:
    pos2 = box.device("pos-2", client_id="shared-id", clean_session=False, subscribe=False)
    assert pos2.subscribe(f"{device_prefix(STORE, 'pos-2')}#") == [1]
    private = f"{device_prefix(STORE, 'pos-2')}private/cfg"
    retain_in_own_tree(pos2, private)
    assert pos2.next_message(private).payload == b"secret of pos-2"
    pos2.close()
    box.clients.remove(pos2)
    wait_for(lambda: box.broker.connected_devices() == set(), "pos-2 to be gone")

    # An ack for pos-2 while its session is away is queued in the session.
    other = box.device("pos-2", client_id="pos-2-other")
    other.send("sale", sale("p2", ("MILK-1L", 1)))
    assert other.ack("p2")["ok"] is True
    session = box.broker._broker.sessions["shared-id"][0]
    wait_for(lambda: session.retained_messages.qsize() > 0, "the ack queued for the offline session")

    # pos-1 reconnects with that client id: amqtt hands it the session, subscriptions and queue included.
    pos1 = box.device("pos-1", client_id="shared-id", clean_session=False)
    echo(pos1)
    assert foreign(pos1) == set()
    assert box.metric("storebox_mqtt_denied_total", action="receive") >= 2


def test_a_persistent_session_gets_its_own_retained_and_queued_messages_back(box: Box) -> None:
    pos2 = box.device("pos-2", client_id="pos-2-main", clean_session=False)
    private = f"{device_prefix(STORE, 'pos-2')}private/cfg"
    assert pos2.subscribe(f"{device_prefix(STORE, 'pos-2')}private/#") == [1]
    retain_in_own_tree(pos2, private)
    assert pos2.next_message(private).payload == b"secret of pos-2"
    pos2.close()
    box.clients.remove(pos2)
    wait_for(lambda: box.broker.connected_devices() == set(), "pos-2 to be gone")
    other = box.device("pos-2", client_id="pos-2-other")
    other.send("sale", sale("p2", ("MILK-1L", 1)))
    assert other.ack("p2")["ok"] is True
    session = box.broker._broker.sessions["pos-2-main"][0]
    wait_for(lambda: session.retained_messages.qsize() > 0, "the ack queued for the offline session")

    again = box.device("pos-2", client_id="pos-2-main", clean_session=False, subscribe=False)
    assert again.ack("p2")["ok"] is True  # queued while away
    assert again.next_message(private).payload == b"secret of pos-2"  # retained, for its own subscription


def test_twenty_devices_connecting_at_once_all_get_in_and_stay(box: Box) -> None:
    # Retained messages, and filters matching them, make amqtt's connect step wait while delivering them.
    pos1 = box.device("pos-1")
    for n in range(3):
        pos1.send("sale", sale(f"s{n}", ("MILK-1L", 1), ("BREAD", 1)))
        assert pos1.ack(f"s{n}")["ok"] is True
    watcher = box.device("pos-2", client_id="watcher", subscribe=False)
    assert watcher.subscribe(f"storebox/{STORE}/stock/#") == [1]
    retain_in_own_tree(watcher, status_topic(STORE, "pos-2"))

    devices = [
        Device(box, device, PASSWORDS[device], client_id=f"{device}-storm-{n}")
        for n in range(20)
        for device in (sorted(PASSWORDS)[n % len(PASSWORDS)],)
    ]
    box.clients.extend(devices)
    for n, device in enumerate(devices):
        # Each subscribes, as soon as it is in, to a filter of its own: new filters while others connect.
        unique = f"{device_prefix(STORE, device.id)}storm/{n}"
        device.client.on_connect = lambda c, u, flags, rc, props, q=device.connack, t=unique: (
            c.subscribe(t, qos=1),
            q.put(rc),
        )
    start = threading.Barrier(len(devices))
    failures: list[BaseException] = []

    def connect(device: Device) -> None:
        try:
            start.wait(WAIT)
            device.connect()
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=connect, args=(device,)) for device in devices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)
    assert failures == []
    for device in devices:
        assert device.subacks.get(timeout=WAIT) == [1]
    for n, device in enumerate(devices):
        topic = f"{device_prefix(STORE, device.id)}storm/{n}"
        device.publish(topic, b"still here")
        assert device.next_message(topic).payload == b"still here"
    for device in devices:  # none was dropped (and reconnected by paho) on the way
        assert not device.disconnected.is_set(), device.client._client_id
        assert device.connack.empty() and device.subacks.empty()
        assert foreign(device) == set()


def test_every_subscriber_gets_every_message_while_other_clients_subscribe(box: Box) -> None:
    pos1 = box.device("pos-1")
    filters = (f"storebox/{STORE}/stock/#", stock_topic(STORE, "MILK-1L"), f"storebox/{STORE}/stock/+")
    watchers = []
    for n, topic_filter in enumerate(filters):
        watcher = box.device("pos-2", client_id=f"watcher-{n}", subscribe=False)
        assert watcher.subscribe(topic_filter) == [1]
        watchers.append(watcher)
    churn = box.device("cold-1", subscribe=False)
    stop = threading.Event()

    def subscribe_and_unsubscribe() -> None:
        n = 0
        while not stop.is_set():
            topic = f"{device_prefix(STORE, 'cold-1')}churn/{n}"
            churn.client.subscribe(topic, qos=1)
            churn.client.unsubscribe(topic)
            n += 1

    thread = threading.Thread(target=subscribe_and_unsubscribe)
    thread.start()
    try:
        for n in range(9):
            pos1.send("sale", sale(f"s{n}", ("MILK-1L", 1)))
            assert pos1.ack(f"s{n}")["ok"] is True
    finally:
        stop.set()
        thread.join(WAIT)
    echo(pos1)  # the last stock update has been broadcast
    for watcher in watchers:
        echo(watcher)
    received = [watcher.queue(stock_topic(STORE, "MILK-1L")).qsize() for watcher in watchers]
    assert received == [9, 9, 9]


def add_supplier_device(box: Box) -> Device:
    box.loop.run(box.writer.execute(create_device, SUPPLIER, "supplier", SUPPLIER_PASSWORD))
    device = Device(box, SUPPLIER, SUPPLIER_PASSWORD)
    box.clients.append(device)
    device.connect()
    return device


def test_a_supplier_device_reads_only_its_own_tree(box: Box) -> None:
    pos1 = box.device("pos-1")
    pos1.send("sale", sale("s1", ("MILK-1L", 1)))
    assert pos1.ack("s1")["ok"] is True
    wait_for(lambda: stock_topic(STORE, "MILK-1L") in box.broker._broker.retained_messages, "retained stock")
    watcher = box.device("pos-2", subscribe=False)
    assert watcher.subscribe(f"storebox/{STORE}/alert/#") == [1]  # filters in the broker matching stock, alerts
    assert watcher.subscribe(f"storebox/{STORE}/stock/#") == [1]

    supplier = add_supplier_device(box)
    assert supplier.subscribe(f"storebox/{STORE}/stock/#") == [0x80]
    assert supplier.subscribe(stock_topic(STORE, "MILK-1L")) == [0x80]
    assert supplier.subscribe(f"storebox/{STORE}/alert/#") == [0x80]
    assert supplier.subscribe(alert_topic(STORE, "expiry")) == [0x80]
    assert supplier.subscribe(ack_topic(STORE, SUPPLIER)) == [1]
    assert supplier.subscribe(f"{device_prefix(STORE, SUPPLIER)}#") == [1]
    echo(supplier)
    assert foreign(supplier) == set()

    # A post after it connected: the store's devices get the stock update, the supplier does not.
    pos1.send("sale", sale("s2", ("MILK-1L", 1)))
    assert pos1.ack("s2")["ok"] is True
    assert b"MILK-1L" in watcher.next_message(stock_topic(STORE, "MILK-1L")).payload
    echo(supplier)
    assert foreign(supplier) == set()


def test_a_supplier_device_publishes_only_in_its_own_tree(box: Box) -> None:
    supplier = add_supplier_device(box)
    assert supplier.subscribe(ack_topic(STORE, SUPPLIER)) == [1]
    supplier.publish(stock_topic(STORE, "MILK-1L"), b"{}")
    supplier.publish(ack_topic(STORE, "pos-1"), b"{}")
    supplier.send("asn", {"id": "a1", "ts": "2024-06-01T08:30:00+08:00", "data": {}})
    assert supplier.ack("a1")["ok"] is False  # answered: its events still reach the box
    assert box.metric("storebox_mqtt_denied_total", action="publish") == 2


def test_the_gate_gives_the_store_topics_to_the_stores_devices_only(tmp_path: Path) -> None:
    db = tmp_path / "storebox.db"
    conn = connect(db)
    try:
        migrate(conn)
        with conn:
            create_device(conn, "pos-1", "pos", "pos-1-secret")
            create_device(conn, SUPPLIER, "supplier", SUPPLIER_PASSWORD)
            conn.execute("UPDATE devices SET kind = 'gone-kind' WHERE id = 'pos-1'")  # a kind the box does not know
            create_device(conn, "pos-2", "pos", "pos-2-secret")
    finally:
        conn.close()
    gate = DeviceGate(STORE, lambda: connect(db, readonly=True), BrokerMetrics(CollectorRegistry()))
    for device, password in (("pos-1", "pos-1-secret"), ("pos-2", "pos-2-secret"), (SUPPLIER, SUPPLIER_PASSWORD)):
        assert asyncio.run(gate.authenticate(device, password, None)), device
    for action in (Action.SUBSCRIBE, Action.RECEIVE):
        assert gate.allows("pos-2", stock_topic(STORE, "MILK-1L"), action)
        assert gate.allows("pos-2", f"storebox/{STORE}/alert/#", action)
        for device in (SUPPLIER, "pos-1", "never-seen"):
            assert not gate.allows(device, stock_topic(STORE, "MILK-1L"), action), device
            assert not gate.allows(device, f"storebox/{STORE}/alert/#", action), device
            assert gate.allows(device, ack_topic(STORE, device), action), device
    assert gate.allows(SUPPLIER, f"{device_prefix(STORE, SUPPLIER)}evt/asn", Action.PUBLISH)
    assert not gate.allows(SUPPLIER, stock_topic(STORE, "MILK-1L"), Action.PUBLISH)


def test_without_the_store_topics_a_device_subscribes_only_within_its_own_tree() -> None:
    own = device_prefix(STORE, SUPPLIER)
    for topic_filter in (f"{own}#", f"{own}ack", f"{own}+", f"{own}cmd/#"):
        assert may_subscribe(STORE, SUPPLIER, topic_filter, store_topics=False), topic_filter
    for topic_filter in (
        f"storebox/{STORE}/stock/#",
        stock_topic(STORE, "MILK-1L"),
        f"storebox/{STORE}/alert/#",
        f"storebox/{STORE}/+/#",
        f"storebox/{STORE}/#",
        "#",
        ack_topic(STORE, "pos-1"),
    ):
        assert not may_subscribe(STORE, SUPPLIER, topic_filter, store_topics=False), topic_filter
        assert may_subscribe(STORE, "pos-1", topic_filter) == topic_filter.startswith(
            (f"storebox/{STORE}/stock/", f"storebox/{STORE}/alert/", ack_topic(STORE, "pos-1"))
        ), topic_filter
    assert subscribe_allowed(STORE, SUPPLIER, store_topics=False) == (f"{own}#",)
