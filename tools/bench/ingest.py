"""Ingest benchmark: sale events from 20 simulated devices through the real broker of a real box.

Measures, in one run on one machine:
- the broker alone: publish -> echo through the same embedded broker (no ledger), messages/s;
- ingest: acked sale events/s at saturation, each event posted to the ledger and acked after commit;
- publish -> ack latency p50/p99 at a fixed 200 events/s;
- RSS of `storebox serve` after start, and start -> healthy time on a warm machine (second start).

Run: `python -m tools.bench.ingest` (or `make bench`). Prints a Markdown block for docs/benchmarks.md
and writes the raw figures as JSON next to the box's data.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil

from tools.box_process import BoxProcess

DEVICE_PREFIX = "bench-"


@dataclass
class RunResult:
    name: str
    messages: int
    seconds: float
    rate: float
    p50_ms: float
    p99_ms: float
    failed: int


class BenchDevice:
    """One device: keeps `window` messages in flight; each ack (or echo) releases the next."""

    def __init__(self, store: str, port: int, device: str, password: str) -> None:
        self.device = device
        self.base = f"storebox/{store}/dev/{device}"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{device}-bench", clean_session=True)
        self.client.username_pw_set(device, password)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.on_message = self._on_message
        self.connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: self.connected.set()
        self.client.connect("127.0.0.1", port, keepalive=60)
        self.client.loop_start()
        self.sent_at: dict[str, float] = {}
        self.latencies: list[float] = []
        self.failed = 0
        self.remaining = 0
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.mode = "ack"
        self.codes: list[str] = []
        self._n = 0

    def subscribe(self, mode: str) -> None:
        self.mode = mode
        topic = f"{self.base}/ack" if mode == "ack" else f"{self.base}/echo"
        result, _ = self.client.subscribe(topic, qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS

    def unsubscribe(self) -> None:
        self.client.unsubscribe([f"{self.base}/ack", f"{self.base}/echo"])

    def _payload(self, event_id: str) -> bytes:
        code = self.codes[self._n % len(self.codes)]
        self._n += 1
        body = {"id": event_id, "ts": "2026-11-25T10:00:00+08:00", "data": {"lines": [{"code": code, "qty": 1}]}}
        return json.dumps(body).encode()

    def send_one(self) -> None:
        event_id = uuid.uuid4().hex
        with self.lock:
            if self.remaining <= 0:
                return
            self.remaining -= 1
            self.sent_at[event_id] = time.perf_counter()
        payload = self._payload(event_id)
        topic = f"{self.base}/evt/sale" if self.mode == "ack" else f"{self.base}/echo"
        self.client.publish(topic, payload, qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        now = time.perf_counter()
        with self.lock:
            started = self.sent_at.pop(body["id"], None)
            if started is None:
                return
            self.latencies.append(now - started)
            if self.mode == "ack" and not body.get("ok"):
                self.failed += 1
            finished = self.remaining <= 0 and not self.sent_at
        if self.pacing is None:
            self.send_one()
        if finished:
            self.done.set()

    pacing: float | None = None

    def start(self, count: int, window: int | None, interval: float | None) -> None:
        self.latencies, self.failed, self.remaining = [], 0, count
        self.done.clear()
        self.pacing = interval
        if interval is None:
            for _ in range(window or 1):
                self.send_one()
        else:
            threading.Thread(target=self._paced, args=(interval,), daemon=True).start()

    def _paced(self, interval: float) -> None:
        next_at = time.perf_counter()
        while True:
            with self.lock:
                if self.remaining <= 0:
                    return
            self.send_one()
            next_at += interval
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _run(
    name: str, devices: list[BenchDevice], *, per_device: int, window: int | None, rate: float | None
) -> RunResult:
    interval = len(devices) / rate if rate else None
    began = time.perf_counter()
    for device in devices:
        device.start(per_device, window, interval)
    for device in devices:
        if not device.done.wait(timeout=600):
            raise TimeoutError(f"{name}: {device.device} did not finish")
    seconds = time.perf_counter() - began
    latencies = sorted(x for d in devices for x in d.latencies)
    total = len(latencies)
    return RunResult(
        name=name,
        messages=total,
        seconds=round(seconds, 3),
        rate=round(total / seconds, 1),
        p50_ms=round(statistics.median(latencies) * 1000, 2),
        p99_ms=round(latencies[int(0.99 * (total - 1))] * 1000, 2),
        failed=sum(d.failed for d in devices),
    )


def _token(box: BoxProcess, role: str) -> str:
    user = box.demo_json()["users"][role]
    data = f"username={user['username']}&password={user['password']}".encode()
    with urllib.request.urlopen(f"{box.url}/api/v1/auth/token", data=data, timeout=10) as response:
        return str(json.loads(response.read())["access_token"])


def _restock(box: BoxProcess, codes: list[str], qty: int) -> None:
    """Receive plenty of every benchmarked item through the API, so no sale runs out of stock."""
    token = _token(box, "manager")
    body = json.dumps({"lines": [{"code": c, "qty": qty} for c in codes], "location": "floor"}).encode()
    request = urllib.request.Request(
        f"{box.url}/api/v1/documents/receipt",
        data=body,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Idempotency-Key": uuid.uuid4().hex,
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status in (200, 201)


def _add_devices(data_dir: Path, count: int) -> dict[str, str]:
    from edge.db import connect, migrate
    from edge.security.devices import create_device

    data_dir.mkdir(parents=True, exist_ok=True)
    conn = connect(data_dir / "storebox.db")
    migrate(conn)
    passwords = {f"{DEVICE_PREFIX}{i:02d}": uuid.uuid4().hex for i in range(1, count + 1)}
    conn.execute("BEGIN")
    for device, password in passwords.items():
        create_device(conn, device, "pos", password)
    conn.execute("COMMIT")
    conn.close()
    return passwords


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--events", type=int, default=20000, help="events in the saturation runs")
    parser.add_argument("--window", type=int, default=32, help="events in flight per device at saturation")
    parser.add_argument("--latency-rate", type=float, default=200.0, help="events/s of the latency run")
    parser.add_argument("--latency-seconds", type=float, default=15.0)
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    args = parser.parse_args(argv)

    data_dir = Path(tempfile.mkdtemp(prefix="storebox-bench-"))
    passwords = _add_devices(data_dir, args.devices)
    box = BoxProcess(data_dir, extra_env={"STOREBOX_SQLITE_SYNCHRONOUS": args.synchronous})
    first_start = box.start(timeout=180)
    assert box.terminate() == 0
    warm_start = box.start(timeout=60)
    assert box.proc is not None
    rss_after_start = _tree_rss(box.proc.pid)
    try:
        codes = [item["barcode"] for item in box.demo_json()["items"][:20]]
        _restock(box, codes, args.events + 1000)
        devices = [BenchDevice(box.store_id, box.mqtt_port, d, p) for d, p in passwords.items()]
        for d in devices:
            d.connected.wait(10)
            d.codes = codes
        per_device = max(1, args.events // len(devices))

        for d in devices:
            d.subscribe("echo")
        time.sleep(0.5)  # let SUBACKs arrive before the first echo
        echo = _run("broker echo (no ledger)", devices, per_device=per_device, window=args.window, rate=None)
        for d in devices:
            d.unsubscribe()
            d.subscribe("ack")
        time.sleep(0.5)
        ingest = _run("ingest (acked sale events)", devices, per_device=per_device, window=args.window, rate=None)
        latency_events = max(1, int(args.latency_rate * args.latency_seconds / len(devices)))
        latency = _run(
            f"ingest at {args.latency_rate:.0f} events/s",
            devices,
            per_device=latency_events,
            window=None,
            rate=args.latency_rate,
        )
        rss_after_run = _tree_rss(box.proc.pid)
        for d in devices:
            d.close()
        assert box.terminate() == 0
        verify = box.cli("ledger", "verify", check=False)
    finally:
        box.stop()
    results = {
        "machine": {
            "cpus": psutil.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "command": "python -m tools.bench.ingest " + " ".join(argv or []),
        "synchronous": args.synchronous,
        "devices": args.devices,
        "runs": [asdict(r) for r in (echo, ingest, latency)],
        "ingest_to_echo_ratio": round(ingest.rate / echo.rate, 3),
        "rss_after_start_mb": round(rss_after_start / 2**20, 1),
        "rss_after_run_mb": round(rss_after_run / 2**20, 1),
        "first_start_s": round(first_start, 2),
        "warm_start_to_healthy_s": round(warm_start, 2),
        "ledger_verify_ok": verify.returncode == 0,
    }
    (data_dir / "bench-ingest.json").write_text(json.dumps(results, indent=2))
    print(_markdown(results))
    return results


def _tree_rss(pid: int) -> int:
    """RSS of the box and its writer process together."""
    process = psutil.Process(pid)
    return int(sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]))


def _markdown(r: dict[str, Any]) -> str:
    lines = [
        f"Machine: {r['machine']['cpus']} CPUs ({r['machine']['cpu']}), {r['machine']['memory_gb']} GiB, "
        f"Python {r['machine']['python']}, {r['machine']['platform']}",
        f"Command: `{r['command'].strip()}` (synchronous={r['synchronous']}, {r['devices']} devices)",
        "",
        "| run | messages | seconds | per second | p50 ms | p99 ms | failed |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in r["runs"]:
        lines.append(
            f"| {run['name']} | {run['messages']} | {run['seconds']} | {run['rate']} | {run['p50_ms']} "
            f"| {run['p99_ms']} | {run['failed']} |"
        )
    lines += [
        "",
        f"- ingest / broker echo: **{r['ingest_to_echo_ratio']}**",
        f"- RSS of `storebox serve` (box and writer processes) after start: {r['rss_after_start_mb']} MB; "
        f"after the runs: {r['rss_after_run_mb']} MB",
        f"- start to healthy: first start with demo seeding {r['first_start_s']} s; warm start "
        f"{r['warm_start_to_healthy_s']} s",
        f"- `storebox ledger verify` after the runs: {'clean' if r['ledger_verify_ok'] else 'MISMATCHES'}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
