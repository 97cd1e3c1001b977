"""The embedded broker: device credentials, the topic ACL, last wills and the packet limit."""

from __future__ import annotations

import contextlib
import socket
import time

from hypothesis import given
from hypothesis import strategies as st

from edge.bus.broker import packet_limit
from edge.bus.topics import ack_topic, event_topic, status_topic, stock_topic
from edge.security.devices import set_device_enabled
from tests.edge.bus.conftest import PASSWORDS, STORE, WAIT, Box, Device, sale


def _string(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def raw_connect(box: Box, device: str, password: str, *, will: tuple[str, bytes] | None = None) -> socket.socket:
    """A bare MQTT 3.1.1 CONNECT on a socket, so a test can drop the connection without DISCONNECT."""
    flags = 0x02 | 0x80 | 0x40  # clean session, username, password
    payload = _string(f"{device}-raw".encode())
    if will is not None:
        flags |= 0x04 | 0x08 | 0x20  # will, QoS 1, retained
        payload += _string(will[0].encode()) + _string(will[1])
    payload += _string(device.encode()) + _string(password.encode())
    variable = _string(b"MQTT") + bytes([4, flags]) + (30).to_bytes(2, "big")
    body = variable + payload
    sock = socket.create_connection(("127.0.0.1", box.port), timeout=WAIT)
    sock.sendall(bytes([0x10]) + _remaining_length(len(body)) + body)
    connack = sock.recv(4)
    assert connack[:2] == b"\x20\x02" and connack[3] == 0, connack
    return sock


def test_an_anonymous_client_is_refused(box: Box) -> None:
    anonymous = Device(box, "pos-1", None)
    box.clients.append(anonymous)
    assert anonymous.connect(expect_ok=False).is_failure
    assert box.metric("storebox_mqtt_connects_total", result="anonymous") == 1


def test_a_wrong_password_or_unknown_device_is_refused_even_after_a_good_login(box: Box) -> None:
    box.device("pos-1", subscribe=False)
    for device, password in (("pos-1", "not-the-password"), ("ghost-1", "whatever-pass"), ("POS-1", "x")):
        client = Device(box, device, password, client_id=f"{device.lower()}-second")
        box.clients.append(client)
        assert client.connect(expect_ok=False).is_failure
    assert box.metric("storebox_mqtt_connects_total", result="bad_credentials") == 3


def test_a_disabled_device_is_refused(box: Box) -> None:
    box.loop.run(box.writer.execute(set_device_enabled, "pos-2", False))
    client = Device(box, "pos-2", PASSWORDS["pos-2"])
    box.clients.append(client)
    assert client.connect(expect_ok=False).is_failure


def test_a_device_cannot_publish_for_another_device_nor_into_the_stock_tree(box: Box) -> None:
    pos1, pos2 = box.device("pos-1"), box.device("pos-2")
    assert pos2.subscribe(f"storebox/{STORE}/stock/#") == [1]
    pos1.publish(event_topic(STORE, "pos-2", "sale"), b'{"id": "forged"}')
    pos1.publish(stock_topic(STORE, "MILK-1L"), b'{"sku": "MILK-1L", "on_hand": {"floor": 999}}')
    pos1.publish(ack_topic(STORE, "pos-2"), b'{"id": "forged", "ok": true}')
    pos1.send("sale", sale("mine", ("MILK-1L", 1)))  # the tap takes pos-1's publishes in order
    assert pos1.ack("mine")["ok"] is True

    assert box.metric("storebox_ingest_events_total", kind="sale") == 1
    assert box.metric("storebox_mqtt_denied_total", action="publish") == 3
    assert box.sql("SELECT COUNT(*) FROM documents WHERE device = 'pos-2'")[0][0] == 0
    stock = pos2.next_message(stock_topic(STORE, "MILK-1L"))  # the box's own update, not the forgery
    assert b"999" not in stock.payload
    assert pos2.queue(ack_topic(STORE, "pos-2")).empty()


def test_a_device_cannot_subscribe_to_another_devices_acks_or_everything(box: Box) -> None:
    pos1 = box.device("pos-1")
    assert pos1.subscribe(ack_topic(STORE, "pos-2")) == [0x80]
    assert pos1.subscribe(f"storebox/{STORE}/dev/+/ack") == [0x80]
    assert pos1.subscribe("#") == [0x80]
    assert pos1.subscribe(f"storebox/{STORE}/alert/#") == [1]


def test_a_device_taking_over_another_devices_persistent_session_does_not_receive_its_acks(box: Box) -> None:
    pos2 = box.device("pos-2", client_id="shared-id", clean_session=False)  # subscribes to pos-2's acks
    pos2.close()
    box.clients.remove(pos2)
    # amqtt hands the persistent session, subscriptions included, to whoever reconnects with its client id
    pos1 = box.device("pos-1", client_id="shared-id", clean_session=False)
    pos2b = box.device("pos-2", client_id="pos-2-other")
    pos2b.send("sale", sale("p2", ("MILK-1L", 1)))
    assert pos2b.ack("p2")["ok"] is True
    pos1.send("sale", sale("p1", ("MILK-1L", 1)))
    assert pos1.ack("p1")["ok"] is True

    assert box.metric("storebox_mqtt_denied_total", action="receive") >= 1
    assert pos1.queue(ack_topic(STORE, "pos-2")).empty()


def test_status_is_retained_and_the_last_will_says_offline(box: Box) -> None:
    watcher = box.device("pos-1", subscribe=False)
    assert watcher.subscribe(status_topic(STORE, "pos-1")) == [1]
    sock = raw_connect(box, "pos-1", PASSWORDS["pos-1"], will=(status_topic(STORE, "pos-1"), b"offline"))
    sock.close()  # no DISCONNECT: the broker publishes the will
    assert watcher.next_message(status_topic(STORE, "pos-1")).payload == b"offline"
    later = box.device("pos-1", client_id="pos-1-later", subscribe=False)
    assert later.subscribe(status_topic(STORE, "pos-1")) == [1]
    retained = later.next_message(status_topic(STORE, "pos-1"))
    assert retained.retain and retained.payload == b"offline"


def test_a_last_will_outside_the_devices_own_tree_is_refused(box: Box) -> None:
    client = Device(box, "pos-1", PASSWORDS["pos-1"], will_topic=stock_topic(STORE, "MILK-1L"))
    box.clients.append(client)
    assert client.connect(expect_ok=False).is_failure
    assert box.metric("storebox_mqtt_connects_total", result="bad_will") == 1


def test_a_packet_over_the_limit_drops_the_connection_and_others_carry_on(box: Box) -> None:
    pos1, pos2 = box.device("pos-1"), box.device("pos-2")
    huge = b"x" * (packet_limit(box.settings.mqtt_max_payload_bytes) + 1)
    pos1.client.publish(event_topic(STORE, "pos-1", "sale"), huge, qos=1)
    assert pos1.disconnected.wait(WAIT)
    assert box.metric("storebox_mqtt_oversized_packets_total") == 1
    assert box.metric("storebox_ingest_events_total", kind="sale") == 0

    pos2.send("sale", sale("still-here", ("MILK-1L", 1)))
    assert pos2.ack("still-here")["ok"] is True


def test_a_socket_that_never_sends_connect_is_closed_after_the_connect_timeout(box: Box) -> None:
    box.broker.connect_timeout = 0.3
    with socket.create_connection(("127.0.0.1", box.port), timeout=WAIT / 4) as idle:
        began = time.monotonic()
        assert idle.recv(1) == b""  # end of stream: the box closed it
        assert time.monotonic() - began < WAIT / 4


def test_the_packet_limit_reader_follows_packets_split_anywhere() -> None:
    """Framing is followed across any split of the byte stream; only an oversized packet is refused."""
    import asyncio

    from edge.bus.broker import PacketLimitReader

    small = bytes([0x30]) + _remaining_length(300) + b"a" * 300
    big = bytes([0x30]) + _remaining_length(5000) + b"b" * 2000
    refused: list[int] = []

    async def read_all(data: bytes, size: int) -> None:
        stream = asyncio.StreamReader()
        stream.feed_data(data)
        stream.feed_eof()
        reader = PacketLimitReader(stream, 1000, refused.append)
        with contextlib.suppress(asyncio.IncompleteReadError):
            while await reader.read(size):
                pass

    data = small * 3 + big
    for size in (1, 2, 7, 301, 1000):
        refused.clear()
        asyncio.run(read_all(data, size))
        assert refused == [5000], size


@given(
    lengths=st.lists(st.integers(0, 1500) | st.integers(1001, 2**28 - 1), min_size=1, max_size=8),
    sizes=st.lists(st.integers(1, 64), min_size=1, max_size=5),
)
def test_the_packet_limit_reader_refuses_exactly_the_first_oversized_packet(
    lengths: list[int], sizes: list[int]
) -> None:
    import asyncio

    from edge.bus.broker import PacketLimitReader

    limit = 1000
    data = b""
    for length in lengths:
        data += bytes([0x30]) + _remaining_length(length)
        if length > limit:
            data += b"z" * 64  # what follows an oversized header is never read
            break
        data += b"a" * length
    oversized = [n for n in lengths if n > limit][:1]
    refused: list[int] = []

    async def read_all() -> None:
        stream = asyncio.StreamReader()
        stream.feed_data(data)
        stream.feed_eof()
        reader = PacketLimitReader(stream, limit, refused.append)
        with contextlib.suppress(asyncio.IncompleteReadError):
            i = 0
            while await reader.read(sizes[i % len(sizes)]):
                i += 1

    asyncio.run(read_all())
    assert refused == oversized
