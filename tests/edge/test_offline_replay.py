"""Offline replay against the real box: a terminal works for hundreds of events without the box (network cut,
broker stopped, a reboot in between), then comes back: every event is posted exactly once, the stock is exact and
the ledger checks clean, events that can no longer post are refused with their reason, and the photos and the
signature made offline are stored whole and linked to their ASN.

The box is the bus tests' box (embedded broker on a free port, the one writer, the ingest consumer); the terminal
is tools/sim/offline_terminal.py behind a real TCP relay that cuts the link.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from edge.bus.payloads import Ack
from edge.db import connect
from edge.demo.demo_json import DemoInfo, DemoItem, DeviceLogin, write_demo_json
from edge.devices.attachments import ATTACHMENTS_DIR, attachment_path
from edge.ledger.verify import verify_ledger
from tests.edge.bus.conftest import PASSWORDS, STORE, Box, box, sale  # noqa: F401  (box is a fixture)
from tools.sim.offline_terminal import CachedItem, ItemCache, LinkCutter, OfflineTerminal
from tools.sim.offline_terminal import main as offline_main

WAIT = 60.0
MILK, BREAD = "6901234567892", "6901234567809"
ITEMS = (
    CachedItem("MILK-1L", "milk-1l", 500, (MILK,)),
    CachedItem("BREAD", "bread", 500, (BREAD,)),
    CachedItem("EMPTY", "empty", 500),
)
SIGNATURE = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 200 60">'
    b'<path d="M5 50 C 30 5, 60 5, 80 50 S 140 90, 190 20" stroke="#000" stroke-width="2" fill="none"/></svg>'
)


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def inspection_photo() -> bytes:
    rng = random.Random(4)
    image = Image.new("RGB", (120, 90))
    image.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(120 * 90)])
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


@dataclass
class Work:
    """What the clerk did offline, and what the box must make of it (worked out in the order made)."""

    stock: dict[str, int]
    posted: list[str]
    refused: list[str]

    def apply(self, event_id: str, sku: str, delta: int) -> None:
        if self.stock[sku] + delta < 0:
            self.refused.append(event_id)
        else:
            self.stock[sku] += delta
            self.posted.append(event_id)


@pytest.fixture
def terminals(box: Box, tmp_path: Path) -> Iterator[Callable[..., OfflineTerminal]]:  # noqa: F811
    made: list[OfflineTerminal] = []

    def make(port: int, display: Callable[[str], None] = lambda line: None) -> OfflineTerminal:
        login = DeviceLogin("pos-1", "pos", "pos-1", PASSWORDS["pos-1"])
        terminal = OfflineTerminal(
            STORE,
            login,
            "127.0.0.1",
            port,
            journal=tmp_path / "pos-1.queue",
            items=ItemCache(ITEMS),
            display=display,
            reconnect_delay=(0.02, 0.2),
            chunk_bytes=4096,
            fsync=False,
        )
        made.append(terminal)
        terminal.start()
        return terminal

    yield make
    for terminal in made:
        terminal.stop()


def work_offline(terminal: OfflineTerminal, work: Work, count: int, rng: random.Random) -> None:
    """Sell milk and bread, and now and then receive milk: more is sold than there is."""
    for n in range(count):
        if n % 40 == 39:
            event_id = terminal.scan("MILK-1L", 20, "receive", price_fen=300)
            work.apply(event_id, "MILK-1L", 20)
        elif n % 3 == 0:
            event_id = terminal.sell([(BREAD, 1)], payment="cash")
            work.apply(event_id, "BREAD", -1)
        else:
            qty = rng.randint(1, 3)
            event_id = terminal.sell([(MILK, qty)], payment="wechat")
            work.apply(event_id, "MILK-1L", -qty)


def check_box(box: Box, terminal: OfflineTerminal, work: Work) -> None:  # noqa: F811
    """Each event posted once or refused with its reason; stock exact; the ledger checks clean."""
    made = work.posted + work.refused
    assert set(terminal.acks) >= set(made)
    keys = {row[0] for row in box.sql("SELECT command_key FROM documents WHERE command_key LIKE 'dev:pos-1:%'")}
    assert keys == {f"dev:pos-1:{event_id}" for event_id in work.posted}
    assert all(terminal.acks[i]["ok"] and terminal.acks[i]["document"] for i in work.posted)
    failures = {f.id: f for f in terminal.failures}
    assert set(failures) == set(work.refused)
    for failure in failures.values():
        assert failure.code == "insufficient_stock"
        assert "库存不足" in failure.message and "insufficient stock" in failure.message_en
    on_hand = {row[0]: row[1] for row in box.sql("SELECT sku, SUM(qty) FROM balances GROUP BY sku")}
    assert on_hand.get("MILK-1L", 0) == work.stock["MILK-1L"]
    assert on_hand.get("BREAD", 0) == work.stock["BREAD"]
    conn = connect(box.settings.db_path, readonly=True)
    try:
        report = verify_ledger(conn)
    finally:
        conn.close()
    assert report["ok"], report


def test_hundreds_of_events_made_offline_post_exactly_once_with_exact_stock_and_reasons(
    box: Box,  # noqa: F811
    terminals: Callable[..., OfflineTerminal],
) -> None:
    cutter = LinkCutter("127.0.0.1", box.port)
    cutter.start()
    try:
        lines: list[str] = []
        terminal = terminals(cutter.port, lines.append)
        assert terminal.wait_online(WAIT)
        cutter.cut()  # the network is gone
        assert wait_until(lambda: not terminal.online)

        # Meanwhile the other till sells milk: some of what the terminal sells offline can no longer post.
        other = box.device("pos-2")
        other.send("sale", sale("p2-1", (MILK, 4)))
        assert other.ack("p2-1")["ok"]
        work = Work({"MILK-1L": 10 - 4, "BREAD": 5}, [], [])
        rng = random.Random(11)

        work_offline(terminal, work, 150, rng)
        photo = inspection_photo()
        photo_id = terminal.attach(photo, "photo", asn="ASN-OFF-1", supplier="sup-1")
        terminal.stop()  # the terminal reboots, still offline
        terminal = terminals(cutter.port, lines.append)
        assert terminal.restored >= 150
        work_offline(terminal, work, 150, rng)
        signature_id = terminal.attach(SIGNATURE, "signature", asn="ASN-OFF-1", supplier="sup-1")
        assert work.refused, "the plan must include events that can no longer post"

        cutter.restore()
        assert wait_until(lambda: len(terminal.acks) >= 30)
        assert terminal.pending_ids() and terminal.resent == 0
        cutter.cut()  # once more, in the middle of the replay: acks in flight are lost
        cutter.restore()
        assert terminal.wait_idle(WAIT), f"{len(terminal.pending_ids())} events unanswered"
        assert terminal.resent > 0  # the box saw those again and answered each from its first posting

        check_box(box, terminal, work)
        shown = [line for line in lines if line.startswith("✗")]
        assert len(shown) == len(work.refused)

        rows = box.sql("SELECT attachment, purpose, ref_kind, ref, supplier, sha256, mime FROM attachments ORDER BY id")
        assert [(r["attachment"], r["purpose"], r["ref_kind"], r["ref"], r["supplier"]) for r in rows] == [
            (photo_id, "photo", "asn", "ASN-OFF-1", "sup-1"),
            (signature_id, "signature", "asn", "ASN-OFF-1", "sup-1"),
        ]
        root = box.settings.data_dir / ATTACHMENTS_DIR
        for row, content in zip(rows, (photo, SIGNATURE), strict=True):
            assert row["sha256"] == hashlib.sha256(content).hexdigest()
            assert attachment_path(root, row["sha256"], row["mime"]).read_bytes() == content
        chunk_events = -(-len(photo) // 4096) + 1
        outcomes = box.sql("SELECT COUNT(*) FROM event_outcomes WHERE kind = 'attachment'")[0][0]
        assert outcomes == chunk_events  # each chunk ran once, resends answered from the stored outcome
        assert box.sql("SELECT COUNT(*) FROM attachment_chunks")[0][0] == 0
    finally:
        cutter.close()


def test_a_stopped_broker_is_waited_out_and_the_terminal_learns_the_stock_again(
    box: Box,  # noqa: F811
    terminals: Callable[..., OfflineTerminal],
) -> None:
    port = box.port
    terminal = terminals(port)
    assert terminal.wait_online(WAIT)
    box.loop.run(box.broker.stop())  # the box's broker goes away (restart, crash)
    assert wait_until(lambda: not terminal.online)
    work = Work({"MILK-1L": 10, "BREAD": 5}, [], [])
    work_offline(terminal, work, 120, random.Random(5))
    box.loop.run(box.broker.start())
    assert terminal.wait_idle(WAIT), f"{len(terminal.pending_ids())} events unanswered"
    check_box(box, terminal, work)
    # The retained stock topics brought the item list up to date.
    assert wait_until(lambda: terminal.items.on_hand("MILK-1L") == {"floor": work.stock["MILK-1L"]})
    assert wait_until(lambda: terminal.items.on_hand("BREAD") == {"floor": work.stock["BREAD"]})


def test_a_refused_event_is_not_posted_by_a_later_resend(
    box: Box,  # noqa: F811
    terminals: Callable[..., OfflineTerminal],
) -> None:
    terminal = terminals(box.port)
    assert terminal.wait_online(WAIT)
    refused = terminal.sell([("EMPTY", 1)])
    assert terminal.wait_idle(WAIT)
    assert [f.code for f in terminal.failures] == ["insufficient_stock"]
    receive = box.device("pos-2")
    receive.send("scan", _scan("restock", "EMPTY", 5))
    assert receive.ack("restock")["ok"]
    # The same event sent again (a terminal that lost the answer) gets the first answer and posts nothing.
    again = box.device("pos-1", client_id="pos-1-again")
    payload: Any = {"id": refused, "ts": "2024-05-01T09:30:00+08:00", "data": {"lines": [{"code": "EMPTY", "qty": 1}]}}
    again.send("sale", payload)
    ack = again.ack(refused)
    assert (ack["ok"], ack["code"]) == (False, "insufficient_stock")
    assert box.sql("SELECT SUM(qty) FROM balances WHERE sku = 'EMPTY'")[0][0] == 5


def _scan(event_id: str, code: str, qty: int) -> dict[str, Any]:
    return {
        "id": event_id,
        "ts": "2024-05-01T09:30:00+08:00",
        "data": {"code": code, "qty": qty, "mode": "receive", "price_fen": 300},
    }


# --- docs/offline-terminals.md: every example as the box answers it ---------------------------------------------

DOC = Path(__file__).parents[2] / "docs" / "offline-terminals.md"
_FENCE = re.compile(r"^```(\w*)([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks(language: str) -> list[tuple[str, str]]:
    return [(info.strip(), body) for lang, info, body in _FENCE.findall(DOC.read_text("utf-8")) if lang == language]


def test_the_pages_example_chunks_get_exactly_the_pages_acks(box: Box) -> None:  # noqa: F811
    events = [json.loads(body) for info, body in _blocks("json") if info == "event:attachment"]
    acks = {a["id"]: a for a in (json.loads(body) for info, body in _blocks("json") if info == "ack")}
    assert len(events) == 2 and len(acks) == 4
    handheld = box.device("pda-1")
    for event in events:
        handheld.send("attachment", event)
        assert handheld.ack(event["id"]) == acks[event["id"]]
    # The refused example: the signature again under another file id, with a digest that is not its own.
    forged = copy.deepcopy(events[1])
    forged["id"] = "pda-1-000983"
    forged["data"].update(attachment="sig-000414", sha256="0" * 64)
    handheld.send("attachment", forged)
    assert handheld.ack("pda-1-000983") == acks["pda-1-000983"]
    assert set(acks["pos-1-0000137-9c2e41aa"]) == set(json.loads(Ack.stored("x").to_json()))


def _run_pages_terminal(box: Box, tmp_path: Path) -> list[str]:  # noqa: F811
    """Run the page's Python terminal against `box`; what it printed through `print` (its display prints too)."""
    [(_, source)] = _blocks("python")
    for old, new in (
        ('"store-001"', f'"{STORE}"'),
        ('"…"', f'"{PASSWORDS["pos-1"]}"'),
        ('LinkCutter("127.0.0.1", 1883)', f'LinkCutter("127.0.0.1", {box.port})'),
        ('Path("var/pos-1.queue")', f'Path("{tmp_path / "pos-1.queue"}")'),
    ):
        assert old in source
        source = source.replace(old, new)
    printed: list[str] = []
    exec(compile(source, str(DOC), "exec"), {"print": lambda *args: printed.append(" ".join(map(str, args)))})
    return printed


def test_the_pages_python_terminal_sells_offline_and_catches_up(box: Box, tmp_path: Path) -> None:  # noqa: F811
    printed = _run_pages_terminal(box, tmp_path)
    assert box.sql("SELECT COUNT(*) FROM documents WHERE device = 'pos-1'")[0][0] == 3
    assert not [line for line in printed if line.startswith("✗")]
    assert printed == ["0 failed"]


def test_the_pages_python_terminal_shows_each_failure_once(
    box: Box,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    other = box.device("pos-2")
    other.send("sale", sale("p2-9", (MILK, 9)))  # one bottle left: of the three sold offline two are refused
    assert other.ack("p2-9")["ok"]
    printed = _run_pages_terminal(box, tmp_path)
    shown = [line for line in [*printed, *capsys.readouterr().out.splitlines()] if line.startswith("✗")]
    assert len(shown) == 2 and all("insufficient stock" in line for line in shown)
    assert printed == ["2 failed"]


def test_the_pages_command_sells_offline_against_a_box(
    box: Box,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    [(_, command)] = [(info, body) for info, body in _blocks("") if "offline_terminal" in body]
    args = command.split()[3:]  # python -m tools.sim.offline_terminal <args>
    assert args == ["var/demo.json", "--sell", "200", "--offline"]
    demo_json = tmp_path / "demo.json"
    write_demo_json(
        demo_json,
        DemoInfo(
            store_id=STORE,
            http_url="http://127.0.0.1:9",
            mqtt_host="127.0.0.1",
            mqtt_port=box.port,
            users=(),
            devices=(DeviceLogin("pos-1", "pos", "pos-1", PASSWORDS["pos-1"]),),
            items=(DemoItem("MILK-1L", MILK, "milk", "pcs"), DemoItem("BREAD", BREAD, "bread", "pcs")),
        ),
    )
    assert offline_main([str(demo_json), *args[1:], "--seed", "3"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    match = re.fullmatch(r"made 200, posted (\d+), failed (\d+); attachments 0, stored 0, failed 0", last)
    assert match is not None, last
    posted, failed = int(match.group(1)), int(match.group(2))
    assert posted + failed == 200 and failed > 0  # 15 pieces in stock: most of 200 tickets are refused
    assert box.sql("SELECT COUNT(*) FROM documents WHERE device = 'pos-1'")[0][0] == posted
    assert (tmp_path / "pos-1.queue").exists()
