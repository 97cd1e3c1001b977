"""One simulated device's MQTT connection, keeping the delivery contract of the box (edge/devices/delivery.py).

The event id is made before the first send and reused on every resend; an event stays pending until an
ack with its id arrives (an ack with `retry: true` means "not posted, send again later"), and pending
events are resent after `resend_after` seconds and on every reconnect. The device publishes a retained
`status` "online" with the last will "offline", and paho reconnects with backoff while the box is down.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.demo.demo_json import DeviceLogin
from edge.devices.delivery import AckOutcome, Delivery, DeliveryStats, PendingEvent

log = logging.getLogger(__name__)
ROOT = "storebox"
MessageHandler = Callable[[str, bytes], None]


LinkStats = DeliveryStats  # the name the runner and the tests know


def rfc3339_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class DeviceLink:
    """A paho client for one device; see the module docstring. Thread-safe: paho calls back on its thread."""

    def __init__(
        self,
        store_id: str,
        login: DeviceLogin,
        host: str,
        port: int,
        *,
        resend_after: float = 10.0,
        max_pending: int = 500,
        subscriptions: tuple[str, ...] = (),
        on_message: MessageHandler | None = None,
        on_failure: Callable[[str, dict[str, Any]], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.device_id = login.id
        self._host = host
        self._port = port
        self._prefix = f"{ROOT}/{store_id}/dev/{login.id}"
        self._ack_topic = f"{self._prefix}/ack"
        self._status_topic = f"{self._prefix}/status"
        self._subscriptions = subscriptions
        self._on_message = on_message
        self._on_failure = on_failure
        self._max_pending = max_pending
        self._delivery = Delivery(resend_after, monotonic)  # unbounded: the device itself waits for `has_room`
        self._connected = threading.Event()
        self._refusals = 0
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"{login.id}-sim-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        client.username_pw_set(login.username, login.password)
        client.will_set(self._status_topic, "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._connected_cb
        client.on_disconnect = self._disconnected_cb
        client.on_message = self._message_cb
        self._client = client

    # --- life cycle ------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def start(self) -> None:
        """Connect in the background; paho retries with backoff until the broker answers."""
        self._client.connect_async(self._host, self._port, keepalive=30)
        self._client.loop_start()

    def stop(self, timeout: float = 2.0) -> None:
        """Say "offline" (retained), disconnect cleanly and stop the network thread."""
        if self.connected:
            info = self._client.publish(self._status_topic, "offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):  # not sent in time: the will says it
                info.wait_for_publish(timeout)
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    # --- sending ---------------------------------------------------------------------------------

    @property
    def has_room(self) -> bool:
        """False while `max_pending` events wait for acks: the device stops making new ones."""
        return self._delivery.pending < self._max_pending

    def send(self, kind: str, data: dict[str, Any]) -> str:
        """Queue one event (its id made now, kept for resends) and publish it if connected."""
        event_id = f"{self.device_id}-{uuid.uuid4().hex}"
        payload = json.dumps({"id": event_id, "ts": rfc3339_now(), "data": data}, ensure_ascii=False).encode()
        pending = PendingEvent(f"{self._prefix}/evt/{kind}", payload, None)
        connected = self.connected
        self._delivery.add(event_id, pending, on_wire=connected)
        if connected:
            self._client.publish(pending.topic, pending.payload, qos=1)
        return event_id

    def resend_due(self) -> int:
        """Resend every pending event not acked within `resend_after` seconds; returns how many."""
        if not self.connected:
            return 0
        due = self._delivery.due()
        self._publish(due)
        return len(due)

    def _publish(self, due: list[PendingEvent]) -> None:
        # Outside the delivery's lock: paho takes its own locks, and its thread takes that one for acks.
        for pending in due:
            self._client.publish(pending.topic, pending.payload, qos=1)

    def stats(self) -> LinkStats:
        return self._delivery.stats()

    def pending_ids(self) -> list[str]:
        return self._delivery.pending_ids()

    # --- paho callbacks (network thread) ---------------------------------------------------------

    def _connected_cb(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._refusals += 1
            if self._refusals in (1, 10) or self._refusals % 100 == 0:
                log.warning("%s: 连接被拒绝 connection refused: %s", self.device_id, reason_code)
            return
        self._refusals = 0
        client.subscribe([(self._ack_topic, 1), *((t, 1) for t in self._subscriptions)])
        client.publish(self._status_topic, "online", qos=1, retain=True)
        self._connected.set()
        # Acks may have been lost with the old connection: everything pending goes out again now.
        self._publish(self._delivery.all_again())

    def _disconnected_cb(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        self._connected.clear()

    def _message_cb(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == self._ack_topic:
            self._take_ack(bytes(message.payload))
        elif self._on_message is not None:
            try:
                self._on_message(message.topic, bytes(message.payload))
            except Exception:
                log.exception("%s: message handler failed", self.device_id)

    def _take_ack(self, payload: bytes) -> None:
        try:
            ack = json.loads(payload)
            event_id = ack["id"]
        except (ValueError, KeyError, TypeError):
            log.warning("%s: 无法解析的确认 unreadable ack: %r", self.device_id, payload[:200])
            return
        outcome = self._delivery.take_ack(event_id, ok=bool(ack.get("ok")), retry=bool(ack.get("retry")))
        if outcome is AckOutcome.FAILED and self._on_failure is not None:
            self._on_failure(self.device_id, ack)
