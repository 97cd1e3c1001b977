"""The embedded MQTT broker (amqtt, MQTT 3.1.1) with device credentials, topic ACL and the ingest tap.

Three amqtt plugins adapt the broker to the box; each only hands over to a plain object:

- `DeviceAuthPlugin`: a client connects with its device id as username and its password, checked by
  `edge.security.devices.authenticate_device` on a reader connection in a worker thread. Anonymous is refused.
- `DeviceTopicPlugin`: a device publishes only under `storebox/<store>/dev/<its id>/`, and subscribes to
  (and receives) only its own tree and, unless it is a supplier's device, `stock/#` and `alert/#` of its store.
- `IngestTapPlugin`: every accepted publish under `storebox/<store>/dev/+/evt/#` goes straight to the
  ingest consumer in this process, with no network hop (DESIGN.md "Performance stance"); and each device's
  `status` messages, with the last will of a lost connection, to the fleet (`on_status`, edge/bus/status.py).

`StoreBroker` is amqtt's broker with two repairs: retained messages go only to a session's own
subscriptions and through the same ACL, and its subscription table may change while amqtt walks it.

The TCP listener is ours (amqtt's "external" listener type), so that a packet far larger than any event
(`packet_limit`) is cut off at the socket before amqtt buffers it. Payloads between
`mqtt_max_payload_bytes` and the packet limit reach the ingest consumer, which answers them with a
failed ack and a dead letter.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from amqtt.adapters import ReaderAdapter, WriterAdapter  # type: ignore[import-untyped]
from amqtt.broker import Broker, BrokerContext  # type: ignore[import-untyped]
from amqtt.contexts import Action  # type: ignore[import-untyped]
from amqtt.plugins.base import BaseAuthPlugin, BasePlugin, BaseTopicPlugin  # type: ignore[import-untyped]
from amqtt.session import ApplicationMessage, Session  # type: ignore[import-untyped]
from prometheus_client import CollectorRegistry, Counter

from edge.bus.taps import Tap, notify_taps
from edge.bus.topics import is_id, may_publish, may_subscribe, split_event_topic, status_topic
from edge.config import Settings
from edge.security.devices import DeviceLogin, authenticate_device, credential_stamp, reads_store_topics

log = logging.getLogger(__name__)

LISTENER = "default"
AUTH_CACHE_SECONDS = 60.0
AUTH_CONCURRENCY = 2  # argon2 takes ~19 MiB and ~50 ms per check; a reconnect storm must not exhaust the box
SESSION_EXPIRY_SECONDS = 86_400  # a persistent session (clean_session=0) keeps queued acks for a day
CONNECT_TIMEOUT_SECONDS = 10.0  # a socket must send its CONNECT within this


def packet_limit(max_payload_bytes: int) -> int:
    """Largest MQTT packet (remaining length) accepted at the socket; larger ones drop the connection.

    Leaves room for the topic and header and for an oversized event to still be read and answered.
    """
    return 4 * max_payload_bytes + 65_540


class EventSink(Protocol):
    """Where the tap hands device events (the ingest consumer); must not block."""

    def offer(self, device: str, kind: str, topic: str, payload: bytes) -> None: ...


class BrokerMetrics:
    """Prometheus counters of the broker, registered on the registry passed in."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.connects = Counter(
            "storebox_mqtt_connects",
            "MQTT connection attempts by result",
            ["result"],
            registry=registry,
        )
        self.denied = Counter(
            "storebox_mqtt_denied",
            "Publishes, subscriptions and deliveries refused by the topic ACL",
            ["action"],
            registry=registry,
        )
        self.oversized = Counter(
            "storebox_mqtt_oversized_packets",
            "Connections dropped for a packet over the packet limit",
            registry=registry,
        )


VerifyDevice = Callable[[sqlite3.Connection, str, str], DeviceLogin | None]


class DeviceGate:
    """Who may connect, and which topics each device may use. Plain object behind the amqtt plugins."""

    def __init__(
        self,
        store_id: str,
        open_reader: Callable[[], sqlite3.Connection],
        metrics: BrokerMetrics,
        *,
        verify: VerifyDevice = authenticate_device,
        cache_seconds: float = AUTH_CACHE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store_id = store_id
        self._open_reader = open_reader
        self._verify = verify
        self._metrics = metrics
        self._cache_seconds = cache_seconds
        self._monotonic = monotonic
        self._cache: dict[tuple[str, bytes], tuple[float, str]] = {}  # -> (valid until, credential stamp)
        # device -> its kind, learnt at its last successful check. A kind never changes under the same id (a device
        # deleted and registered again has a new hash, so it is checked again); a device not in here reads only its
        # own tree.
        self._kinds: dict[str, str] = {}
        self._slots = asyncio.Semaphore(AUTH_CONCURRENCY)

    async def authenticate(self, username: str | None, password: str | None, will_topic: str | None) -> bool:
        """True for an enabled device with the right password whose last will stays in its own tree."""
        if not username or password is None:
            return self._refuse("anonymous")
        if not is_id(username):
            return self._refuse("bad_credentials")
        if will_topic is not None and not may_publish(self.store_id, username, will_topic):
            # amqtt publishes a will without the ACL, so a will outside the device's tree is refused here
            return self._refuse("bad_will")
        # Only a digest of the password is kept in memory, and only for a successful check. The check counts
        # while the device's stored hash is the one it passed against: a rotation or a disable (from the API
        # or another process) takes effect at the next connect, at the cost of one indexed read.
        cache_key = (username, hashlib.sha256(password.encode("utf-8", "surrogatepass")).digest())
        now = self._monotonic()
        cached = self._cache.get(cache_key)
        if cached is not None and cached[0] > now and await asyncio.to_thread(self._stamp, username) == cached[1]:
            self._metrics.connects.labels(result="ok").inc()
            return True
        async with self._slots:
            login, stamp = await asyncio.to_thread(self._check, username, password)
        if login is None or login.id != username:
            return self._refuse("bad_credentials")
        self._kinds[username] = login.kind
        if len(self._cache) > 10_000:
            self._cache.clear()
        if stamp is not None:
            self._cache[cache_key] = (now + self._cache_seconds, stamp)
        self._metrics.connects.labels(result="ok").inc()
        return True

    def _check(self, username: str, password: str) -> tuple[DeviceLogin | None, str | None]:
        conn = self._open_reader()
        try:
            stamp = credential_stamp(conn, username)
            return self._verify(conn, username, password), stamp
        finally:
            conn.close()

    def _stamp(self, username: str) -> str | None:
        conn = self._open_reader()
        try:
            return credential_stamp(conn, username)
        finally:
            conn.close()

    def _refuse(self, reason: str) -> bool:
        self._metrics.connects.labels(result=reason).inc()
        log.info("MQTT connection refused / 拒绝连接: %s", reason)
        return False

    def allows(self, username: str | None, topic: str, action: Action) -> bool:
        """The topic ACL: publish in one's own tree; subscribe and receive own tree and, for the store's devices
        (not a supplier's), stock and alerts."""
        if not username:
            allowed = False
        elif action == Action.PUBLISH:
            allowed = may_publish(self.store_id, username, topic)
        else:  # SUBSCRIBE takes a filter, RECEIVE a topic; a topic is a filter without wildcards
            store_topics = reads_store_topics(self._kinds.get(username, ""))
            allowed = may_subscribe(self.store_id, username, topic, store_topics=store_topics)
        if not allowed:
            self._metrics.denied.labels(action=str(action)).inc()
        return allowed


# --- amqtt's broker, repaired ------------------------------------------------------------------------

Subscribers = list[tuple[Session, int]]


class _Subscriptions(dict[str, Subscribers]):
    """amqtt's subscription table (filter -> [(session, granted QoS)]), walked over a copy.

    amqtt 0.12.1 walks it with awaits inside the loop: at every connect (`Broker._handle_client_session`,
    broker.py:601) and for every message (`Broker._run_broadcast`, broker.py:1015). A subscribe, unsubscribe or
    clean connect of another client meanwhile raised "dictionary changed size during iteration": the connecting
    client was dropped, or the subscribers after that point never got the message. Five clients connecting at
    once were enough.
    """

    def __iter__(self) -> Iterator[str]:
        return iter(list(super().__iter__()))

    def items(self) -> list[tuple[str, Subscribers]]:  # type: ignore[override]
        return [(topic_filter, list(subscribers)) for topic_filter, subscribers in super().items()]


class StoreBroker(Broker):  # type: ignore[misc]
    """amqtt's broker whose retained messages, and the messages it queued for a session while it was away, reach
    a session only through its own subscriptions and the topic ACL (`DeviceGate.allows`, RECEIVE)."""

    def __init__(self, config: dict[str, Any], gate: DeviceGate) -> None:
        super().__init__(config)
        self._gate = gate
        self._subscriptions = _Subscriptions()

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        # amqtt 0.12.1 calls this on SUBSCRIBE (broker.py:722) and, at every connect, for every filter that any
        # client holds (broker.py:601-602), sending whatever retained message matches without the ACL: a device
        # that connected got other devices' retained messages. Here a session gets the retained messages of a
        # subscription of its own only, at the QoS it was granted, each one allowed to it.
        topic_filter = subscription[0]
        granted = next(
            (qos for held, qos in self._subscriptions.get(topic_filter, ()) if held.client_id == session.client_id),
            None,
        )
        handler = self._get_handler(session)
        if granted is None or handler is None:
            return  # returns without awaiting: amqtt's connect loop is not held up by other clients' filters
        deliveries = [
            asyncio.ensure_future(
                handler.mqtt_publish(topic, retained.data, min(granted, retained.qos or granted), retain=True)
            )
            for topic, retained in list(self._retained_messages.items())
            if self._matches(topic, topic_filter) and self._gate.allows(session.username, topic, Action.RECEIVE)
        ]
        if deliveries:
            await asyncio.wait(deliveries)

    async def _publish_session_retained_messages(self, session: Session) -> None:
        # amqtt 0.12.1 (broker.py:597) sends a resumed persistent session the messages queued for it while it was
        # away, unchecked; they passed the ACL of the session's user then, but amqtt hands a persistent session to
        # whoever reconnects with its client id. Drop those the session's user now may not receive.
        queued = session.retained_messages
        kept = []
        while not queued.empty():
            message = queued.get_nowait()
            if self._gate.allows(session.username, message.topic, Action.RECEIVE):
                kept.append(message)
        for message in kept:
            queued.put_nowait(message)
        await super()._publish_session_retained_messages(session)


# --- amqtt plugins: thin adapters onto DeviceGate and the ingest sink --------------------------------


class DeviceAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]
    """Device credentials from the database; anonymous is refused."""

    @dataclass
    class Config:
        gate: Any = None

    async def authenticate(self, *, session: Session) -> bool:
        will_topic = session.will_topic if session.will_flag else None
        try:
            return bool(await self.config.gate.authenticate(session.username, session.password, will_topic))
        except Exception:  # the database is unreadable: refuse, keep serving
            log.exception("device authentication failed")
            return False


class DeviceTopicPlugin(BaseTopicPlugin):  # type: ignore[misc]
    """Publish only in one's own tree; subscribe and receive own tree, stock and alerts."""

    @dataclass
    class Config:
        gate: Any = None

    async def topic_filtering(
        self, *, session: Session | None = None, topic: str | None = None, action: Action | None = None
    ) -> bool:
        if session is None or topic is None or action is None:
            return False
        return bool(self.config.gate.allows(session.username, topic, action))


class IngestTapPlugin(BasePlugin[BrokerContext]):  # type: ignore[misc]
    """Hands accepted device events to the ingest consumer, in the broker's process; and each device's
    `status` messages to `status(device, payload)` (the fleet), including the last will of a lost connection."""

    @dataclass
    class Config:
        store_id: str = ""
        sink: Any = None
        status: Any = None
        live: Any = None  # device -> client ids of its authenticated connections (shared with EmbeddedBroker)

    async def on_broker_message_broadcast(self, *, client_id: str, message: ApplicationMessage) -> None:
        split = split_event_topic(self.config.store_id, message.topic)
        if split is None:
            if message.topic.endswith("/status"):
                session = self.context.get_session(client_id)
                if session is not None and session.username and message.topic == self._status_topic(session.username):
                    self.config.status(session.username, bytes(message.data or b""))
            return
        device, kind = split
        session = self.context.get_session(client_id)
        if session is None or session.username != device:  # the ACL already ensures this
            return
        self.config.sink.offer(device, kind, message.topic, bytes(message.data or b""))

    async def on_broker_client_connected(self, *, client_id: str, client_session: Session) -> None:
        if client_session.username:  # only authenticated connections get here
            self.config.live.setdefault(client_session.username, set()).add(client_id)

    async def on_broker_client_disconnected(self, *, client_id: str, client_session: Session) -> None:
        # amqtt publishes a will without a broadcast event. When a device's last connection with a will on its
        # status topic ends, the fleet takes the will as its status (a device that left without saying offline
        # is offline too).
        device = client_session.username
        if not device:
            return
        live = self.config.live.get(device, set())
        live.discard(client_id)
        if not live:
            self.config.live.pop(device, None)
        if live or not client_session.will_flag or client_session.will_topic != self._status_topic(device):
            return
        self.config.status(device, bytes(client_session.will_message or b""))

    def _status_topic(self, device: str) -> str | None:
        return status_topic(self.config.store_id, device) if is_id(device) else None


# --- the listener -------------------------------------------------------------------------------------


class PacketLimitReader(ReaderAdapter):  # type: ignore[misc]
    """Reads MQTT from a stream and ends the stream when a packet announces more than `limit` bytes, or
    when the first packet (CONNECT) has not arrived within `connect_timeout` seconds.

    It follows the packet framing (type byte, variable-length remaining length, body) over the bytes it
    returns, so amqtt sees end-of-stream before it would buffer an oversized body, and an idle socket
    cannot hold a connection slot for ever (amqtt waits for CONNECT without a deadline).
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        limit: int,
        on_refused: Callable[[int], None],
        *,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    ) -> None:
        self._reader = reader
        self._limit = limit
        self._on_refused = on_refused
        self._deadline = asyncio.get_running_loop().time() + connect_timeout
        self._refused = False
        self._packets = 0  # complete packets seen
        self._in_length = False  # reading the remaining-length bytes of a fixed header
        self._length = 0
        self._multiplier = 1
        self._body = 0  # bytes of the current packet body still to come

    async def read(self, n: int = -1) -> bytes:
        if self._refused:
            return b""
        pending = self._reader.read(n) if n < 0 else self._reader.readexactly(n)
        if self._packets:
            data = await pending
        else:
            try:
                remaining = self._deadline - asyncio.get_running_loop().time()
                data = await asyncio.wait_for(pending, timeout=max(remaining, 0.0))
            except TimeoutError:
                self._refused = True
                return b""
        self._follow(data)
        return data

    def feed_eof(self) -> None:
        self._reader.feed_eof()

    def _follow(self, data: bytes) -> None:
        i, size = 0, len(data)
        while i < size and not self._refused:
            if self._body:
                step = min(self._body, size - i)
                self._body -= step
                i += step
                self._packets += not self._body
                continue
            byte = data[i]
            i += 1
            if not self._in_length:  # the packet type byte
                self._in_length, self._length, self._multiplier = True, 0, 1
                continue
            self._length += (byte & 0x7F) * self._multiplier
            if byte & 0x80:
                self._multiplier *= 128
                if self._multiplier > 128**3:
                    self._refuse(self._length)
                continue
            self._in_length = False
            if self._length > self._limit:
                self._refuse(self._length)
            self._body = self._length
            self._packets += not self._body

    def _refuse(self, length: int) -> None:
        self._refused = True
        self._on_refused(length)


class CoalescingWriter(WriterAdapter):  # type: ignore[misc]
    """Writes a connection's packets of one event-loop turn in one send.

    amqtt writes and drains every packet on its own: a group commit that acks 200 events means 200
    sends, and on loopback a send costs more than building the packet. Packets written in the same
    turn are joined and sent at the start of the next; drain waits only when the socket is backed up.
    """

    HIGH_WATER = 256 * 1024

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._loop = asyncio.get_running_loop()
        self._pending: list[bytes] = []
        self._scheduled = False
        self.is_closed = False

    def write(self, data: bytes) -> None:
        if self.is_closed:
            return
        self._pending.append(data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if self._pending and not self.is_closed and not self._writer.is_closing():
            self._writer.write(b"".join(self._pending))
        self._pending.clear()

    async def drain(self) -> None:
        if self.is_closed:
            return
        if self._writer.transport.get_write_buffer_size() > self.HIGH_WATER:
            self._flush()
            await self._writer.drain()

    def get_peer_info(self) -> tuple[str, int] | None:
        peer = self._writer.get_extra_info("peername")
        if not peer or len(peer) < 2:
            return None
        return peer[0], peer[1]

    def get_ssl_info(self) -> Any:
        return self._writer.get_extra_info("ssl_object")

    async def close(self) -> None:
        if self.is_closed:
            return
        self._flush()
        self.is_closed = True
        with contextlib.suppress(ConnectionError):
            await self._writer.drain()
            if self._writer.can_write_eof():
                self._writer.write_eof()
        self._writer.close()
        with contextlib.suppress(ConnectionError, AttributeError):
            await self._writer.wait_closed()


class EmbeddedBroker:
    """The box's MQTT broker on `settings.mqtt_host:mqtt_port`; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        open_reader: Callable[[], sqlite3.Connection],
        ingest: EventSink,
        registry: CollectorRegistry | None = None,
        verify: VerifyDevice = authenticate_device,
    ) -> None:
        self._settings = settings
        self._open_reader = open_reader
        self._ingest = ingest
        self._verify = verify
        self.metrics = BrokerMetrics(registry if registry is not None else CollectorRegistry())
        # Where devices' status messages go (the fleet, edge/bus/status.py); set before or after start.
        self.on_status: Callable[[str, bytes], None] | None = None
        # Observers of what the box itself publishes (the live page, edge/web/pages/live.py): called with
        # (topic, payload) after each publish; they must not block or raise.
        self.taps: list[Tap] = []
        self._live: dict[str, set[str]] = {}  # device -> client ids of its live connections (the tap keeps it)
        self._broker: Broker | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self.connect_timeout = CONNECT_TIMEOUT_SECONDS

    @property
    def running(self) -> bool:
        return self._broker is not None and self._broker.transitions.state == "started"

    @property
    def port(self) -> int:
        """The TCP port actually bound (useful when configured as 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the broker is not listening")
        return int(self._server.sockets[0].getsockname()[1])

    def _config(self, gate: DeviceGate) -> dict[str, Any]:
        s = self._settings
        return {
            "listeners": {LISTENER: {"type": "external", "bind": f"{s.mqtt_host}:{s.mqtt_port}"}},
            "session_expiry_interval": SESSION_EXPIRY_SECONDS,
            "plugins": {
                f"{__name__}.DeviceAuthPlugin": {"gate": gate},
                f"{__name__}.DeviceTopicPlugin": {"gate": gate},
                f"{__name__}.IngestTapPlugin": {
                    "store_id": s.store_id,
                    "sink": self._ingest,
                    "status": self._status,
                    "live": self._live,
                },
            },
        }

    def _status(self, device: str, payload: bytes) -> None:
        if self.on_status is not None:
            self.on_status(device, payload)

    def connected_devices(self) -> set[str]:
        """Devices with at least one live (authenticated) connection."""
        return {device for device, client_ids in self._live.items() if client_ids}

    async def disconnect_device(self, device: str, keep: Callable[[str], bool] | None = None) -> int:
        """Close the live connections of `device` (its last will goes out, as for a lost connection), except
        those whose password `keep` still accepts (called in a worker thread). Returns how many were closed."""
        broker = self._broker
        if broker is None:
            return 0
        closed = 0
        for client_id in list(self._live.get(device, ())):
            session, handler = broker.sessions.get(client_id, (None, None))
            if session is None or handler is None or session.username != device:
                continue
            if keep is not None and session.password is not None and await asyncio.to_thread(keep, session.password):
                continue
            await handler.handle_connection_closed()
            closed += 1
        return closed

    async def start(self) -> None:
        """Start the broker and listen; raises if the port is taken."""
        gate = DeviceGate(self._settings.store_id, self._open_reader, self.metrics, verify=self._verify)
        broker = StoreBroker(self._config(gate), gate)
        await broker.start()
        try:
            self._server = await asyncio.start_server(
                self._connected, self._settings.mqtt_host, self._settings.mqtt_port, reuse_address=True
            )
        except OSError:
            await broker.shutdown()
            raise
        self._broker = broker
        log.info("MQTT broker listening on %s:%s", self._settings.mqtt_host, self.port)

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        broker = self._broker
        if broker is None:
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        limited = PacketLimitReader(reader, self._limit(), self._refuse_packet, connect_timeout=self.connect_timeout)
        try:
            await broker.external_connected(limited, CoalescingWriter(writer), LISTENER)
        except Exception:
            log.exception("MQTT connection failed")
        finally:
            if task is not None:
                self._connections.discard(task)
            if not writer.is_closing():
                writer.close()

    def _refuse_packet(self, length: int) -> None:
        self.metrics.oversized.inc()
        log.warning("MQTT packet of %d bytes refused (limit %d) / 数据包过大, 断开连接", length, self._limit())

    def _limit(self) -> int:
        return packet_limit(self._settings.mqtt_max_payload_bytes)

    async def stop(self) -> None:
        """Stop listening, disconnect every client, stop the broker."""
        server, broker = self._server, self._broker
        self._server = self._broker = None
        if server is not None:
            server.close()
        if broker is not None:
            await broker.shutdown()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(Exception):
                await server.wait_closed()

    async def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1, correlation: bytes | None = None
    ) -> None:
        """Publish from the box itself (acks, stock, alerts, commands); `retain` keeps it for new subscribers.
        `correlation` (MQTT 5) is dropped: 3.1.1 has no properties, and no event here ever carries one."""
        broker = self._broker
        if broker is None:
            raise RuntimeError("the broker is not running")
        if retain:
            await broker.retain_message(None, topic, payload, qos)
        await broker.internal_message_broadcast(topic, payload, qos)
        notify_taps(self.taps, topic, payload)
