"""The offline terminal: its queue file, its item list, and the delivery contract across cut links and reboots.

Against a plain broker with a test-side acker standing in for the box (the real box is in
tests/edge/test_offline_replay.py); the link is cut with a real TCP relay.
"""

from __future__ import annotations

import base64
import hashlib
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from edge.demo.demo_json import DeviceLogin
from tests.tools.conftest import PlainBroker
from tools.sim.offline_terminal import (
    CachedItem,
    EventJournal,
    ItemCache,
    JournalCorrupt,
    LinkCutter,
    OfflineTerminal,
    QueuedEvent,
    UnknownCode,
    attachment_chunks,
)

STORE = "store-001"
WAIT = 15.0
LOGIN = DeviceLogin("pos-1", "pos", "pos-1", "secret-pw")
ITEMS = (CachedItem("MILK-1L", "牛奶", 500, ("6901234567892",)), CachedItem("BREAD", "面包", 300, ("6901234567809",)))
Policy = Callable[[str, dict[str, Any], int], dict[str, Any] | None]
OK = {"ok": True, "code": "ok", "message": "已过账", "message_en": "posted", "document": 1, "retry": False}


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class Acker:
    """Stands in for the box: every event in arrival order, answered as `policy` says (the first answer again
    for a resend, as the box does)."""

    def __init__(self, port: int, policy: Policy) -> None:
        self.arrivals: list[tuple[str, str, bytes]] = []  # (kind, id, payload), resends included
        self._answers: dict[str, dict[str, Any]] = {}
        self._attempts: dict[str, int] = {}
        self._policy = policy
        self._lock = threading.Lock()
        subscribed: queue.Queue[bool] = queue.Queue()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="acker")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"storebox/{STORE}/dev/+/evt/#", qos=1)
        self.client.on_subscribe = lambda c, u, mid, codes, p: subscribed.put(True)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.get(timeout=WAIT)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        device, kind = parts[3], parts[5]
        event = json.loads(msg.payload)
        with self._lock:
            self.arrivals.append((kind, event["id"], bytes(msg.payload)))
            self._attempts[event["id"]] = attempt = self._attempts.get(event["id"], 0) + 1
            ack = self._answers.get(event["id"])
            if ack is None:
                answer = self._policy(kind, event["data"], attempt)
                if answer is None:
                    return  # dropped unanswered: the terminal resends
                ack = self._answers[event["id"]] = {"id": event["id"], **answer}
        client.publish(f"storebox/{STORE}/dev/{device}/ack", json.dumps(ack, ensure_ascii=False), qos=1)

    def first_arrivals(self) -> list[str]:
        with self._lock:
            seen: dict[str, None] = {}
            for _, event_id, _ in self.arrivals:
                seen.setdefault(event_id)
            return list(seen)

    def payloads(self, event_id: str) -> set[bytes]:
        with self._lock:
            return {p for _, i, p in self.arrivals if i == event_id}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def make_acker(plain_broker: PlainBroker) -> Iterator[Callable[[Policy], Acker]]:
    ackers: list[Acker] = []

    def make(policy: Policy) -> Acker:
        ackers.append(Acker(plain_broker.port, policy))
        return ackers[-1]

    yield make
    for acker in ackers:
        acker.close()


@pytest.fixture
def cutter(plain_broker: PlainBroker) -> Iterator[LinkCutter]:
    link = LinkCutter("127.0.0.1", plain_broker.port)
    link.start()
    yield link
    link.close()


def refuse_thirteen(kind: str, data: dict[str, Any], attempt: int) -> dict[str, Any]:
    """OK, except a sale of 13: the stock is gone."""
    if kind == "sale" and data["lines"][0]["qty"] == 13:
        return {
            **OK,
            "ok": False,
            "code": "insufficient_stock",
            "message": "库存不足: 商品 MILK-1L 在 floor 需要 13, 可用 2, 缺 11",
            "message_en": "insufficient stock: item MILK-1L at floor needs 13, available 2, short by 11",
            "document": None,
        }
    return OK


@pytest.fixture
def make_terminal(tmp_path: Path, cutter: LinkCutter) -> Iterator[Callable[..., OfflineTerminal]]:
    terminals: list[OfflineTerminal] = []

    def make(**kwargs: Any) -> OfflineTerminal:
        values: dict[str, Any] = {
            "journal": tmp_path / "pos-1.queue",
            "items": ItemCache(ITEMS),
            "display": lambda line: None,
            "reconnect_delay": (0.02, 0.1),
            "fsync": False,
        }
        values.update(kwargs)
        terminal = OfflineTerminal(STORE, LOGIN, "127.0.0.1", cutter.port, **values)
        terminals.append(terminal)
        terminal.start()
        return terminal

    yield make
    for terminal in terminals:
        terminal.stop()


# --- across a cut link ------------------------------------------------------------------------------------------


def test_events_made_offline_go_out_in_the_order_made_once_the_link_is_back(
    make_acker: Callable[[Policy], Acker], cutter: LinkCutter, make_terminal: Callable[..., OfflineTerminal]
) -> None:
    acker = make_acker(refuse_thirteen)
    lines: list[str] = []
    terminal = make_terminal(display=lines.append)
    assert terminal.wait_online(WAIT)
    before = [terminal.sell([("MILK-1L", 1)]) for _ in range(5)]
    assert terminal.wait_idle(WAIT)

    cutter.cut()
    assert wait_until(lambda: not terminal.online)
    offline = [terminal.sell([("6901234567892" if n % 2 else "BREAD", 1 + n % 3)]) for n in range(300)]
    assert terminal.pending_ids() == offline
    assert not set(offline) & set(acker.first_arrivals())

    cutter.restore()
    assert terminal.wait_idle(WAIT)
    assert acker.first_arrivals() == before + offline  # in the order made, each id once answered
    assert len(terminal.acks) == 305 and terminal.failures == []
    assert any(line.startswith("… 离线 offline") for line in lines)
    assert any("resending 300 in order" in line for line in lines)


def test_a_cut_while_acks_are_in_flight_resends_and_every_event_is_answered_once(
    make_acker: Callable[[Policy], Acker], cutter: LinkCutter, make_terminal: Callable[..., OfflineTerminal]
) -> None:
    acker = make_acker(refuse_thirteen)
    terminal = make_terminal()
    assert terminal.wait_online(WAIT)
    cutter.cut()
    made = [terminal.sell([("BREAD", 13 if n % 50 == 7 else 1)]) for n in range(400)]
    cutter.restore()
    assert wait_until(lambda: len(terminal.acks) >= 40)
    cutter.cut()  # again, in the middle of the replay: some acks are lost with the connection
    cutter.restore()
    assert terminal.wait_idle(WAIT)
    assert acker.first_arrivals() == made
    assert set(terminal.acks) == set(made)
    assert [f.id for f in terminal.failures] == [made[n] for n in range(400) if n % 50 == 7]
    for event_id in made:
        assert len(acker.payloads(event_id)) == 1  # resent unchanged


def test_failed_acks_are_shown_to_the_clerk_with_their_reason_and_survive_a_reboot(
    tmp_path: Path, make_acker: Callable[[Policy], Acker], make_terminal: Callable[..., OfflineTerminal]
) -> None:
    make_acker(refuse_thirteen)
    lines: list[str] = []
    terminal = make_terminal(display=lines.append)
    assert terminal.wait_online(WAIT)
    failed = terminal.sell([("MILK-1L", 13)])
    terminal.sell([("MILK-1L", 1)])
    assert terminal.wait_idle(WAIT)
    [failure] = terminal.failures
    assert (failure.id, failure.code) == (failed, "insufficient_stock")
    assert "13×MILK-1L" in failure.summary
    shown = [line for line in lines if failed in line]
    assert len(shown) == 1 and "库存不足" in shown[0] and "insufficient stock" in shown[0]
    terminal.stop()

    rebooted = make_terminal()
    assert [f.id for f in rebooted.failures] == [failed]
    assert rebooted.failures[0].message_en.startswith("insufficient stock")
    rebooted.clear_failures()
    rebooted.stop()
    assert make_terminal().failures == []


def test_a_reboot_while_offline_keeps_the_queue_and_resends_it_unchanged(
    make_acker: Callable[[Policy], Acker], cutter: LinkCutter, make_terminal: Callable[..., OfflineTerminal]
) -> None:
    acker = make_acker(refuse_thirteen)
    cutter.cut()
    first = make_terminal()
    made = [first.sell([("BREAD", 1)]) for _ in range(60)]
    first.stop()  # the battery ran out

    lines: list[str] = []
    second = make_terminal(display=lines.append)
    assert second.restored == 60 and second.pending_ids() == made
    more = [second.sell([("MILK-1L", 2)]) for _ in range(10)]
    assert not set(more) & set(made)  # ids are never reused
    cutter.restore()
    assert second.wait_idle(WAIT)
    assert acker.first_arrivals() == made + more
    assert any("60 events queued from before" in line for line in lines)


def test_an_event_the_box_dropped_is_resent_after_a_while(
    make_acker: Callable[[Policy], Acker], make_terminal: Callable[..., OfflineTerminal]
) -> None:
    acker = make_acker(lambda kind, data, attempt: OK if attempt > 1 else None)
    terminal = make_terminal(resend_after=0.2)
    assert terminal.wait_online(WAIT)
    made = [terminal.sell([("BREAD", 1)]) for _ in range(5)]
    assert terminal.wait_idle(WAIT)
    assert acker.first_arrivals() == made
    assert terminal.resent >= 5


def test_a_silent_link_loss_is_noticed_by_the_keepalive(
    make_acker: Callable[[Policy], Acker], cutter: LinkCutter, make_terminal: Callable[..., OfflineTerminal]
) -> None:
    acker = make_acker(refuse_thirteen)
    terminal = make_terminal(keepalive=1)
    assert terminal.wait_online(WAIT)
    cutter.cut(silently=True)
    assert wait_until(lambda: not terminal.online)
    made = [terminal.sell([("BREAD", 1)]) for _ in range(20)]
    cutter.restore()
    assert terminal.wait_idle(WAIT)
    assert acker.first_arrivals() == made


def test_an_unknown_code_is_refused_on_the_terminal_and_nothing_is_queued(
    make_terminal: Callable[..., OfflineTerminal], cutter: LinkCutter
) -> None:
    cutter.cut()
    lines: list[str] = []
    terminal = make_terminal(display=lines.append)
    with pytest.raises(UnknownCode):
        terminal.sell([("BREAD", 1), ("6999999999999", 1)])
    assert terminal.pending_ids() == []
    assert lines == ["✗ 未知商品 unknown item: 6999999999999"]
    terminal.sell([("BREAD", 5)])
    assert terminal.items.on_hand("BREAD") is None  # no stock announced yet: nothing to warn about


def test_photos_and_signatures_travel_as_chunk_events_in_order(
    make_acker: Callable[[Policy], Acker], cutter: LinkCutter, make_terminal: Callable[..., OfflineTerminal]
) -> None:
    acker = make_acker(refuse_thirteen)
    cutter.cut()
    terminal = make_terminal(chunk_bytes=1000)
    photo = bytes(range(256)) * 20
    attachment = terminal.attach(photo, "photo", asn="ASN-7", supplier="sup-1")
    signature = terminal.attach(b"<svg/>" * 10, "signature", draft=3)
    cutter.restore()
    assert terminal.wait_idle(WAIT)
    sent = [json.loads(p)["data"] for kind, _, p in acker.arrivals if kind == "attachment"]
    photo_chunks = [d for d in sent if d["attachment"] == attachment]
    assert [d["seq"] for d in photo_chunks] == list(range(6))
    assert b"".join(base64.b64decode(d["data"]) for d in photo_chunks) == photo
    assert {(d["asn"], d["supplier"]) for d in photo_chunks} == {("ASN-7", "sup-1")}
    assert [d["draft"] for d in sent if d["attachment"] == signature] == [3]


def refuse_photos(kind: str, data: dict[str, Any], attempt: int) -> dict[str, Any]:
    """Sales post; every chunk of a photo is refused (the bytes are no image)."""
    if kind == "attachment":
        return {
            **OK,
            "ok": False,
            "code": "attachment_type_refused",
            "message": "验货照片的文件类型不支持: 只接受 image/jpeg, image/png",
            "message_en": "unsupported file type for the inspection photo: only image/jpeg, image/png",
            "document": None,
            "detail": {"attachment": data["attachment"]},
        }
    return OK


def store_photos(kind: str, data: dict[str, Any], attempt: int) -> dict[str, Any]:
    """Sales post; the last chunk of a photo stores it."""
    if kind == "attachment" and data["seq"] == data["count"] - 1:
        return {**OK, "document": None, "detail": {"attachment": data["attachment"], "stored": 9}}
    return OK


@pytest.mark.parametrize(
    ("policy", "summary"),
    [
        (refuse_photos, "made 2, posted 2, failed 0; attachments 1, stored 0, failed 1"),
        (store_photos, "made 2, posted 2, failed 0; attachments 1, stored 1, failed 0"),
        (refuse_thirteen, "made 2, posted 2, failed 0; attachments 1, stored 0, failed 0"),  # never said stored
    ],
)
def test_the_demo_counts_sales_and_attachments_each_on_their_own(
    tmp_path: Path,
    plain_broker: PlainBroker,
    make_acker: Callable[[Policy], Acker],
    policy: Policy,
    summary: str,
) -> None:
    from edge.demo.demo_json import DemoInfo, DemoItem, write_demo_json
    from tools.sim.offline_terminal import run_demo

    acker = make_acker(policy)
    demo_json = tmp_path / "demo.json"
    items = (DemoItem("BREAD", "6901234567809", "面包", "pcs"),)
    write_demo_json(
        demo_json, DemoInfo(STORE, "http://127.0.0.1:9", "127.0.0.1", plain_broker.port, (), (LOGIN,), items)
    )
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(bytes(range(256)) * 40)  # three chunks of 8 KiB at most
    lines: list[str] = []
    result = run_demo(
        demo_json,
        device="pos-1",
        journal=tmp_path / "pos-1.queue",
        sell=2,
        offline=False,
        photo=photo,
        asn="DN-B-51",
        supplier="sup-bev",
        seed=1,
        display=lines.append,
        timeout=WAIT,
    )
    assert result.summary() == summary
    sent = {json.loads(p)["data"]["supplier"] for kind, _, p in acker.arrivals if kind == "attachment"}
    assert sent == {"sup-bev"}  # the ASN goes with its supplier


def test_the_queue_file_holds_exactly_the_unanswered_events_while_acks_compact_it(
    tmp_path: Path, make_acker: Callable[[Policy], Acker], make_terminal: Callable[..., OfflineTerminal]
) -> None:
    make_acker(refuse_thirteen)
    terminal = make_terminal()
    assert terminal.wait_online(WAIT)
    for _ in range(6):
        for _ in range(100):
            terminal.sell([("BREAD", 1)])
        assert terminal.wait_idle(WAIT)
    assert len((tmp_path / "pos-1.queue").read_text().splitlines()) < 600  # compacted on the way
    for _ in range(100):
        terminal.sell([("BREAD", 1)])
    terminal.stop()  # at any moment: what the file holds is what is still unanswered
    state = EventJournal(tmp_path / "pos-1.queue").load()
    assert list(state.pending) == terminal.pending_ids()
    assert state.counter == 700


# --- the queue file --------------------------------------------------------------------------------------------


def event(n: int) -> QueuedEvent:
    return QueuedEvent(f"pos-1-{n}", "sale", json.dumps({"id": f"pos-1-{n}", "n": "数"}).encode(), f"sale {n}")


def test_journal_keeps_pending_events_in_order_and_failures_with_their_reason(tmp_path: Path) -> None:
    journal = EventJournal(tmp_path / "q", fsync=False)
    for n in range(1, 6):
        journal.append_event(event(n), n)
    journal.append_ack({"id": "pos-1-2", "ok": True, "code": "ok"})
    journal.append_ack({"id": "pos-1-4", "ok": False, "code": "x", "message": "不行", "message_en": "no"})
    state = EventJournal(tmp_path / "q").load()
    assert list(state.pending) == ["pos-1-1", "pos-1-3", "pos-1-5"]
    assert state.pending["pos-1-3"].payload == event(3).payload
    assert [(f.id, f.code, f.message, f.message_en, f.summary) for f in state.failures] == [
        ("pos-1-4", "x", "不行", "no", "sale 4")
    ]
    assert state.counter == 5

    journal.compact(state)
    compacted = EventJournal(tmp_path / "q").load()
    assert list(compacted.pending) == list(state.pending) and compacted.failures == state.failures
    assert compacted.counter == 5  # the next id is still new
    assert len((tmp_path / "q").read_text().splitlines()) == 1 + 1 + 3


def test_a_torn_last_line_is_dropped_and_a_damaged_earlier_line_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "q"
    journal = EventJournal(path, fsync=False)
    journal.append_event(event(1), 1)
    journal.append_event(event(2), 2)
    whole = path.read_bytes()
    path.write_bytes(whole[:-15])  # the power went mid-write: that event was never sent
    state = EventJournal(path).load()
    assert list(state.pending) == ["pos-1-1"] and state.torn

    terminal = OfflineTerminal(STORE, LOGIN, "127.0.0.1", 1, journal=path, display=lambda line: None, fsync=False)
    assert terminal.pending_ids() == ["pos-1-1"]
    assert path.read_bytes().endswith(b"\n")  # rewritten clean for the next append

    lines = whole.split(b"\n")
    path.write_bytes(lines[0][:20] + b"\n" + lines[1] + b"\n")
    with pytest.raises(JournalCorrupt, match=":1:"):
        EventJournal(path).load()


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(0, 2000), junk=st.binary(max_size=30))
def test_a_queue_file_cut_anywhere_loads_or_refuses_clearly(tmp_path_factory: Any, cut: int, junk: bytes) -> None:
    path = tmp_path_factory.mktemp("q") / "q"
    journal = EventJournal(path, fsync=False)
    for n in range(1, 8):
        journal.append_event(event(n), n)
    journal.append_ack({"id": "pos-1-3", "ok": True, "code": "ok"})
    ack_line = path.read_bytes().splitlines(keepends=True)[-1]
    path.write_bytes(path.read_bytes()[:cut] + junk)
    try:
        state = EventJournal(path).load()
    except JournalCorrupt:
        return
    ids = list(state.pending)
    assert ids == sorted(ids, key=lambda i: int(i.rsplit("-", 1)[1]))  # order kept
    if path.read_bytes().endswith(ack_line):
        assert "pos-1-3" not in ids


# --- the item list and the chunks ------------------------------------------------------------------------------


def test_item_cache_learns_stock_from_the_retained_topics_and_survives_a_reboot(tmp_path: Path) -> None:
    cache = ItemCache(ITEMS)
    assert cache.lookup("6901234567892") == ITEMS[0] and cache.lookup("BREAD") == ITEMS[1]
    assert cache.observe_stock(b'{"sku": "MILK-1L", "on_hand": {"floor": 8, "backroom": 24}, "ts": "x"}') == "MILK-1L"
    assert cache.observe_stock(b'{"sku": "EGGS", "on_hand": {"floor": 3}}') == "EGGS"  # now sellable by SKU
    assert cache.observe_stock(b"garbage") is None and cache.observe_stock(b'{"sku": 1, "on_hand": []}') is None
    assert cache.take("MILK-1L", 10, "floor") == -2
    cache.save(tmp_path / "items.json")
    loaded = ItemCache.load(tmp_path / "items.json")
    assert loaded.lookup("EGGS") == CachedItem("EGGS", "EGGS")
    assert loaded.on_hand("MILK-1L") == {"floor": -2, "backroom": 24}


def test_item_cache_from_the_api_has_barcodes_prices_and_stock(tmp_path: Path) -> None:
    from edge.db import connect, migrate
    from edge.ledger.masterdata import add_item
    from edge.security.roles import Role
    from edge.security.users import create_user
    from tests.edge.web.apibox import ServedBox

    path = tmp_path / "storebox.db"
    conn = connect(path)
    migrate(conn)
    with conn:
        add_item(
            conn,
            "COLA",
            "可乐",
            base_unit="piece",
            price_fen=350,
            units={"case": 24},
            barcodes={"6901": "piece", "6902": "case"},
        )
        add_item(conn, "MILK", "牛奶", base_unit="bottle", price_fen=1290, barcodes={"6903": "bottle"})
        add_item(conn, "RICE", "大米", base_unit="bag", price_fen=4990)
        create_user(conn, "clerk", "clerk-password", Role.CLERK, "店员")
    conn.close()
    served = ServedBox(path)
    served.start()
    try:
        token = served.auth(Role.CLERK)["Authorization"].split()[1]
        cache = ItemCache.from_api(served.url, token, page=2)  # pages of two: three items
    finally:
        served.stop()
    cola = cache.lookup("6902")
    assert cola is not None and cola.sku == "COLA" and cola.price_fen == 350
    assert set(cola.barcodes) == {"6901", "6902"}
    assert len(cache) == 3 and cache.on_hand("RICE") == {}


def test_attachment_chunks_split_a_file_and_name_its_digest() -> None:
    content = bytes(range(256)) * 41
    parts = attachment_chunks(content, "ph-1", "photo", {"asn": "A-1", "supplier": "sup-1"}, chunk_bytes=4000)
    assert [p["seq"] for p in parts] == [0, 1, 2] and {p["count"] for p in parts} == {3}
    assert b"".join(base64.b64decode(p["data"]) for p in parts) == content
    assert {p["sha256"] for p in parts} == {hashlib.sha256(content).hexdigest()}
    assert {p["size"] for p in parts} == {len(content)}
    with pytest.raises(ValueError):
        attachment_chunks(b"", "x", "photo", {"draft": 1})
    with pytest.raises(ValueError):
        attachment_chunks(b"x", "x", "photo", {"asn": "A", "supplier": "sup-1", "draft": 1})
    with pytest.raises(ValueError, match="supplier"):
        attachment_chunks(b"x", "x", "photo", {"asn": "A"})  # ASN ids are per supplier
