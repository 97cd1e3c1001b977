"""Scan-to-receive benchmark: a 50-line delivery note, from the QR scan on a handheld to the posted receipt.

Against a real `storebox serve --demo`: a purchase order of 50 demo items is posted through the API, the
supplier's Ed25519 key is registered, a delivery note for the whole PO is signed (tools/delivery_note.py).
The demo handheld `pda-1` then publishes `evt/receive` `open` with the QR text and, on its ack, `confirm`
with `as_announced: true`; the time is from publishing `open` to the `confirm` ack (receipt posted and
committed, stock topics published). Also timed: the same with all 50 lines scanned one by one before the
confirm. Repeated `--notes` times, each with a new PO and note.

Run: `python -m tools.bench.receive` (also in `make bench`). Prints a Markdown block for docs/benchmarks.md.
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
import urllib.request
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.devices.delivery_note import NoteLine
from tools.bench.ingest import _token
from tools.box_process import BoxProcess
from tools.delivery_note import public_key_of, qr_code, sign_note

LINES = 50


def _api(box: BoxProcess, token: str, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        f"{box.url}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Idempotency-Key": uuid.uuid4().hex,
        },
        method=method,
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


class Handheld:
    """The demo handheld over MQTT: publish an event, wait for its ack."""

    def __init__(self, store: str, port: int, device: str, password: str) -> None:
        self.base = f"storebox/{store}/dev/{device}"
        self.acks: dict[str, dict[str, Any]] = {}
        self.cond = threading.Condition()
        connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{device}-bench", clean_session=True)
        self.client.username_pw_set(device, password)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: (c.subscribe(f"{self.base}/ack", qos=1), connected.set())
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not connected.wait(10):
            raise TimeoutError("handheld did not connect")
        time.sleep(0.3)  # SUBACK

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        with self.cond:
            self.acks[str(body.get("id"))] = body
            self.cond.notify_all()

    def send(self, data: dict[str, Any]) -> dict[str, Any]:
        event_id = uuid.uuid4().hex
        body = {"id": event_id, "ts": datetime.now(UTC).isoformat(), "data": data}
        self.client.publish(f"{self.base}/evt/receive", json.dumps(body).encode(), qos=1)
        deadline = time.monotonic() + 30
        with self.cond:
            while event_id not in self.acks:
                if not self.cond.wait(deadline - time.monotonic()):
                    raise TimeoutError(f"no ack for {data.get('action')}")
            ack = self.acks.pop(event_id)
        if not ack["ok"]:
            raise RuntimeError(f"{data.get('action')} refused: {ack['code']} {ack['message_en']}")
        return ack

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notes", type=int, default=20, help="delivery notes received in each mode")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)

    data_dir = Path(tempfile.mkdtemp(prefix="storebox-bench-receive-"))
    box = BoxProcess(data_dir)
    box.start(timeout=180)
    try:
        demo = box.demo_json()
        token = _token(box, "manager")
        supplier = _api(box, token, "GET", "/api/v1/suppliers")[0]["id"]
        key = Ed25519PrivateKey.generate()
        _api(
            box,
            _token(box, "purchaser"),
            "POST",
            f"/api/v1/suppliers/{supplier}/signing-keys",
            {"public_key": public_key_of(key).hex()},
        )
        items = demo["items"][:LINES]
        pda = next(d for d in demo["devices"] if d["kind"] == "handheld")
        handheld = Handheld(box.store_id, box.mqtt_port, pda["username"], pda["password"])
        expiry = date.today() + timedelta(days=120)
        qr_versions: list[int] = []

        def one_note(scan_each: bool) -> float:
            lines = [{"code": item["barcode"], "qty": 3} for item in items]
            po = _api(
                box,
                token,
                "POST",
                "/api/v1/documents/purchase_order",
                {"lines": lines, "counterparty": supplier},
            )
            note_lines = [NoteLine(item=item["barcode"], qty=3, lot="L2611", expiry=expiry) for item in items]
            qr = sign_note(
                key,
                supplier=supplier,
                asn_id=f"ASN-{uuid.uuid4().hex[:12]}",
                po_no=po["doc_no"],
                lines=note_lines,
                issued_at=datetime.now(UTC),
            )
            qr_versions.append(int(qr_code(qr).version))  # type: ignore[arg-type]
            began = time.perf_counter()
            draft = handheld.send({"action": "open", "qr": qr, "location": "backroom"})["detail"]["draft"]
            if scan_each:
                for item in items:
                    handheld.send({"action": "scan", "draft": draft, "code": item["barcode"], "qty": 3, "lot": "L2611"})
                handheld.send({"action": "confirm", "draft": draft})
            else:
                handheld.send({"action": "confirm", "draft": draft, "as_announced": True})
            return time.perf_counter() - began

        one_note(False)  # warm-up: first posting of each item, caches
        announced = [one_note(False) for _ in range(args.notes)]
        scanned = [one_note(True) for _ in range(max(1, args.notes // 4))]
        handheld.close()
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
        "command": "python -m tools.bench.receive " + " ".join(argv),
        "lines": LINES,
        "qr_version": max(qr_versions),
        "as_announced_ms": {
            "n": len(announced),
            "median": round(statistics.median(announced) * 1000, 1),
            "p95": round(_percentile(announced, 0.95) * 1000, 1),
            "max": round(max(announced) * 1000, 1),
        },
        "scan_each_ms": {
            "n": len(scanned),
            "median": round(statistics.median(scanned) * 1000, 1),
            "max": round(max(scanned) * 1000, 1),
        },
        "ledger_verify_ok": verify.returncode == 0,
    }
    (data_dir / "bench-receive.json").write_text(json.dumps(results, indent=2))
    print(_markdown(results))
    return results


def _markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    a, s = r["as_announced_ms"], r["scan_each_ms"]
    return "\n".join(
        [
            f"Machine: {m['cpus']} CPUs ({m['cpu']}), {m['memory_gb']} GiB, Python {m['python']}, {m['platform']}",
            f"Command: `{r['command'].strip()}` ({r['lines']}-line notes, QR version {r['qr_version']} at ECC M)",
            "",
            "| path | notes | median ms | p95 ms | max ms |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| QR scan (`open`) -> `confirm` as announced -> receipt posted and acked | {a['n']} | {a['median']} "
            f"| {a['p95']} | {a['max']} |",
            f"| QR scan, 50 `scan` events, `confirm` | {s['n']} | {s['median']} | | {s['max']} |",
            "",
            f"- `storebox ledger verify` after the run: {'clean' if r['ledger_verify_ok'] else 'MISMATCHES'}",
        ]
    )


if __name__ == "__main__":
    main()
