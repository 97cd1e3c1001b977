"""Fleet benchmark: 200 simulated MQTT devices plus 8 serial devices on ptys against a real box, for a minute.

The MQTT fleet is 150 POS tills (sale tickets), 40 handhelds (scans) and 10 cold-room sensors (readings),
each a paho client with its own credentials, together offering `--rate` events/s spread evenly over the
devices. The serial devices are simulated scanners and scales on pseudo-terminal pairs, read by the box's
own serial adapters (setting `serial_devices`). Measured over the sustained minute:

- acked events/s (every event's ack, ok or refused, counted once), p50/p99 publish -> ack latency;
- CPU of the box (box and writer processes, % of one core) and RSS (peak of samples);
- after the run, `storebox ledger verify`.

Run: `python -m tools.bench.fleet` (also in `make bench`). Prints a Markdown block for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil

from tools.bench.ingest import _restock, _tree_rss
from tools.box_process import BoxProcess

KINDS = (("pos", 150), ("handheld", 40), ("sensor", 10))


@dataclass
class FleetDevice:
    """One MQTT device sending its kind's events at a fixed interval and timing each ack."""

    device: str
    kind: str
    password: str
    store: str
    codes: list[str]
    sent_at: dict[str, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    client: mqtt.Client | None = None
    n: int = 0

    def connect(self, port: int) -> threading.Event:
        connected = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{self.device}-fleet", clean_session=True)
        client.username_pw_set(self.device, self.password)
        client.max_inflight_messages_set(100)
        client.on_message = self._on_message
        client.on_connect = lambda c, u, f, rc, p: (c.subscribe(f"{self.base}/ack", qos=1), connected.set())
        client.connect("127.0.0.1", port, keepalive=60)
        client.loop_start()
        self.client = client
        return connected

    @property
    def base(self) -> str:
        return f"storebox/{self.store}/dev/{self.device}"

    def event(self) -> tuple[str, dict[str, Any]]:
        self.n += 1
        code = self.codes[(self.n * 7 + len(self.device)) % len(self.codes)]
        if self.kind == "pos":
            return "sale", {"lines": [{"code": code, "qty": 1}], "payment": "wechat"}
        if self.kind == "handheld":
            return "scan", {"code": code, "qty": 1, "mode": "sale"}
        return "temp", {"celsius": round(2.5 + (self.n % 10) / 10, 1), "location": "cold"}

    def send(self) -> None:
        assert self.client is not None
        event_id = uuid.uuid4().hex
        kind, data = self.event()
        body = {"id": event_id, "ts": "2026-11-25T10:00:00+08:00", "data": data}
        with self.lock:
            self.sent_at[event_id] = time.perf_counter()
        self.client.publish(f"{self.base}/evt/{kind}", json.dumps(body).encode(), qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        now = time.perf_counter()
        with self.lock:
            started = self.sent_at.pop(body.get("id"), None)
            if started is None:
                return
            self.latencies.append(now - started)
            if not body.get("ok"):
                self.failed += 1

    def close(self) -> None:
        if self.client is not None:
            self.client.loop_stop()
            self.client.disconnect()


def _add_devices(data_dir: Path) -> dict[str, tuple[str, str]]:
    from edge.db import connect, migrate
    from edge.security.devices import create_device

    data_dir.mkdir(parents=True, exist_ok=True)
    conn = connect(data_dir / "storebox.db")
    migrate(conn)
    devices: dict[str, tuple[str, str]] = {}
    conn.execute("BEGIN")
    for kind, count in KINDS:
        for i in range(1, count + 1):
            device, password = f"fleet-{kind}-{i:03d}", uuid.uuid4().hex
            create_device(conn, device, kind, password)
            devices[device] = (kind, password)
    conn.execute("COMMIT")
    conn.close()
    return devices


def _drive(devices: list[FleetDevice], rate: float, seconds: float) -> float:
    """Offer `rate` events/s in total for `seconds`, round-robin over the devices, from one pacing thread."""
    interval = 1.0 / rate
    began = time.perf_counter()
    next_at = began
    i = 0
    while next_at - began < seconds:
        devices[i % len(devices)].send()
        i += 1
        next_at += interval
        delay = next_at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    return time.perf_counter() - began


def _cpu_seconds(pid: int) -> float:
    process = psutil.Process(pid)
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        times = p.cpu_times()
        total += times.user + times.system
    return total


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=400.0, help="events/s offered by the MQTT fleet in total")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the sustained run")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)

    data_dir = Path(tempfile.mkdtemp(prefix="storebox-bench-fleet-"))
    logins = _add_devices(data_dir)
    serial = _serial_fleet(data_dir)
    box = BoxProcess(data_dir, extra_env=serial.env)
    box.start(timeout=180)
    assert box.proc is not None
    try:
        codes = [item["barcode"] for item in box.demo_json()["items"][:40]]
        _restock(box, codes, int(args.rate * args.seconds) + 1000)
        devices = [FleetDevice(d, kind, pw, box.store_id, codes) for d, (kind, pw) in logins.items()]
        waits = [d.connect(box.mqtt_port) for d in devices]
        for w in waits:
            if not w.wait(30):
                raise TimeoutError("a fleet device did not connect")
        time.sleep(1.0)  # SUBACKs in
        serial.codes, serial.store, serial.port = codes, box.store_id, box.mqtt_port
        serial.start()
        cpu_before, wall_before = _cpu_seconds(box.proc.pid), time.perf_counter()
        rss_peak = 0
        sampler_stop = threading.Event()

        def sample() -> None:
            nonlocal rss_peak
            while not sampler_stop.wait(1.0):
                rss_peak = max(rss_peak, _tree_rss(box.proc.pid))  # type: ignore[union-attr]

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        offered_seconds = _drive(devices, args.rate, args.seconds)
        deadline = time.perf_counter() + 30
        while any(d.sent_at for d in devices) and time.perf_counter() < deadline:
            time.sleep(0.05)
        wall = time.perf_counter() - wall_before
        cpu = _cpu_seconds(box.proc.pid) - cpu_before
        sampler_stop.set()
        serial_stats = serial.stop()
        latencies = sorted(x for d in devices for x in d.latencies)
        unanswered = sum(len(d.sent_at) for d in devices)
        for d in devices:
            d.close()
        assert box.terminate() == 0
        verify = box.cli("ledger", "verify", check=False)
    finally:
        box.stop()
        serial.close()
    total = len(latencies)
    results = {
        "machine": {
            "cpus": psutil.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "command": "python -m tools.bench.fleet " + " ".join(argv),
        "mqtt_devices": len(devices),
        "serial_devices": serial.count,
        "offered_rate": args.rate,
        "seconds": round(offered_seconds, 1),
        "acked": total,
        "acked_per_s": round(total / wall, 1),
        "failed": sum(d.failed for d in devices),
        "unanswered": unanswered,
        "p50_ms": round(statistics.median(latencies) * 1000, 2) if latencies else None,
        "p99_ms": round(latencies[int(0.99 * (total - 1))] * 1000, 2) if latencies else None,
        "box_cpu_pct_of_one_core": round(100 * cpu / wall, 1),
        "rss_peak_mb": round(rss_peak / 2**20, 1),
        "serial": serial_stats,
        "ledger_verify_ok": verify.returncode == 0,
    }
    (data_dir / "bench-fleet.json").write_text(json.dumps(results, indent=2))
    print(_markdown(results))
    return results


# --- the serial part: 8 devices on pty pairs, read by the box's own serial adapters ------------------------

SERIAL = (
    ("fleet-scanner-1", "scanner", "serial-barcode-scanner"),
    ("fleet-scanner-2", "scanner", "serial-barcode-scanner"),
    ("fleet-scanner-3", "scanner", "serial-barcode-scanner"),
    ("fleet-scanner-4", "scanner", "serial-barcode-scanner"),
    ("fleet-scale-1", "scale", "mettler-toledo-mt-sics"),
    ("fleet-scale-2", "scale", "mettler-toledo-mt-sics"),
    ("fleet-scale-3", "scale", "cn-retail-scale-continuous"),
    ("fleet-scale-4", "scale", "mettler-toledo-continuous"),
)


@dataclass
class SerialFleet:
    """Simulators on the master side of pty pairs; the box opens the slave sides (setting serial_devices).

    Scanners scan a code every `scan_interval` seconds (sale mode); scales get a new load every few
    seconds. Acks are counted by a watcher client per device that logs in with the device's credentials.
    """

    env: dict[str, str] = field(default_factory=dict)
    count: int = 0
    sims: list[Any] = field(default_factory=list)
    pairs: list[Any] = field(default_factory=list)
    logins: dict[str, str] = field(default_factory=dict)
    acks: dict[str, list[int]] = field(default_factory=dict)
    watchers: list[mqtt.Client] = field(default_factory=list)
    scan_interval: float = 0.5
    codes: list[str] = field(default_factory=list)
    store: str = ""
    port: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for device, password in self.logins.items():
            counts = self.acks.setdefault(device, [0, 0])
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{device}-watch", clean_session=True)
            client.username_pw_set(device, password)
            topic = f"storebox/{self.store}/dev/{device}/ack"

            def on_message(c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage, counts: list[int] = counts) -> None:
                counts[0 if json.loads(msg.payload).get("ok") else 1] += 1

            client.on_message = on_message
            client.on_connect = lambda c, u, f, rc, p, topic=topic: c.subscribe(topic, qos=1)
            client.connect("127.0.0.1", self.port)
            client.loop_start()
            self.watchers.append(client)
        for sim in self.sims:
            sim.start()
        thread = threading.Thread(target=self._drive, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _drive(self) -> None:
        from tools.sim.serial_devices import ScannerSim

        n = 0
        while not self._stop.wait(self.scan_interval):
            n += 1
            for sim in self.sims:
                if isinstance(sim, ScannerSim):
                    sim.scan(self.codes[n % len(self.codes)])
                elif n % 6 == 0:
                    sim.place(100 + (n * 37) % 2900, settle=2)

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        time.sleep(2.0)  # the last acks
        for client in self.watchers:
            client.loop_stop()
            client.disconnect()
        scans = sum(getattr(sim, "scans", 0) for sim in self.sims)
        return {
            "scans_sent": scans,
            "acked_ok": sum(c[0] for c in self.acks.values()),
            "acked_failed": sum(c[1] for c in self.acks.values()),
        }

    def close(self) -> None:
        for sim in self.sims:
            sim.stop()
        for pair in self.pairs:
            pair.close()


def _serial_fleet(data_dir: Path) -> SerialFleet:
    from edge.db import connect
    from edge.security.devices import create_device
    from tools.sim.serial_devices import ContinuousScaleSim, MtSicsScaleSim, PtyPair, ScannerSim

    fleet = SerialFleet()
    conn = connect(data_dir / "storebox.db")
    entries = []
    conn.execute("BEGIN")
    for device, kind, profile in SERIAL:
        password = uuid.uuid4().hex
        create_device(conn, device, kind, password)
        pair = PtyPair()
        sim: Any
        if profile == "serial-barcode-scanner":
            sim = ScannerSim(pair)
        elif profile == "mettler-toledo-mt-sics":
            sim = MtSicsScaleSim(pair)
        elif profile == "cn-retail-scale-continuous":
            sim = ContinuousScaleSim(pair, fmt="st-gs")
        else:
            sim = ContinuousScaleSim(pair, fmt="toledo")
        fleet.pairs.append(pair)
        fleet.sims.append(sim)
        fleet.logins[device] = password
        entries.append({"device": device, "profile": profile, "port": pair.slave_name, "password": password})
    conn.execute("COMMIT")
    conn.close()
    fleet.env = {"STOREBOX_SERIAL_DEVICES": json.dumps(entries)}
    fleet.count = len(entries)
    return fleet


def _markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    return "\n".join(
        [
            f"Machine: {m['cpus']} CPUs ({m['cpu']}), {m['memory_gb']} GiB, Python {m['python']}, {m['platform']}",
            f"Command: `{r['command'].strip()}` ({r['mqtt_devices']} MQTT devices, {r['serial_devices']} serial)",
            "",
            "| offered/s | seconds | acked | acked/s | failed | unanswered | p50 ms | p99 ms | box CPU % | RSS MB |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {r['offered_rate']:.0f} | {r['seconds']} | {r['acked']} | {r['acked_per_s']} | {r['failed']} "
            f"| {r['unanswered']} | {r['p50_ms']} | {r['p99_ms']} | {r['box_cpu_pct_of_one_core']} "
            f"| {r['rss_peak_mb']} |",
            "",
            f"- serial devices: {json.dumps(r['serial'], ensure_ascii=False)}",
            f"- `storebox ledger verify` after the run: {'clean' if r['ledger_verify_ok'] else 'MISMATCHES'}",
        ]
    )


if __name__ == "__main__":
    main()
