"""Serial adapters: a serial device (scale, scanner) bridged onto the bus as if it were a network device.

One adapter per configured device (setting `serial_devices`). It reads the port on pyserial in a thread of
its own, cuts and parses frames by the device's firmware profile (edge/devices/frames.py) and publishes the
events as an MQTT client **with the serial device's own credentials**: the same `evt/<kind>` topics, the
same envelope `{"id","ts","data"}`, the same delivery contract (docs/devices.md: kept until acked, resent
unchanged). It subscribes to its own `cmd/#` and writes the profile's bytes for each command.

It survives unplug and replug (the port is reopened with backoff), counts and logs garbage frames, bounds
every buffer (frames, pending events, commands, events per second), and never raises out of its threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import paho.mqtt.client as mqtt
import serial  # type: ignore[import-untyped]
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge.devices.delivery import AckOutcome, Delivery, PendingEvent
from edge.devices.frames import (
    CommandSpec,
    Deframer,
    DeviceError,
    Frame,
    Garbage,
    GarbageReason,
    JsonScalar,
    Reading,
    Reply,
    parse_frame,
)
from edge.devices.profiles import Profile, ProfileCatalog, SerialSettings, TransportKind, UnknownProfile, read_profiles

if TYPE_CHECKING:
    from edge.config import Settings

log = logging.getLogger(__name__)
ROOT = "storebox"
READ_CHUNK = 4096
COMMAND_QUEUE = 32
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def connectable_host(host: str) -> str:
    """The address to dial for a broker bound to `host` (a wildcard bind means this machine)."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::", "[::]") else host


# --- the setting `serial_devices` -------------------------------------------------------------------


class SerialDeviceSetting(BaseModel):
    """One entry of the setting `serial_devices` (TOML `[[serial_devices]]`, or JSON in the environment)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: str = Field(pattern=r"^[a-z0-9-]{1,64}$", description="the device id (its MQTT username)")
    profile: str = Field(pattern=r"^[a-z0-9-]{1,64}$", description="firmware profile id")
    port: str = Field(min_length=1, max_length=4096, description="serial port path, e.g. /dev/ttyUSB0")
    password: str = Field(min_length=1, max_length=200, description="the device's MQTT password")
    mode: Literal["sale", "count", "receive"] | None = Field(None, description="scan mode of a scanner")


class SerialDevicesSetting(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    devices: tuple[SerialDeviceSetting, ...]

    @model_validator(mode="after")
    def _unique(self) -> SerialDevicesSetting:
        for attr in ("device", "port"):
            values = [getattr(d, attr) for d in self.devices]
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"{attr} {repeated[0]!r} appears twice")
        return self


def check_serial_devices(value: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], ...]:
    """Validate the setting (called by edge.config); ValueError names what is wrong."""
    try:
        parsed = SerialDevicesSetting(devices=tuple(value))  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "serial_devices"
        raise ValueError(f"{where}: {first['msg']}; each entry is {{device, profile, port, password, mode?}}") from None
    return tuple(d.model_dump(exclude_none=True) for d in parsed.devices)


@dataclass(frozen=True, slots=True)
class SerialDevice:
    """A configured serial device: which profile it speaks, on which port, with which MQTT password."""

    device: str
    profile: str
    port: str
    password: str
    mode: str | None = None

    @property
    def settings(self) -> dict[str, JsonScalar]:
        """The values a profile's `{setting: ...}` reads."""
        return {"mode": self.mode} if self.mode is not None else {}

    def __repr__(self) -> str:
        return f"SerialDevice(device={self.device!r}, profile={self.profile!r}, port={self.port!r})"


def serial_devices(settings: Settings) -> tuple[SerialDevice, ...]:
    return tuple(SerialDevice(**entry) for entry in settings.serial_devices)


# --- metrics ------------------------------------------------------------------------------------


class SerialMetrics:
    """Prometheus metrics of every serial adapter of a process, by device (devices are few)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.frames = Counter(
            "storebox_serial_frames",
            "Frames read from serial devices: event (sent), repeat (no news), reply, device_error",
            ["device", "result"],
            registry=registry,
        )
        self.garbage = Counter(
            "storebox_serial_garbage",
            "Bytes from serial devices that made no frame or event",
            ["device", "reason"],
            registry=registry,
        )
        self.device_errors = Counter(
            "storebox_serial_device_errors",
            "Errors reported by serial devices (MT-SICS ES, ET, EL, I, ...)",
            ["device", "code"],
            registry=registry,
        )
        self.events = Counter(
            "storebox_serial_events", "Events published for serial devices", ["device", "kind"], registry=registry
        )
        self.acks = Counter(
            "storebox_serial_acks", "Acks received for serial devices' events", ["device", "code"], registry=registry
        )
        self.dropped = Counter(
            "storebox_serial_dropped",
            "Events and commands dropped: rate (events per second), pending_full, commands_full",
            ["device", "reason"],
            registry=registry,
        )
        self.commands = Counter(
            "storebox_serial_commands",
            "Commands from the bus: sent, unknown, bad_params",
            ["device", "result"],
            registry=registry,
        )
        self.port = Counter(
            "storebox_serial_port",
            "Serial port life: opened, open_failed, lost",
            ["device", "event"],
            registry=registry,
        )
        self.port_open = Gauge("storebox_serial_port_open", "1 while the port is open", ["device"], registry=registry)


class _LogLimit:
    """Log the first few of each kind of trouble, then every hundredth: a flood must not flood the log."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def due(self, key: str) -> int | None:
        with self._lock:
            count = self._seen[key] = self._seen.get(key, 0) + 1
        return count if count <= 3 or count % 100 == 0 else None


class _RateLimit:
    """A token bucket: `rate` events per second, bursts of twice that."""

    def __init__(self, rate: float, monotonic: Callable[[], float]) -> None:
        self._rate = rate
        self._capacity = max(1.0, 2 * rate)
        self._tokens = self._capacity
        self._monotonic = monotonic
        self._at = monotonic()

    def take(self) -> bool:
        now = self._monotonic()
        self._tokens = min(self._capacity, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


# --- the serial port ----------------------------------------------------------------------------


class SerialPort(Protocol):
    """What the adapter needs of a port (pyserial's Serial has it)."""

    @property
    def in_waiting(self) -> int: ...

    def read(self, size: int = 1) -> bytes: ...

    def write(self, data: bytes) -> int | None: ...

    def close(self) -> None: ...


PortOpener = Callable[[str, SerialSettings], SerialPort]


def open_serial(path: str, settings: SerialSettings) -> SerialPort:
    """Open `path` with the profile's settings; exclusive, so two adapters never share a port."""
    port: SerialPort = serial.Serial(
        port=path,
        baudrate=settings.baudrate,
        bytesize=settings.bytesize,
        parity=settings.parity,
        stopbits=settings.stopbits,
        xonxoff=settings.xonxoff,
        rtscts=settings.rtscts,
        timeout=settings.read_timeout,
        write_timeout=settings.write_timeout,
        exclusive=True,
    )
    return port


# --- the bus side: an MQTT client with the device's credentials ------------------------------------


@dataclass(frozen=True, slots=True)
class AdapterStats:
    """Counts of one adapter since it started (also in the Prometheus metrics)."""

    events: int
    acked: int
    failed: int
    resent: int
    pending: int
    garbage: int
    opens: int


class _BusLink:
    """The device's MQTT connection: events kept until acked and resent unchanged; commands in; status out."""

    def __init__(
        self,
        store_id: str,
        device: str,
        password: str,
        host: str,
        port: int,
        *,
        on_command: Callable[[str, bytes], None],
        metrics: SerialMetrics,
        resend_after: float,
        max_pending: int,
        monotonic: Callable[[], float],
        tls: bool = False,
    ) -> None:
        self.device = device
        self._host, self._port = host, port
        self._prefix = f"{ROOT}/{store_id}/dev/{device}"
        self._ack_topic = f"{self._prefix}/ack"
        self._cmd_prefix = f"{self._prefix}/cmd/"
        self._status_topic = f"{self._prefix}/status"
        self._on_command = on_command
        self._metrics = metrics
        self.delivery = Delivery(resend_after, monotonic, max_pending)
        self._status_lock = threading.Lock()
        self._connected = threading.Event()
        self._online = False  # what the status topic should say: the port is open
        self._limit = _LogLimit()
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"{device}-serial-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        client.username_pw_set(device, password)
        client.will_set(self._status_topic, "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        if tls:
            client.tls_set()  # the system's CA certificates, as for the box's own connection (docs/mqtt5.md)
        client.on_connect = self._connected_cb
        client.on_disconnect = self._disconnected_cb
        client.on_message = self._message_cb
        self._client = client

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def start(self) -> None:
        self._client.connect_async(self._host, self._port, keepalive=30)
        self._client.loop_start()

    def stop(self, timeout: float = 2.0) -> None:
        if self.connected:
            info = self._client.publish(self._status_topic, "offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):  # not out in time: the last will says it
                info.wait_for_publish(timeout)
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    def set_online(self, online: bool) -> None:
        """The serial side is up (port open) or down; the retained status says so while connected."""
        with self._status_lock:  # so that a reconnect cannot publish a stale status after this one
            changed, self._online = self._online != online, online
            if changed and self.connected:
                self._client.publish(self._status_topic, "online" if online else "offline", qos=1, retain=True)

    def send(self, kind: str, data: Mapping[str, Any], ts: datetime) -> str:
        """Queue one event with a new id and publish it if connected; the oldest goes when the queue is full."""
        event_id = f"{self.device}-{uuid.uuid4().hex}"
        payload = json.dumps(
            {"id": event_id, "ts": ts.isoformat(timespec="milliseconds"), "data": dict(data)},
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode("utf-8")
        pending = PendingEvent(f"{self._prefix}/evt/{kind}", payload, None)
        connected = self.connected
        dropped = self.delivery.add(event_id, pending, on_wire=connected)
        if dropped is not None:
            self._metrics.dropped.labels(self.device, "pending_full").inc()
            if (n := self._limit.due("pending_full")) is not None:
                log.warning(
                    "%s: 待确认事件过多, 丢弃最早的 dropped the oldest unacked event %s (#%d)", self.device, dropped, n
                )
        if connected:
            self._client.publish(pending.topic, pending.payload, qos=1)
        return event_id

    def resend_due(self) -> int:
        """Resend every event not acked within `resend_after` seconds (delivery contract rule 2)."""
        if not self.connected:
            return 0
        due = self.delivery.due()
        for pending in due:  # outside the delivery's lock: paho takes its own, and its thread takes that for acks
            self._client.publish(pending.topic, pending.payload, qos=1)
        return len(due)

    # paho callbacks, on paho's network thread: thin, and never raising

    def _connected_cb(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            if (n := self._limit.due("refused")) is not None:
                log.warning("%s: MQTT 连接被拒绝 connection refused: %s (#%d)", self.device, reason_code, n)
            return
        client.subscribe([(self._ack_topic, 1), (f"{self._cmd_prefix}#", 1)])
        due = self.delivery.all_again()  # before `connected` is set, so that resend_due does not send them twice
        with self._status_lock:
            self._connected.set()
            client.publish(self._status_topic, "online" if self._online else "offline", qos=1, retain=True)
        for pending in due:  # acks may have been lost with the old connection (delivery contract rule 2)
            client.publish(pending.topic, pending.payload, qos=1)

    def _disconnected_cb(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        self._connected.clear()

    def _message_cb(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            if message.topic == self._ack_topic:
                self._take_ack(bytes(message.payload))
            elif message.topic.startswith(self._cmd_prefix):
                self._on_command(message.topic[len(self._cmd_prefix) :], bytes(message.payload))
        except Exception:
            log.exception("%s: message on %s not handled", self.device, message.topic)

    def _take_ack(self, payload: bytes) -> None:
        try:
            ack = json.loads(payload)
            event_id, code = ack["id"], str(ack.get("code"))
        except (ValueError, KeyError, TypeError):
            log.warning("%s: 无法解析的确认 unreadable ack: %r", self.device, payload[:200])
            return
        outcome = self.delivery.take_ack(event_id, ok=bool(ack.get("ok")), retry=bool(ack.get("retry")))
        if outcome is AckOutcome.KEPT:
            return
        self._metrics.acks.labels(self.device, code).inc()
        if outcome is AckOutcome.FAILED and (n := self._limit.due(f"ack:{code}")) is not None:
            log.warning(
                "%s: 事件被拒绝 event refused (%s, #%d): %s / %s",
                self.device,
                code,
                n,
                ack.get("message"),
                ack.get("message_en"),
            )


# --- the adapter --------------------------------------------------------------------------------


class SerialAdapter:
    """One serial device on the bus; see the module docstring. `start()` and `stop()` from any thread."""

    def __init__(
        self,
        device: SerialDevice,
        profile: Profile,
        *,
        store_id: str,
        mqtt_host: str,
        mqtt_port: int,
        metrics: SerialMetrics,
        clock: Clock = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        resend_after: float = 5.0,
        max_pending: int = 500,
        max_events_per_second: float = 20.0,
        backoff: tuple[float, float] = (0.2, 10.0),
        open_port: PortOpener = open_serial,
        kinds: Mapping[str, type[BaseModel]] | None = None,
        tls: bool = False,
    ) -> None:
        if profile.transport is not TransportKind.SERIAL or profile.framing is None or profile.grammar is None:
            raise ValueError(f"profile {profile.id} is not a serial profile")
        if profile.serial is None:
            raise ValueError(f"profile {profile.id} has no serial settings")
        self.device = device
        self.profile = profile
        self._framing = profile.framing
        self._grammar = profile.grammar
        self._serial_settings = profile.serial
        self._metrics = metrics
        self._clock = clock
        self._monotonic = monotonic
        self._backoff = backoff
        self._open_port = open_port
        self._models = dict(kinds) if kinds is not None else _registered_kinds()
        self._rate = _RateLimit(max_events_per_second, monotonic)
        self._commands: queue.Queue[tuple[CommandSpec, bytes]] = queue.Queue(COMMAND_QUEUE)
        self._last: dict[str, Reading] = {}
        self._force_next = False
        self._limit = _LogLimit()
        self._stop = threading.Event()
        self.port_open = threading.Event()  # set while the port is open (tests and health wait on it)
        self._garbage = self._opens = 0
        self._thread: threading.Thread | None = None
        self.link = _BusLink(
            store_id,
            device.device,
            device.password,
            mqtt_host,
            mqtt_port,
            on_command=self._command,
            metrics=metrics,
            resend_after=resend_after,
            max_pending=max_pending,
            monotonic=monotonic,
            tls=tls,
        )
        metrics.port_open.labels(device.device).set(0)

    @property
    def name(self) -> str:
        return self.device.device

    def start(self) -> None:
        self.link.start()
        self._thread = threading.Thread(target=self._run, name=f"serial-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Close the port, say "offline" and disconnect; returns within about `timeout` seconds."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.link.stop(min(2.0, timeout))

    def stats(self) -> AdapterStats:
        s = self.link.delivery.stats()
        return AdapterStats(s.sent, s.acked, s.failed, s.resent, s.pending, self._garbage, self._opens)

    # --- the reader thread ----------------------------------------------------------------------

    def _run(self) -> None:
        low, high = self._backoff
        delay = low
        while not self._stop.is_set():
            port = self._open()
            if port is None:
                self._stop.wait(delay)
                delay = min(high, delay * 2)
                continue
            delay = low
            try:
                self._serve(port)
            except (serial.SerialException, OSError) as exc:
                self._metrics.port.labels(self.name, "lost").inc()
                log.warning(
                    "%s: 串口断开 serial port lost (%s): %s; 重新打开 reopening", self.name, self.device.port, exc
                )
            except Exception:  # a bug must not end the adapter: log it, reopen
                self._metrics.port.labels(self.name, "lost").inc()
                log.exception("%s: serial adapter failed; reopening the port", self.name)
            finally:
                self._close(port)
            self._stop.wait(low)

    def _open(self) -> SerialPort | None:
        try:
            port = self._open_port(self.device.port, self._serial_settings)
        except (serial.SerialException, OSError, ValueError) as exc:
            self._metrics.port.labels(self.name, "open_failed").inc()
            if (n := self._limit.due("open_failed")) is not None:
                log.warning("%s: 无法打开串口 cannot open %s (#%d): %s", self.name, self.device.port, n, exc)
            return None
        self._opens += 1
        self._metrics.port.labels(self.name, "opened").inc()
        self._metrics.port_open.labels(self.name).set(1)
        self._limit = _LogLimit()  # a fresh start logs its troubles again
        log.info("%s: 串口已打开 serial port open: %s (%s)", self.name, self.device.port, self.profile.id)
        self.port_open.set()
        self.link.set_online(True)
        return port

    def _close(self, port: SerialPort) -> None:
        with contextlib.suppress(Exception):
            port.close()
        self.port_open.clear()
        self._metrics.port_open.labels(self.name).set(0)
        self.link.set_online(False)

    def _serve(self, port: SerialPort) -> None:
        deframer = Deframer(self._framing)
        poll = self.profile.poll
        poll_bytes = self.profile.commands[poll.command].render({}, self._grammar.encoding) if poll else b""
        next_poll = self._monotonic()
        while not self._stop.is_set():
            self._write_commands(port)
            if poll is not None and self._monotonic() >= next_poll:
                port.write(poll_bytes)
                next_poll = self._monotonic() + poll.every
            self.link.resend_due()
            data = port.read(min(max(port.in_waiting, 1), READ_CHUNK))
            if data:
                for item in deframer.feed(data):
                    self._take(item)

    def _write_commands(self, port: SerialPort) -> None:
        while True:
            try:
                spec, data = self._commands.get_nowait()
            except queue.Empty:
                return
            if data:
                port.write(data)
            if spec.emit_next:
                self._force_next = True
            self._metrics.commands.labels(self.name, "sent").inc()

    def _take(self, item: Frame | Garbage) -> None:
        parsed = item if isinstance(item, Garbage) else parse_frame(self._grammar, item.body, self.device.settings)
        if isinstance(parsed, Garbage):
            self._refuse(parsed)
        elif isinstance(parsed, DeviceError):
            self._metrics.frames.labels(self.name, "device_error").inc()
            self._metrics.device_errors.labels(self.name, parsed.code).inc()
            if (n := self._limit.due(f"device:{parsed.code}")) is not None:
                log.warning(
                    "%s: 设备报告错误 device reports %s (%s, #%d)", self.name, parsed.code, parsed.frame_type, n
                )
        elif isinstance(parsed, Reply):
            self._metrics.frames.labels(self.name, "reply").inc()
        else:
            self._publish(parsed)

    def _publish(self, reading: Reading) -> None:
        if not self._force_next and reading.repeats(self._last.get(reading.kind)):
            self._metrics.frames.labels(self.name, "repeat").inc()
            return
        model = self._models.get(reading.kind)
        if model is not None:
            try:
                model.model_validate(reading.data)
            except ValidationError as exc:
                detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:2])
                self._refuse(Garbage(GarbageReason.INVALID_EVENT, repr(reading.data)[:32].encode(), detail))
                return
        if not self._rate.take():
            self._metrics.dropped.labels(self.name, "rate").inc()
            if (n := self._limit.due("rate")) is not None:
                log.warning("%s: 事件过快, 丢弃 too many events per second, dropped (#%d)", self.name, n)
            return
        self._force_next = False
        self._last[reading.kind] = reading
        self.link.send(reading.kind, reading.data, self._clock())
        self._metrics.frames.labels(self.name, "event").inc()
        self._metrics.events.labels(self.name, reading.kind).inc()

    def _refuse(self, garbage: Garbage) -> None:
        self._garbage += 1
        self._metrics.garbage.labels(self.name, garbage.reason.value).inc()
        if (n := self._limit.due(f"garbage:{garbage.reason}")) is not None:
            log.warning(
                "%s: 无效数据 garbage from the serial device (%s, #%d): %r %s",
                self.name,
                garbage.reason.value,
                n,
                garbage.sample,
                garbage.detail,
            )

    # --- commands from the bus (paho's thread) ----------------------------------------------------

    def _command(self, name: str, payload: bytes) -> None:
        spec = self.profile.commands.get(name)
        if spec is None:
            self._metrics.commands.labels(self.name, "unknown").inc()
            known = ", ".join(self.profile.commands) or "-"
            log.warning("%s: 未知命令 unknown command %r (known: %s)", self.name, name[:64], known)
            return
        try:
            values = json.loads(payload) if payload.strip() else {}
            if not isinstance(values, dict):
                raise ValueError("the payload must be empty or a JSON object of parameters")
            data = spec.render(values, self._grammar.encoding)
        except ValueError as exc:
            self._metrics.commands.labels(self.name, "bad_params").inc()
            log.warning("%s: 命令参数错误 command %s refused: %s", self.name, name, exc)
            return
        try:
            self._commands.put_nowait((spec, data))
        except queue.Full:
            self._metrics.dropped.labels(self.name, "commands_full").inc()
            log.warning("%s: 命令过多, 丢弃 too many commands queued, %s dropped", self.name, name)


def _registered_kinds() -> dict[str, type[BaseModel]]:
    """The data models of the event kinds the box takes, to refuse here what the box would refuse."""
    from edge.bus.event_kinds import device_event_kinds

    return {kind: spec.model for kind, spec in device_event_kinds().items()}


# --- running the adapters of a box or of a gateway ---------------------------------------------------


def build_adapters(
    devices: Sequence[SerialDevice],
    catalog: ProfileCatalog,
    *,
    store_id: str,
    mqtt_host: str,
    mqtt_port: int,
    metrics: SerialMetrics,
    clock: Clock = utc_now,
    **options: Any,
) -> list[SerialAdapter]:
    """An adapter for each device whose profile loaded; the others are logged and skipped (the box serves on)."""
    for problem in catalog.problems:
        log.error("固件档案无效 invalid firmware profile: %s", problem)
    adapters: list[SerialAdapter] = []
    for device in devices:
        try:
            profile = catalog.get(device.profile)
            adapters.append(
                SerialAdapter(
                    device,
                    profile,
                    store_id=store_id,
                    mqtt_host=mqtt_host,
                    mqtt_port=mqtt_port,
                    metrics=metrics,
                    clock=clock,
                    **options,
                )
            )
        except (UnknownProfile, ValueError) as exc:
            log.error("%s: 串口设备未启动 serial device not started: %s", device.device, exc)
    return adapters


def stop_adapters(adapters: Sequence[SerialAdapter], timeout: float = 5.0) -> None:
    threads = [threading.Thread(target=a.stop, args=(timeout,), daemon=True) for a in adapters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 3.0)


def broker_address(settings: Settings) -> tuple[str, int, bool]:
    """Where the box's own devices connect: the embedded broker, or the external one of `mqtt_url` (host,
    port, TLS); the adapters log in there with the serial devices' credentials like any device."""
    if settings.mqtt_url is not None:
        from edge.bus.broker_url import parse_broker_url

        url = parse_broker_url(settings.mqtt_url)
        return url.host, url.port, url.tls
    return connectable_host(settings.mqtt_host), settings.mqtt_port, False


async def run_serial_adapters(
    settings: Settings, *, registry: CollectorRegistry, clock: Clock = utc_now, mqtt_port: int | None = None
) -> None:
    """The box's serial adapters, from start until this task is cancelled (the box's stop)."""
    devices = serial_devices(settings)
    if not devices:
        return
    host, port, tls = broker_address(settings)
    catalog = await asyncio.to_thread(read_profiles, settings.firmware_profiles_dir)
    adapters = build_adapters(
        devices,
        catalog,
        store_id=settings.store_id,
        mqtt_host=host,
        mqtt_port=mqtt_port or port,
        metrics=SerialMetrics(registry),
        clock=clock,
        tls=tls,
    )
    for adapter in adapters:
        adapter.start()
    try:
        await asyncio.Event().wait()
    finally:
        await asyncio.to_thread(stop_adapters, adapters)


def run_gateway(
    settings: Settings,
    *,
    mqtt_host: str,
    mqtt_port: int,
    stop: threading.Event,
    profiles_dir: Path | None = None,
    registry: CollectorRegistry | None = None,
    say: Callable[[str], None] = print,
) -> int:
    """`storebox serial run`: the configured adapters in this process until `stop` is set; the exit code."""
    devices = serial_devices(settings)
    if not devices:
        say("没有配置串口设备 no serial devices configured (setting serial_devices)")
        return 2
    catalog = read_profiles(profiles_dir or settings.firmware_profiles_dir)
    adapters = build_adapters(
        devices,
        catalog,
        store_id=settings.store_id,
        mqtt_host=connectable_host(mqtt_host),
        mqtt_port=mqtt_port,
        metrics=SerialMetrics(registry or CollectorRegistry()),
    )
    if not adapters:
        say("没有可启动的串口设备 no serial device could be started (see the log)")
        return 2
    for adapter in adapters:
        adapter.start()
    say(
        "串口网关已启动 serial gateway started: "
        + ", ".join(f"{a.name} ({a.profile.id} on {a.device.port})" for a in adapters)
        + f" -> {mqtt_host}:{mqtt_port}"
    )
    try:
        stop.wait()
    finally:
        stop_adapters(adapters)
    say("串口网关已停止 serial gateway stopped: " + ", ".join(f"{a.name} {a.stats()}" for a in adapters))
    return 0
