"""The box as an MQTT 5 client of an external broker (Mosquitto, EMQX), when `mqtt_url` is set (docs/mqtt5.md).

Direct, not bridged: the embedded amqtt broker does not run; devices log in at the external broker, whose ACL
keeps each in its own tree (tools/mosquitto/), and the box is one more client there. A bridge into the
embedded broker would lose what MQTT 5 is wanted for (amqtt speaks 3.1.1, so response topic and correlation
data do not cross it), would need a bridge user that may publish as every device, and would add a hop to every
event.

- One paho client, MQTT 5, a fixed client id with clean start off and a session kept for a day, so events
  published while the box is away are queued by the broker and delivered when it is back. paho's network
  thread reconnects with backoff; every message is handed to the event loop (`call_soon_threadsafe`), so the
  ingest consumer and the status sink run on the box's loop exactly as behind the embedded broker.
- Subscriptions: the event filter at QoS 1 without retained messages (a retained event would come back at
  every subscribe), and the device status filter with them (the current status of every device). Not a shared
  subscription: a store has one box and one writer, and the persistent session keeps events while it is away.
- An event's MQTT 5 response topic is honoured only inside the device's own ack tree (`.../dev/<id>/ack` or a
  topic below it): the box may publish anywhere in the store's tree, and a device must not make it write on
  stock, another device's commands, or its own `evt/` (which would loop). Correlation data always goes back.
- Who published an event is the topic's device level: the broker's ACL is what proves it (the embedded
  broker checks the session's user; an external one does not tell its subscribers who published).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import sys
from collections.abc import Callable
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from prometheus_client import CollectorRegistry, Counter, Gauge

from edge.bus.broker_url import BrokerUrl, parse_broker_url
from edge.bus.taps import Tap, notify_taps
from edge.bus.topics import ROOT, TopicKind, ack_topic, event_filter, parse_topic, split_event_topic
from edge.config import Settings

log = logging.getLogger(__name__)

SESSION_EXPIRY_SECONDS = 86_400  # the broker keeps the box's subscriptions and queued events for a day
KEEPALIVE_SECONDS = 30
RECONNECT_DELAY = (1, 30)  # seconds, doubling after each failed attempt
DRAIN_SECONDS = 5.0  # at stop, how long to wait for the broker to take acks and stock already handed over
OUTGOING_QUEUE = 100_000  # messages paho keeps while the broker is away; beyond that a publish fails


class Mqtt5EventSink(Protocol):
    """Where device events go (the ingest consumer); must not block."""

    def offer(
        self,
        device: str,
        kind: str,
        topic: str,
        payload: bytes,
        *,
        response_topic: str | None = None,
        correlation: bytes | None = None,
    ) -> None: ...


StatusSink = Callable[[str, bytes], None]


def status_filter(store: str) -> str:
    """Every device's retained `status` topic."""
    return f"{ROOT}/{store}/dev/+/{TopicKind.STATUS}"


def reply_topic_allowed(store: str, device: str, topic: str) -> bool:
    """True when an event's response topic is the device's ack topic or a topic below it."""
    own = ack_topic(store, device)
    if topic == own:
        return True
    rest = topic[len(own) + 1 :] if topic.startswith(own + "/") else ""
    return bool(rest) and not any(c in topic for c in "+#\x00") and "" not in rest.split("/")


class ExternalBrokerMetrics:
    """Prometheus metrics of the box's connection to the external broker."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.connects = Counter(
            "storebox_mqtt_external_connects",
            "Connections of the box to the external broker, by result (ok or the broker's reason)",
            ["result"],
            registry=registry,
        )
        self.connected = Gauge(
            "storebox_mqtt_external_connected",
            "1 while the box is connected to the external broker and subscribed to device events",
            registry=registry,
        )
        self.publish_refused = Counter(
            "storebox_mqtt_external_publish_refused",
            "Publishes of the box the external broker refused (check its ACL for the box's user)",
            registry=registry,
        )
        self.reply_topics_refused = Counter(
            "storebox_mqtt_response_topics_refused",
            "Event response topics outside the device's ack tree (the ack went to the ack topic)",
            registry=registry,
        )


class ExternalBroker:
    """See the module docstring. Same `publish`, `running`, `start`, `stop` as the embedded broker."""

    def __init__(
        self,
        settings: Settings,
        *,
        ingest: Mqtt5EventSink,
        registry: CollectorRegistry | None = None,
        reconnect_delay: tuple[int, int] = RECONNECT_DELAY,
    ) -> None:
        if settings.mqtt_url is None:
            raise ValueError("mqtt_url is not set")
        self.url: BrokerUrl = parse_broker_url(settings.mqtt_url)
        self.client_id = settings.mqtt_client_id or f"storebox-{settings.store_id}"
        self._store = settings.store_id
        self._ca_file = settings.mqtt_ca_file
        self._ingest = ingest
        self._reconnect_delay = reconnect_delay
        self.metrics = ExternalBrokerMetrics(registry if registry is not None else CollectorRegistry())
        # Device status (P5 fleet): called as on_status(device, payload) on the loop, retained ones included.
        self.on_status: StatusSink | None = None
        self.taps: list[Tap] = []  # what the box publishes, for the live page
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = asyncio.Event()  # connected and subscribed to the event filter
        self._unacked: set[int] = set()  # mids handed to paho, not yet acknowledged by the broker
        self._drained = asyncio.Event()
        self._stopping = False
        self._failing = False  # paho's thread: the last attempt to connect failed (log the next at debug)

    @property
    def running(self) -> bool:
        """Connected to the external broker and subscribed to device events (health's `broker`)."""
        return self._client is not None and self._ready.is_set() and self._client.is_connected()

    async def start(self) -> None:
        """Start connecting; returns at once. paho keeps trying with backoff until `stop()`."""
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._unacked.clear()
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        client.suppress_exceptions = True  # a bug in a callback must not end paho's network thread
        client.reconnect_delay_set(*self._reconnect_delay)
        client.max_queued_messages_set(OUTGOING_QUEUE)
        # paho's 20 unacknowledged publishes at a time is Mosquitto's default Receive Maximum; paho does not read
        # the broker's value, and a client over it is disconnected (MQTT 5, 3.3.4), so it stays at 20.
        client.max_inflight_messages_set(20)
        if self.url.username is not None:
            client.username_pw_set(self.url.username, self.url.password)
        if self.url.tls:
            ca = str(self._ca_file) if self._ca_file is not None else None
            client.tls_set(ca_certs=ca, cert_reqs=ssl.CERT_REQUIRED)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        connect_properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        connect_properties.SessionExpiryInterval = SESSION_EXPIRY_SECONDS
        client.connect_async(
            self.url.host,
            self.url.port,
            keepalive=KEEPALIVE_SECONDS,
            clean_start=False,
            properties=connect_properties,
        )
        self._client = client
        client.loop_start()
        log.info("connecting to the external MQTT broker %s as %s", self.url.redacted(), self.client_id)

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until connected and subscribed; False after `timeout` seconds."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Let the broker take what was handed over (up to DRAIN_SECONDS), then disconnect, keeping the session."""
        client, self._client = self._client, None
        if client is None:
            return
        self._stopping = True
        if self._unacked and client.is_connected():
            self._drained.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), DRAIN_SECONDS)
        if self._unacked:
            log.info("%d messages not yet taken by the broker at stop; devices resend their events", len(self._unacked))
        client.disconnect()
        await asyncio.to_thread(client.loop_stop)
        self._ready.clear()
        self.metrics.connected.set(0)

    async def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1, correlation: bytes | None = None
    ) -> None:
        """Hand a message to paho (acks, stock, alerts, commands). While the broker is away paho keeps it and
        sends it after reconnecting; raises only when that queue is full or the box is stopped."""
        client = self._client
        if client is None:
            raise RuntimeError("the external broker client is not running")
        properties = None
        if correlation is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.CorrelationData = correlation
        info = client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise RuntimeError(f"publish on {topic} failed: {mqtt.error_string(info.rc)}")
        if qos > 0:
            self._unacked.add(info.mid)
        notify_taps(self.taps, topic, payload)

    # --- paho callbacks: paho's network thread; anything for the box goes to the loop ------------------

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: the box is gone
            loop.call_soon_threadsafe(fn, *args)

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: ReasonCode, properties: Any
    ) -> None:
        if reason_code.is_failure:
            self.metrics.connects.labels(result=str(reason_code)).inc()
            log.error(
                "the external MQTT broker %s refused the box: %s / 外部代理拒绝连接 (user and password in mqtt_url?)",
                self.url.redacted(),
                reason_code,
            )
            return
        self.metrics.connects.labels(result="ok").inc()
        self._failing = False
        present = bool(getattr(flags, "session_present", False))
        log.info("connected to the external MQTT broker %s (session resumed: %s)", self.url.redacted(), present)
        client.subscribe(
            [
                (
                    event_filter(self._store),
                    SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND),
                ),
                (status_filter(self._store), SubscribeOptions(qos=1)),
            ]
        )

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this inside its `except OSError`, so the reason (refused, unreachable, a certificate that
        # does not verify) is the exception being handled.
        reason = sys.exc_info()[1]
        self.metrics.connects.labels(result="unreachable").inc()
        level = logging.DEBUG if self._failing else logging.WARNING
        self._failing = True
        log.log(level, "cannot reach the external MQTT broker %s: %s; retrying", self.url.redacted(), reason)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: list[ReasonCode], properties: Any
    ) -> None:
        events, status = reason_codes[0], reason_codes[-1]
        if events.is_failure:
            log.error(
                "the external MQTT broker refused the box's subscription to device events: %s"
                " / 订阅被拒绝 (the ACL must let the box's user read storebox/%s/#)",
                events,
                self._store,
            )
            return
        if status.is_failure:
            log.warning("the external MQTT broker refused the box's subscription to device status: %s", status)
        self._call(self._set_ready, True)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: ReasonCode, properties: Any
    ) -> None:
        self._call(self._set_ready, False)
        if not self._stopping:
            log.warning("lost the external MQTT broker %s: %s; reconnecting", self.url.redacted(), reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        properties = message.properties
        response_topic = getattr(properties, "ResponseTopic", None)
        correlation = getattr(properties, "CorrelationData", None)
        try:
            topic = message.topic
        except UnicodeDecodeError:  # not UTF-8: nothing of the contract
            return
        self._call(self._dispatch, topic, bytes(message.payload), response_topic, correlation)

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_code: ReasonCode, properties: Any
    ) -> None:
        if reason_code.is_failure:
            self.metrics.publish_refused.inc()
            log.warning("the external MQTT broker refused a publish of the box: %s (its ACL?)", reason_code)
        self._call(self._published, mid)

    # --- on the loop -------------------------------------------------------------------------------------

    def _set_ready(self, ready: bool) -> None:
        if ready:
            self._ready.set()
        else:
            self._ready.clear()
        self.metrics.connected.set(1 if ready else 0)

    def _published(self, mid: int) -> None:
        self._unacked.discard(mid)
        if not self._unacked:
            self._drained.set()

    def _dispatch(self, topic: str, payload: bytes, response_topic: str | None, correlation: bytes | None) -> None:
        split = split_event_topic(self._store, topic)
        if split is not None:
            device, kind = split
            if response_topic is not None and not reply_topic_allowed(self._store, device, response_topic):
                self.metrics.reply_topics_refused.inc()
                log.info("device %s asked for acks on %r, outside its ack tree; ack topic used", device, response_topic)
                response_topic = None
            self._ingest.offer(device, kind, topic, payload, response_topic=response_topic, correlation=correlation)
            return
        parsed = parse_topic(topic)
        if parsed is None or parsed.kind != TopicKind.STATUS or parsed.store != self._store or parsed.device is None:
            return
        on_status = self.on_status
        if on_status is None:
            # P5 (fleet) sets `on_status`; until then a device's status is received and not recorded.
            return
        try:
            on_status(parsed.device, payload)
        except Exception:
            log.exception("device status of %s not recorded", parsed.device)
