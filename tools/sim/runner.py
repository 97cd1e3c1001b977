"""Run the simulated devices of a demo box: a POS (pos-1), a handheld (pda-1), a cold-room sensor (cold-1),
and on pty pairs a serial scale (scale-1) and a serial scanner (scanner-1) behind their serial adapters.

`main()` is what `storebox simulate` calls: it waits for demo.json and for the broker, then runs until
SIGINT/SIGTERM (or `duration`), printing one line a minute. One thread schedules every device and a
paho network thread per device does the I/O, so the whole thing idles at a few percent of a core.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.demo.demo_json import DemoFileError, DemoInfo, DeviceLogin, read_demo_json
from tools.sim.devices import ColdRoomSensor, Event, Handheld, PosTill
from tools.sim.link import DeviceLink, LinkStats
from tools.sim.serial_devices import DemoSerialDevices

Say = Callable[[str], None]
EXIT_OK = 0
EXIT_NO_BOX = 1
EXIT_BAD_DEMO_JSON = 2


def _print(line: str) -> None:
    print(line, flush=True)


@dataclass(frozen=True, slots=True)
class SimOptions:
    """Knobs of a simulation run; the defaults make a lively but light demo."""

    seed: int | None = None
    pos_interval: tuple[float, float] = (1.0, 3.0)
    handheld_interval: tuple[float, float] = (8.0, 20.0)
    sensor_interval: float = 5.0
    resend_after: float = 10.0
    max_pending: int = 500
    report_every: float = 60.0
    tick: float = 0.25
    serial: bool = True  # the serial scale and scanner on ptys, when demo.json has them
    scale_interval: tuple[float, float] = (6.0, 15.0)
    scanner_interval: tuple[float, float] = (20.0, 45.0)


@dataclass(frozen=True, slots=True)
class SimStats:
    """Totals over all simulated devices, and per device."""

    sent: int
    acked: int
    failed: int
    resent: int
    pending: int
    devices: tuple[tuple[str, LinkStats], ...] = field(default=())

    @classmethod
    def of(cls, links: list[DeviceLink]) -> SimStats:
        per_device = tuple((link.device_id, link.stats()) for link in links)
        total = sum((s for _, s in per_device), LinkStats())
        return cls(total.sent, total.acked, total.failed, total.resent, total.pending, per_device)


@dataclass(slots=True)
class _Device:
    link: DeviceLink
    make: Callable[[], Event]
    delay: Callable[[], float]
    due: float


def connectable_host(host: str) -> str:
    """The address to dial for a broker bound to `host` (a wildcard bind means this machine)."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::", "[::]") else host


def _find(info: DemoInfo, kind: str, preferred: str) -> DeviceLogin | None:
    logins = [d for d in info.devices if d.kind == kind]
    return next((d for d in logins if d.id == preferred), logins[0] if logins else None)


def _failure_reporter(say: Say) -> Callable[[str, dict[str, Any]], None]:
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def report(device: str, ack: dict[str, Any]) -> None:
        code = str(ack.get("code"))
        with lock:
            seen[code] = seen.get(code, 0) + 1
            count = seen[code]
        if count <= 3 or count % 100 == 0:
            say(f"[sim] {device} 失败 failed ({code}, #{count}): {ack.get('message')} / {ack.get('message_en')}")

    return report


def _build_devices(info: DemoInfo, opts: SimOptions, say: Say, monotonic: Callable[[], float]) -> list[_Device]:
    rng = random.Random(opts.seed)
    host, port = connectable_host(info.mqtt_host), info.mqtt_port
    on_failure = _failure_reporter(say)
    devices: list[_Device] = []

    def link(login: DeviceLogin, **kwargs: Any) -> DeviceLink:
        return DeviceLink(
            info.store_id,
            login,
            host,
            port,
            resend_after=opts.resend_after,
            max_pending=opts.max_pending,
            on_failure=on_failure,
            monotonic=monotonic,
            **kwargs,
        )

    now = monotonic()
    pos = _find(info, "pos", "pos-1")
    if pos is not None:
        till = PosTill(info.items, random.Random(rng.random()), opts.pos_interval)
        devices.append(_Device(link(pos), till.next_event, till.next_delay, now + till.next_delay()))
    pda = _find(info, "handheld", "pda-1")
    if pda is not None:
        handheld = Handheld(info.items, random.Random(rng.random()), opts.handheld_interval)

        def stock_news(topic: str, payload: bytes) -> None:
            try:
                news = json.loads(payload)
                handheld.observe_stock(str(news["sku"]), dict(news["on_hand"]))
            except (ValueError, KeyError, TypeError):
                return

        pda_link = link(pda, subscriptions=(f"storebox/{info.store_id}/stock/+",), on_message=stock_news)
        devices.append(_Device(pda_link, handheld.next_event, handheld.next_delay, now + handheld.next_delay()))
    sensor_login = _find(info, "sensor", "cold-1")
    if sensor_login is not None:
        sensor = ColdRoomSensor(random.Random(rng.random()), opts.sensor_interval)
        devices.append(
            _Device(link(sensor_login), lambda: sensor.next_event(datetime.now()), sensor.next_delay, now + 1.0)
        )
    return devices


def run_simulators(
    demo_json: Path,
    *,
    duration: float | None,
    stop_event: threading.Event | None = None,
    options: SimOptions | None = None,
    say: Say = _print,
    monotonic: Callable[[], float] = time.monotonic,
) -> SimStats:
    """Run the POS, handheld and sensor of `demo_json` until `stop_event` is set or `duration` passes."""
    opts = options or SimOptions()
    stop = stop_event or threading.Event()
    info = read_demo_json(Path(demo_json))
    devices = _build_devices(info, opts, say, monotonic)
    links = [d.link for d in devices]
    serial_rig = _serial_devices(info, opts) if opts.serial else None
    started = monotonic()
    deadline = None if duration is None else started + duration
    next_report = started + opts.report_every
    last = SimStats.of(links)
    for link in links:
        link.start()
    say(
        f"[sim] 模拟设备已启动 simulators started: {', '.join(link.device_id for link in links)}"
        f" -> {connectable_host(info.mqtt_host)}:{info.mqtt_port}"
    )
    if serial_rig is not None:
        serial_rig.start()
        say(f"[sim] 串口设备 serial devices on ptys: {serial_rig.describe()}")
    try:
        while not stop.is_set():
            now = monotonic()
            if deadline is not None and now >= deadline:
                break
            for device in devices:
                if now >= device.due:
                    if device.link.has_room:  # else the device waits for acks before making more
                        event = device.make()
                        device.link.send(event.kind, event.data)
                    device.due = now + device.delay()
                device.link.resend_due()
            if now >= next_report:
                stats = SimStats.of(links)
                say(_report_line(stats, last, links))
                last = stats
                next_report = now + opts.report_every
            stop.wait(opts.tick)
    finally:
        for link in links:
            link.stop()
        if serial_rig is not None:
            serial_rig.stop()
            say(f"[sim] 串口设备 serial devices: {serial_rig.report()}")
    return SimStats.of(links)


def _serial_devices(info: DemoInfo, opts: SimOptions) -> DemoSerialDevices | None:
    scale = _find(info, "scale", "scale-1")
    scanner = _find(info, "scanner", "scanner-1")
    if scale is None and scanner is None:
        return None
    return DemoSerialDevices(
        info.store_id,
        connectable_host(info.mqtt_host),
        info.mqtt_port,
        scale=scale,
        scanner=scanner,
        codes=[item.barcode for item in info.items],
        rng=random.Random(opts.seed),
        scale_interval=opts.scale_interval,
        scanner_interval=opts.scanner_interval,
    )


def _report_line(stats: SimStats, last: SimStats, links: list[DeviceLink]) -> str:
    online = sum(1 for link in links if link.connected)
    return (
        f"[sim] {time.strftime('%H:%M:%S')} 发送 sent {stats.sent} (+{stats.sent - last.sent})"
        f" 确认 acked {stats.acked} (+{stats.acked - last.acked})"
        f" 失败 failed {stats.failed} (+{stats.failed - last.failed})"
        f" 重发 resent {stats.resent} 待确认 pending {stats.pending} 在线 online {online}/{len(links)}"
    )


def wait_for_file(path: Path, deadline: float, stop: threading.Event, *, poll: float = 0.5) -> bool:
    """True once `path` exists; False at the deadline (monotonic seconds) or when stopped."""
    while not stop.is_set():
        if path.exists():
            return True
        if time.monotonic() >= deadline:
            return False
        stop.wait(poll)
    return False


def probe_broker(host: str, port: int, login: DeviceLogin, *, timeout: float = 3.0) -> str | None:
    """Connect once as `login` and disconnect; None when the broker accepted, else why not.

    An MQTT handshake rather than a bare TCP probe: the broker logs no half-open connection, and wrong
    credentials in demo.json show up here with a clear reason.
    """
    answer: list[str | None] = []
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"{login.id}-probe-{uuid.uuid4().hex[:6]}",
        protocol=mqtt.MQTTv311,
    )
    client.username_pw_set(login.username, login.password)
    client.on_connect = lambda c, u, f, rc, p: answer.append(str(rc) if rc.is_failure else None)
    try:
        client.connect(host, port, keepalive=10)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    try:
        deadline = time.monotonic() + timeout
        while not answer and time.monotonic() < deadline:
            if client.loop(timeout=0.1) != mqtt.MQTT_ERR_SUCCESS:
                break
        if answer and answer[0] is None:
            client.disconnect()
            client.loop(timeout=0.1)
    finally:
        sock = client.socket()
        if sock is not None:
            sock.close()
    return answer[0] if answer else "no CONNACK"


def wait_for_broker(
    host: str, port: int, login: DeviceLogin, deadline: float, stop: threading.Event, *, poll: float = 1.0
) -> str | None:
    """None once the broker accepts `login`; else the last reason, at the deadline or when stopped."""
    reason: str | None = "stopped"
    while not stop.is_set():
        reason = probe_broker(host, port, login)
        if reason is None or time.monotonic() >= deadline:
            return reason
        stop.wait(poll)
    return reason


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set `stop` on SIGINT/SIGTERM while inside (only the main thread may install handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(
    demo_json_path: Path | str,
    duration: float | None = None,
    wait_for_box: bool = True,
    *,
    wait_timeout: float = 120.0,
    options: SimOptions | None = None,
    stop_event: threading.Event | None = None,
    say: Say = _print,
) -> int:
    """`storebox simulate`: wait for demo.json and the broker, then simulate until SIGINT/SIGTERM.

    Returns the exit code: 0 after a normal stop, 1 when the box did not appear within `wait_timeout`
    seconds, 2 when demo.json cannot be read.
    """
    path = Path(demo_json_path)
    stop = stop_event or threading.Event()
    with _stop_on_signals(stop):
        deadline = time.monotonic() + wait_timeout
        if wait_for_box and not path.exists():
            say(f"[sim] 等待 waiting for {path} ...")
            if not wait_for_file(path, deadline, stop):
                say(f"[sim] 未找到 not found: {path} (先运行 run `storebox serve --demo` first)")
                return EXIT_OK if stop.is_set() else EXIT_NO_BOX
        try:
            info = read_demo_json(path)
        except (OSError, DemoFileError) as exc:
            say(f"[sim] 无法读取 cannot read {path}: {exc}")
            return EXIT_BAD_DEMO_JSON
        host, port = connectable_host(info.mqtt_host), info.mqtt_port
        if wait_for_box and info.devices:
            reason = wait_for_broker(host, port, info.devices[0], deadline, stop)
            if stop.is_set():
                return EXIT_OK
            if reason is not None:
                say(f"[sim] MQTT 代理未接受连接 broker at {host}:{port} did not accept {info.devices[0].id}: {reason}")
                return EXIT_NO_BOX
        stats = run_simulators(path, duration=duration, stop_event=stop, options=options, say=say)
    say(
        f"[sim] 结束 stopped: 发送 sent {stats.sent} 确认 acked {stats.acked} 失败 failed {stats.failed}"
        f" 重发 resent {stats.resent} 待确认 pending {stats.pending}"
    )
    return EXIT_OK
