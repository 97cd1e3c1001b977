"""A handheld or POS terminal that keeps working while the box is unreachable (离线作业).

The clerk sells, scans, receives and photographs as usual. The terminal checks codes against its cached item
list (from the API or the box's retained `stock/#` topics), gives each event its id at once and appends it to
its queue file before anything else, so a reboot keeps the queue. While the box is reachable every event goes
out at once; after a reconnect everything not yet acked goes out again, in the order it was made, unchanged
(the delivery contract of docs/devices.md). A failed ack is final: it is shown to the clerk with its reason
and kept in `failures`. Photos and signatures travel as chunked `evt/attachment` events like any other event.

`LinkCutter` is the network cable between a terminal and the box, for demos and tests: cut it (the box is
gone: connections drop, new ones are refused, or packets silently vanish) and restore it.

Run against a demo box: `python -m tools.sim.offline_terminal var/demo.json --sell 200 --offline`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import logging
import os
import random
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.demo.demo_json import DeviceLogin, read_demo_json

log = logging.getLogger(__name__)
ROOT = "storebox"
DEFAULT_CHUNK_BYTES = 8192  # base64 of 8 KiB plus the envelope stays well under the 16 KiB payload limit
Display = Callable[[str], None]


class UnknownCode(ValueError):
    """A code that is not in the terminal's item list: the clerk is told at once and nothing is queued."""

    def __init__(self, code: str) -> None:
        super().__init__(f"未知商品 unknown item: {code}")
        self.code = code


class JournalCorrupt(RuntimeError):
    """The queue file has a damaged line before its end (a torn last line is expected and dropped)."""


# --- the cached item list -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CachedItem:
    sku: str
    name: str
    price_fen: int | None = None
    barcodes: tuple[str, ...] = ()


class ItemCache:
    """The items the terminal knows, by SKU and barcode, with the last on-hand the box announced.

    Offline, the terminal counts its own sales down from that on-hand, only to warn the clerk: the box
    decides when the events arrive.
    """

    def __init__(self, items: Iterable[CachedItem] = ()) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, CachedItem] = {}
        self._codes: dict[str, str] = {}
        self._on_hand: dict[str, dict[str, int]] = {}
        for item in items:
            self.add(item)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def add(self, item: CachedItem) -> None:
        with self._lock:
            self._items[item.sku] = item
            self._codes[item.sku] = item.sku
            for code in item.barcodes:
                self._codes[code] = item.sku

    def lookup(self, code: str) -> CachedItem | None:
        with self._lock:
            sku = self._codes.get(code)
            return None if sku is None else self._items[sku]

    def on_hand(self, sku: str) -> dict[str, int] | None:
        with self._lock:
            stock = self._on_hand.get(sku)
            return None if stock is None else dict(stock)

    def observe_stock(self, payload: bytes) -> str | None:
        """Take one retained `storebox/<store>/stock/<sku>` message; returns its SKU (None if unreadable)."""
        try:
            body = json.loads(payload)
            sku, on_hand = body["sku"], body["on_hand"]
            if not isinstance(sku, str) or not isinstance(on_hand, dict):
                return None
            stock = {str(loc): int(qty) for loc, qty in on_hand.items()}
        except (ValueError, KeyError, TypeError):
            return None
        with self._lock:
            if sku not in self._items:  # an item the box has stock of: sellable by its SKU
                self._items[sku] = CachedItem(sku, sku)
                self._codes[sku] = sku
            self._on_hand[sku] = stock
        return sku

    def take(self, sku: str, qty: int, location: str) -> int | None:
        """Count `qty` down locally; returns what is left by the terminal's reckoning (None if unknown)."""
        with self._lock:
            stock = self._on_hand.get(sku)
            if stock is None:
                return None
            stock[location] = stock.get(location, 0) - qty
            return stock[location]

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "items": [
                    {"sku": i.sku, "name": i.name, "price_fen": i.price_fen, "barcodes": list(i.barcodes)}
                    for i in self._items.values()
                ],
                "on_hand": self._on_hand,
            }

    def save(self, path: Path) -> None:
        """Keep the list on the terminal (atomically), so that it still sells after a reboot without the box."""
        _write_atomically(path, json.dumps(self.to_json(), ensure_ascii=False).encode())

    @classmethod
    def load(cls, path: Path) -> ItemCache:
        body = json.loads(path.read_bytes())
        cache = cls(
            CachedItem(i["sku"], i["name"], i.get("price_fen"), tuple(i.get("barcodes", ()))) for i in body["items"]
        )
        for sku, stock in body.get("on_hand", {}).items():
            cache._on_hand[sku] = {str(k): int(v) for k, v in stock.items()}
        return cache

    @classmethod
    def from_api(cls, base_url: str, token: str, *, timeout: float = 10.0, page: int = 500) -> ItemCache:
        """The item list from the box's API (`items:read`): SKUs, names, prices, barcodes and on-hand."""
        import httpx

        cache = cls()
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base_url, headers=headers, timeout=timeout) as client:
            offset = 0
            while True:
                response = client.get("/api/v1/items", params={"limit": page, "offset": offset})
                response.raise_for_status()
                rows = response.json()
                for row in rows:
                    detail = client.get(f"/api/v1/items/{row['sku']}")
                    detail.raise_for_status()
                    body = detail.json()
                    codes = tuple(str(b["code"]) for b in body.get("barcodes", []))
                    cache.add(CachedItem(row["sku"], row["name"], row["price_fen"], codes))
                    with cache._lock:
                        cache._on_hand[row["sku"]] = {str(k): int(v) for k, v in body.get("on_hand", {}).items()}
                if len(rows) < page:
                    return cache
                offset += page


# --- the queue file -------------------------------------------------------------------------------------


@dataclass(slots=True)
class QueuedEvent:
    """An event made on the terminal and not yet answered (kept unchanged for every resend)."""

    id: str
    kind: str
    payload: bytes
    summary: str
    last_sent: float | None = None  # monotonic; None = not on the wire over the current connection


@dataclass(frozen=True, slots=True)
class FailedEvent:
    """An event the box refused for good, as the clerk sees it."""

    id: str
    kind: str
    summary: str
    code: str
    message: str
    message_en: str

    def line(self) -> str:
        return f"✗ {self.summary} [{self.id}] 未成功 failed: {self.message} / {self.message_en} ({self.code})"


@dataclass(slots=True)
class JournalState:
    counter: int = 0  # events ever made on this terminal: the next id's number
    pending: dict[str, QueuedEvent] = field(default_factory=dict)  # in the order made
    failures: list[FailedEvent] = field(default_factory=list)
    torn: bool = False


class EventJournal:
    """The terminal's queue as a file of JSON lines, each appended and synced before it counts.

    `{"event": ...}` when an event is made (before it is sent), `{"ack": ...}` when its final ack came, and at
    the head of a compacted file `{"counter": n}` and `{"failed": ...}`. A power cut can tear only the last
    line: that event was never sent (it is appended before the send), so it is dropped.
    """

    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self.path = path
        self._fsync = fsync
        self._lock = threading.Lock()
        self._lines = 0

    def load(self) -> JournalState:
        state = JournalState()
        if not self.path.exists():
            return state
        raw = self.path.read_bytes().split(b"\n")
        last = len(raw) - 1  # the part after the final newline: empty unless the last write was torn
        for number, line in enumerate(raw, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                self._apply(state, record)
            except (ValueError, KeyError, TypeError) as exc:
                if number - 1 == last:
                    state.torn = True
                    log.warning("%s: torn last line dropped (an event never sent)", self.path)
                    continue
                raise JournalCorrupt(f"{self.path}:{number}: damaged queue line ({exc})") from exc
            self._lines += 1
        if raw[last].strip() and not state.torn:
            state.torn = True  # a complete record without its newline: rewrite so the next append starts clean
        return state

    @staticmethod
    def _apply(state: JournalState, record: dict[str, Any]) -> None:
        if "event" in record:
            body = record["event"]
            event = QueuedEvent(body["id"], body["kind"], body["payload"].encode(), body["summary"])
            state.pending[event.id] = event
            state.counter = max(state.counter, int(body["n"]))
        elif "ack" in record:
            ack = record["ack"]
            event_id = str(ack["id"])
            if event_id in state.pending and not ack["ok"]:
                state.failures.append(_failure(state.pending[event_id], ack))
            state.pending.pop(event_id, None)
        elif "failed" in record:
            state.failures.append(FailedEvent(**record["failed"]))
        elif "counter" in record:
            state.counter = max(state.counter, int(record["counter"]))
        else:
            raise ValueError("unknown record")

    def append_event(self, event: QueuedEvent, number: int) -> None:
        body = {"id": event.id, "kind": event.kind, "payload": event.payload.decode(), "summary": event.summary}
        self._append({"event": {**body, "n": number}})

    def append_ack(self, ack: dict[str, Any]) -> None:
        keep = {"id": ack["id"], "ok": bool(ack.get("ok")), "code": ack.get("code")}
        if not keep["ok"]:
            keep.update(message=ack.get("message", ""), message_en=ack.get("message_en", ""))
        self._append({"ack": keep})

    @property
    def lines(self) -> int:
        return self._lines

    def _append(self, record: dict[str, Any]) -> None:
        data = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab") as fh:
                fh.write(data)
                fh.flush()
                if self._fsync:
                    os.fsync(fh.fileno())
            self._lines += 1

    def compact(self, state: JournalState) -> None:
        """Rewrite the file with only what is still needed: the counter, failures, pending events."""
        records: list[dict[str, Any]] = [{"counter": state.counter}]
        records.extend({"failed": _failure_json(f)} for f in state.failures)
        for event in state.pending.values():
            body = {"id": event.id, "kind": event.kind, "payload": event.payload.decode(), "summary": event.summary}
            records.append({"event": {**body, "n": state.counter}})
        data = b"".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode() + b"\n" for r in records)
        with self._lock:
            _write_atomically(self.path, data, fsync=self._fsync)
            self._lines = len(records)


def _failure(event: QueuedEvent, ack: dict[str, Any]) -> FailedEvent:
    return FailedEvent(
        event.id,
        event.kind,
        event.summary,
        str(ack.get("code")),
        str(ack.get("message", "")),
        str(ack.get("message_en", "")),
    )


def _failure_json(failure: FailedEvent) -> dict[str, str]:
    return {
        "id": failure.id,
        "kind": failure.kind,
        "summary": failure.summary,
        "code": failure.code,
        "message": failure.message,
        "message_en": failure.message_en,
    }


def _write_atomically(path: Path, data: bytes, *, fsync: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        if fsync:
            os.fsync(fh.fileno())
    os.replace(temp, path)


# --- attachments as chunk events ----------------------------------------------------------------------


def attachment_chunks(
    content: bytes, attachment: str, purpose: str, ref: dict[str, Any], chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> list[dict[str, Any]]:
    """The `data` of each `evt/attachment` chunk event of one file (docs/offline-terminals.md)."""
    if not content:
        raise ValueError("an attachment needs at least one byte")
    if chunk_bytes < 1:
        raise ValueError("chunk_bytes must be positive")
    if set(ref) not in ({"draft"}, {"receipt"}, {"asn", "supplier"}):
        # ASN ids are each supplier's own: an ASN goes with its supplier (from the delivery note).
        raise ValueError("ref is one of {'draft': id}, {'asn': id, 'supplier': id}, {'receipt': id}")
    digest = hashlib.sha256(content).hexdigest()
    pieces = [content[i : i + chunk_bytes] for i in range(0, len(content), chunk_bytes)]
    return [
        {
            "attachment": attachment,
            "purpose": purpose,
            **ref,
            "seq": seq,
            "count": len(pieces),
            "size": len(content),
            "sha256": digest,
            "data": base64.b64encode(piece).decode("ascii"),
        }
        for seq, piece in enumerate(pieces)
    ]


# --- the terminal -----------------------------------------------------------------------------------------


def rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class _Connection:
    """One MQTT connection; a new one (and a new paho client) after every drop, so that nothing paho still
    held from the old one overtakes the queue: after a reconnect events go out strictly in queue order."""

    client: mqtt.Client
    ack_mid: int | None = None
    subscribed: bool = False
    dead: bool = False


class OfflineTerminal:
    """A handheld or POS that works with or without the box; see the module docstring. Thread-safe."""

    def __init__(
        self,
        store_id: str,
        login: DeviceLogin,
        host: str,
        port: int,
        *,
        journal: Path,
        items: ItemCache | None = None,
        display: Display = print,
        resend_after: float = 5.0,
        keepalive: int = 10,
        reconnect_delay: tuple[float, float] = (0.05, 2.0),
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        location: str = "floor",
        fsync: bool = True,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.device_id = login.id
        self._login = login
        self._host, self._port = host, port
        self._prefix = f"{ROOT}/{store_id}/dev/{login.id}"
        self._ack_topic = f"{self._prefix}/ack"
        self._status_topic = f"{self._prefix}/status"
        self._stock_filter = f"{ROOT}/{store_id}/stock/#"
        self.items = items if items is not None else ItemCache()
        self._display = display
        self._resend_after = resend_after
        self._keepalive = keepalive
        self._delays = reconnect_delay
        self._chunk_bytes = chunk_bytes
        self._location = location
        self._clock = clock
        self._journal = EventJournal(journal, fsync=fsync)
        self._state = self._journal.load()
        if self._state.torn:
            self._journal.compact(self._state)
        self.restored = len(self._state.pending)  # events found in the queue file at start
        self._lock = threading.Lock()  # queue state; never held while calling paho
        self._order = threading.Lock()  # publishing order: held by whoever publishes from the queue
        self._idle = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._online = threading.Event()  # connected and listening for acks: events go out at once
        self._conn: _Connection | None = None
        self._thread: threading.Thread | None = None
        self.acks: dict[str, dict[str, Any]] = {}
        self.connections = 0
        self.sent = self.resent = 0
        self.attachment_events: dict[str, list[str]] = {}  # file id -> its chunk event ids, files sent this run

    # --- life cycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start working; connect in the background and keep reconnecting while the box is unreachable."""
        if self.restored:
            self._display(f"队列中有 {self.restored} 个未确认事件 {self.restored} events queued from before")
        self._thread = threading.Thread(target=self._run, name=f"{self.device_id}-link", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop (the queue stays in its file for the next start)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def online(self) -> bool:
        return self._online.is_set()

    def wait_online(self, timeout: float) -> bool:
        return self._online.wait(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every queued event has its final ack; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._state.pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    # --- what the clerk does --------------------------------------------------------------------------

    def sell(self, lines: Sequence[tuple[str, int]], *, payment: str | None = None) -> str:
        """A POS ticket (`evt/sale`) from codes in the item list; an unknown code is refused at once."""
        items = [self._known(code) for code, _ in lines]
        for item, (_, qty) in zip(items, lines, strict=True):
            if item is not None:
                self._count_down(item, qty)
        data: dict[str, Any] = {"lines": [{"code": code, "qty": qty} for code, qty in lines]}
        if payment is not None:
            data["payment"] = payment
        summary = "销售 sale " + ", ".join(f"{qty}×{code}" for code, qty in lines)
        return self.send("sale", data, summary)

    def scan(self, code: str, qty: int = 1, mode: str = "sale", **fields: Any) -> str:
        """One handheld scan (`evt/scan`) in a mode: sale, return, count, receive."""
        item = self._known(code)
        if item is not None and mode == "sale":
            self._count_down(item, qty)
        data = {"code": code, "qty": qty, "mode": mode, **fields}
        return self.send("scan", data, f"扫码 scan {mode} {qty}×{code}")

    def attach(
        self,
        content: bytes,
        purpose: str,
        *,
        asn: str | None = None,
        supplier: str | None = None,
        draft: int | None = None,
        receipt: int | None = None,
    ) -> str:
        """A photo at inspection (`photo`) or the deliverer's signature (`signature`) as chunk events; its id.

        It names a receipt draft, a receipt, or an ASN with its supplier (both from the delivery note).
        """
        pairs = (("asn", asn), ("supplier", supplier), ("draft", draft), ("receipt", receipt))
        refs = {k: v for k, v in pairs if v is not None}
        with self._lock:
            number = self._state.counter + 1
        attachment = f"{purpose[:3]}-{number:07d}-{uuid.uuid4().hex[:8]}"
        chunks = attachment_chunks(content, attachment, purpose, refs, self._chunk_bytes)
        label = {"photo": "验货照片 photo", "signature": "电子签收 signature"}.get(purpose, purpose)
        ref_text = ", ".join(f"{k} {v}" for k, v in refs.items())
        events = [
            self.send("attachment", chunk, f"{label} {attachment} ({ref_text}) {chunk['seq'] + 1}/{len(chunks)}")
            for chunk in chunks
        ]
        with self._lock:
            self.attachment_events[attachment] = events
        return attachment

    def send(self, kind: str, data: dict[str, Any], summary: str | None = None) -> str:
        """Make one event: id now, into the queue file, out at once when online. Any kind (`receive`, ...)."""
        with self._order:
            # File and queue change together (a compaction after an ack rewrites the file from the queue).
            with self._lock:
                self._state.counter += 1
                number = self._state.counter
                event_id = f"{self.device_id}-{number:07d}-{uuid.uuid4().hex[:8]}"
                body = {"id": event_id, "ts": rfc3339(self._clock()), "data": data}
                payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
                event = QueuedEvent(event_id, kind, payload, summary or kind)
                self._journal.append_event(event, number)  # kept before it can be sent: a reboot keeps it
                self._state.pending[event_id] = event
            if self._online.is_set() and self._conn is not None:
                self._publish(self._conn, [event])
        return event_id

    # --- what the terminal shows -------------------------------------------------------------------------

    @property
    def failures(self) -> list[FailedEvent]:
        """Failures in the order the events were made (an id carries the terminal's zero-padded counter), not the
        order the answers came in: after a cut, resent events may be answered out of order."""
        with self._lock:
            return sorted(self._state.failures, key=lambda f: f.id)

    def pending_ids(self) -> list[str]:
        with self._lock:
            return list(self._state.pending)

    def attachment_outcome(self, attachment: str) -> Literal["stored", "failed"] | None:
        """What became of a file sent this run: `stored` once a chunk's ack says the box has it whole, `failed`
        once any chunk was refused (the file is refused as a whole), else None (still on its way)."""
        with self._lock:
            acks = [self.acks.get(event_id) for event_id in self.attachment_events.get(attachment, ())]
        if any(ack is not None and ack.get("ok") and "stored" in (ack.get("detail") or {}) for ack in acks):
            return "stored"
        if any(ack is not None and not ack.get("ok") for ack in acks):
            return "failed"
        return None

    def clear_failures(self) -> None:
        """The clerk has seen the failures."""
        with self._lock:
            self._state.failures.clear()
            self._journal.compact(self._state)

    # --- inside -----------------------------------------------------------------------------------------------

    def _known(self, code: str) -> CachedItem | None:
        if not len(self.items):
            return None  # no list yet: the box decides
        item = self.items.lookup(code)
        if item is None:
            self._display(f"✗ 未知商品 unknown item: {code}")
            raise UnknownCode(code)
        return item

    def _count_down(self, item: CachedItem, qty: int) -> None:
        left = self.items.take(item.sku, qty, self._location)
        if left is not None and left < 0 and not self.online:
            self._display(f"! {item.sku} 本机库存不足, 联网后可能被拒 may be refused when the box is back ({left})")

    def _publish(self, conn: _Connection, events: list[QueuedEvent]) -> None:
        """Publish in the order given; the caller holds `_order` (and not `_lock`: paho takes its own locks)."""
        now = time.monotonic()
        with self._lock:
            for event in events:
                if event.last_sent is None:
                    self.sent += 1
                else:
                    self.resent += 1
                event.last_sent = now
        for event in events:
            conn.client.publish(f"{self._prefix}/evt/{event.kind}", event.payload, qos=1)

    def _run(self) -> None:
        delay = self._delays[0]
        while not self._stopping.is_set():
            conn = self._connect()
            if conn is None:
                self._stopping.wait(delay)
                delay = min(delay * 2, self._delays[1])
                continue
            delay = self._delays[0]
            self._serve(conn)
            self._close(conn)
            if not self._stopping.is_set():
                with self._lock:
                    waiting = len(self._state.pending)
                self._display(f"… 离线 offline: 联网后重发 {waiting} 个事件 {waiting} events wait for the box")

    def _connect(self) -> _Connection | None:
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"{self.device_id}-offline-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv311,
            clean_session=True,
            reconnect_on_failure=False,
        )
        client.username_pw_set(self._login.username, self._login.password)
        client.will_set(self._status_topic, "offline", qos=1, retain=True)
        conn = _Connection(client)
        client.on_connect = lambda c, u, flags, rc, props: self._connected(conn, rc)
        client.on_subscribe = lambda c, u, mid, codes, props: self._subscribed(conn, mid, codes)
        client.on_disconnect = lambda c, u, flags, rc, props: self._dropped(conn)
        client.on_message = lambda c, u, message: self._message(message)
        try:
            client.connect(self._host, self._port, keepalive=self._keepalive)
        except (OSError, ValueError):
            return None
        self.connections += 1
        self._conn = conn
        client.loop_start()
        return conn

    def _serve(self, conn: _Connection) -> None:
        """While the connection lives: once it listens for acks send the whole queue, then resend what is due."""
        tick = max(0.02, min(self._resend_after / 4, 0.5))
        # A box that takes the TCP connection but never answers (a dead link) is given up like a refusal.
        give_up = time.monotonic() + max(2.0, 1.5 * self._keepalive)
        while not self._stopping.is_set() and not conn.dead:
            if not conn.subscribed and time.monotonic() > give_up:
                return
            if conn.subscribed and not self._online.is_set():
                with self._order:
                    with self._lock:
                        queued = list(self._state.pending.values())
                    self._online.set()
                    self._publish(conn, queued)
                if queued:
                    self._display(f"✓ 已联网 online: 按顺序重发 {len(queued)} 个事件 resending {len(queued)} in order")
            elif self._online.is_set():
                self._resend_due(conn)
            self._wake.wait(tick)
            self._wake.clear()

    def _resend_due(self, conn: _Connection) -> None:
        with self._order:
            cutoff = time.monotonic() - self._resend_after
            with self._lock:
                due = [e for e in self._state.pending.values() if e.last_sent is None or e.last_sent <= cutoff]
            if due:
                self._publish(conn, due)

    def _close(self, conn: _Connection) -> None:
        self._online.clear()
        with self._order:
            self._conn = None
        if self._stopping.is_set() and not conn.dead:
            info = conn.client.publish(self._status_topic, "offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(1.0)
            conn.client.disconnect()
        conn.client.loop_stop()

    # --- paho callbacks (its network thread) ----------------------------------------------------------------

    def _connected(self, conn: _Connection, reason_code: Any) -> None:
        if reason_code.is_failure:
            log.warning("%s: connection refused: %s", self.device_id, reason_code)
            conn.dead = True
            self._wake.set()
            return
        conn.client.publish(self._status_topic, "online", qos=1, retain=True)
        _, mid = conn.client.subscribe([(self._ack_topic, 1), (self._stock_filter, 0)])
        conn.ack_mid = mid

    def _subscribed(self, conn: _Connection, mid: int, codes: Any) -> None:
        if mid == conn.ack_mid and not codes[0].is_failure:
            conn.subscribed = True
            self._wake.set()

    def _dropped(self, conn: _Connection) -> None:
        conn.dead = True
        self._online.clear()
        self._wake.set()

    def _message(self, message: mqtt.MQTTMessage) -> None:
        if message.topic == self._ack_topic:
            self._take_ack(bytes(message.payload))
        elif message.topic.startswith(self._stock_filter[:-1]):
            self.items.observe_stock(bytes(message.payload))

    def _take_ack(self, payload: bytes) -> None:
        try:
            ack = json.loads(payload)
            event_id = ack["id"]
        except (ValueError, KeyError, TypeError):
            log.warning("%s: unreadable ack %r", self.device_id, payload[:200])
            return
        failure: FailedEvent | None = None
        with self._lock:
            event = self._state.pending.get(event_id) if isinstance(event_id, str) else None
            if event is None or ack.get("retry"):
                return  # the ack of a resend, or "not posted, send again later" (resent when due)
            del self._state.pending[event_id]
            self.acks[event_id] = ack
            self._journal.append_ack(ack)
            if not ack.get("ok"):
                failure = _failure(event, ack)
                self._state.failures.append(failure)
            if self._journal.lines > 4 * (len(self._state.pending) + len(self._state.failures)) + 256:
                self._journal.compact(self._state)
            self._idle.notify_all()
        if failure is not None:
            self._display(failure.line())


# --- the network cable ------------------------------------------------------------------------------------


class LinkCutter:
    """A TCP relay on 127.0.0.1 in front of the box's MQTT port whose link can be cut and restored.

    `cut()` drops every connection and refuses new ones (the box is switched off or the cable pulled);
    `cut(silently=True)` keeps the sockets but lets nothing through (a dead Wi-Fi): the terminal notices only
    by its MQTT keepalive.
    """

    def __init__(self, target_host: str, target_port: int, *, listen_host: str = "127.0.0.1") -> None:
        self._target = (target_host, target_port)
        self._listen_host = listen_host
        self.port = 0
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._passing = threading.Event()
        self._passing.set()
        self._generation = 0  # a full cut ends every pump of the connections before it
        self.connections = 0

    def start(self) -> int:
        """Listen (on a free port the first time, the same port after a restore); returns the port."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self._listen_host, self.port))
        listener.listen(64)
        self.port = int(listener.getsockname()[1])
        with self._lock:
            self._listener = listener
        self._passing.set()
        threading.Thread(target=self._accept, args=(listener,), name="link-cutter", daemon=True).start()
        return self.port

    def cut(self, *, silently: bool = False) -> None:
        self._passing.clear()
        if silently:
            return
        with self._lock:
            self._generation += 1
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        if listener is not None:
            with contextlib.suppress(OSError):  # wakes the thread blocked in accept(); close alone would not
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def restore(self) -> None:
        with self._lock:
            listening = self._listener is not None
        if listening:
            self._passing.set()
        else:
            self.start()

    def close(self) -> None:
        self.cut()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                inner, _ = listener.accept()
            except OSError:
                return  # cut or closed
            try:
                outer = socket.create_connection(self._target, timeout=5)
            except OSError:
                inner.close()
                continue
            outer.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut while this one was being accepted
                    inner.close()
                    outer.close()
                    return
                self._sockets.update((inner, outer))
                generation = self._generation
            self.connections += 1
            for source, sink in ((inner, outer), (outer, inner)):
                threading.Thread(target=self._pump, args=(source, sink, generation), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, generation: int) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                # Silently cut: the bytes wait here (as in a full TCP window) and go on once restored.
                while not self._passing.wait(0.05):
                    if self._generation != generation:
                        return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


# --- a demo against a running demo box ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What a demo run came to: its sales, and its attachments (each file once, however many chunks)."""

    made: int
    posted: int
    failed: int
    attachments: int = 0
    attachments_stored: int = 0
    attachments_failed: int = 0

    def summary(self) -> str:
        return (
            f"made {self.made}, posted {self.posted}, failed {self.failed};"
            f" attachments {self.attachments}, stored {self.attachments_stored}, failed {self.attachments_failed}"
        )


def run_demo(
    demo_json: Path,
    *,
    device: str | None,
    journal: Path,
    sell: int,
    offline: bool,
    photo: Path | None = None,
    asn: str | None = None,
    supplier: str | None = None,
    seed: int | None = None,
    display: Display = print,
    timeout: float = 120.0,
) -> DemoResult:
    """Sell `sell` tickets from the cached list (with the link cut while `offline`), then reconnect and wait."""
    info = read_demo_json(demo_json)
    handhelds = [d for d in info.devices if d.kind in ("handheld", "pos")]
    login = info.device(device) if device else handhelds[0]
    cutter = LinkCutter(info.mqtt_host, info.mqtt_port)
    cutter.start()
    items = ItemCache(CachedItem(i.sku, i.name, None, (i.barcode,)) for i in info.items)
    terminal = OfflineTerminal(
        info.store_id, login, "127.0.0.1", cutter.port, journal=journal, items=items, display=display
    )
    rng = random.Random(seed)
    terminal.start()
    try:
        if not terminal.wait_online(30):
            raise TimeoutError("the box did not answer within 30 s / 无法连接盒子")
        if offline:
            cutter.cut()
            display(f"网络已断开 link cut: selling {sell} tickets offline")
        codes = [i.barcode for i in info.items]
        sales = [
            terminal.sell([(rng.choice(codes), rng.randint(1, 3))], payment=rng.choice(["cash", "wechat", "alipay"]))
            for _ in range(sell)
        ]
        files: list[str] = []
        if photo is not None:
            files.append(
                terminal.attach(photo.read_bytes(), "photo", asn=asn or "DEMO-ASN", supplier=supplier or "sup-bev")
            )
        if offline:
            cutter.restore()
            display("网络已恢复 link restored")
        if not terminal.wait_idle(timeout):
            raise TimeoutError(f"{len(terminal.pending_ids())} events still unanswered after {timeout:g} s")
        # Counted from this run's own events: failures kept from an earlier run, or of attachment chunks, are not
        # sales of this run.
        posted = sum(1 for event_id in sales if terminal.acks[event_id].get("ok"))
        outcomes = [terminal.attachment_outcome(name) for name in files]
        return DemoResult(sell, posted, sell - posted, len(files), outcomes.count("stored"), outcomes.count("failed"))
    finally:
        terminal.stop()
        cutter.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.sim.offline_terminal", description="离线终端模拟 a terminal that works offline"
    )
    parser.add_argument("demo_json", nargs="?", type=Path, default=Path("var/demo.json"))
    parser.add_argument("--device", help="a handheld or POS of demo.json (default: the first)")
    parser.add_argument("--journal", type=Path, default=None, help="the queue file (default: var/<device>.queue)")
    parser.add_argument("--sell", type=int, default=100, help="tickets to sell")
    parser.add_argument("--offline", action="store_true", help="cut the link while selling, then restore it")
    parser.add_argument("--photo", type=Path, default=None, help="also send this JPEG/PNG as an inspection photo")
    parser.add_argument("--asn", default=None, help="the ASN id the photo belongs to (default DEMO-ASN)")
    parser.add_argument("--supplier", default=None, help="the supplier of that ASN (default sup-bev)")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    device = args.device or next(d.id for d in read_demo_json(args.demo_json).devices if d.kind in ("handheld", "pos"))
    journal = args.journal or args.demo_json.parent / f"{device}.queue"
    result = run_demo(
        args.demo_json,
        device=device,
        journal=journal,
        sell=args.sell,
        offline=args.offline,
        photo=args.photo,
        asn=args.asn,
        supplier=args.supplier,
        seed=args.seed,
    )
    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
