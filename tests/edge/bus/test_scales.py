"""Scales, scale labels and GS1 codes through the real box: broker, ingest, writer jobs, acks, dead letters.

A scale publishes `evt/weight`; a handheld scan naming the scale posts its stable weight in grams; a POS
sells a scale label at the label's amount; unusable weights are refused with nothing posted, and a resend
gets the first answer again."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge.bus.payloads import Ack
from edge.bus.topics import stock_topic
from edge.devices.barcodes import encode_label
from edge.ledger.commands import DocType, Line, PostDocument, PostResult
from edge.ledger.masterdata import add_item, add_location
from edge.security.devices import create_device
from tests.edge.bus.conftest import STORE, WAIT, Box, Device

DOC = Path(__file__).parents[3] / "docs" / "devices.md"
_FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
SCALE_PASSWORD = "scale-1-secret"
PORK_EAN = "6900000000113"  # the weighed item's own barcode, unit g
PORK_PLU_CODE = "2000011"  # flag 2 + PLU 000011 of the default label formats
OPENING_GRAMS = 20_000


def add_weighed_goods(conn: sqlite3.Connection) -> None:
    """Runs in the writer: a scale device and an item sold by the gram, with its PLU code."""
    create_device(conn, "scale-1", "scale", SCALE_PASSWORD)
    add_item(
        conn, "PORK", "猪五花肉", base_unit="g", price_fen=3, cost_fen=2, barcodes={PORK_EAN: "g", PORK_PLU_CODE: "g"}
    )


@pytest.fixture
def scales(box: Box) -> Box:
    async def prepare() -> None:
        await box.writer.execute(add_weighed_goods)
        result = await box.writer.post(
            PostDocument(key="opening-pork", type=DocType.RECEIPT, lines=(Line("PORK", OPENING_GRAMS),))
        )
        assert result.ok, result

    box.loop.run(prepare())
    return box


def now(offset_s: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).isoformat()


def event(event_id: str, data: dict[str, Any], ts: str | None = None) -> dict[str, Any]:
    return {"id": event_id, "ts": ts or now(), "data": data}


def pork_on_floor(box: Box) -> int:
    return int(box.sql("SELECT COALESCE(SUM(qty), 0) FROM balances WHERE sku = 'PORK'")[0][0])


def weigh(scale: Device, event_id: str, grams: int, *, stable: bool = True, ts: str | None = None, **data: Any) -> None:
    scale.send("weight", event(event_id, {"grams": grams, "stable": stable, **data}, ts))
    ack = scale.ack(event_id)
    assert (ack["ok"], ack["code"], ack["document"]) == (True, "ok", None), ack


def test_a_scan_naming_the_scale_sells_its_stable_weight_in_grams_once(scales: Box) -> None:
    scale = scales.device("scale-1", password=SCALE_PASSWORD)
    pda = scales.device("pda-1")
    weigh(scale, "w-1", 1250)
    assert [tuple(r) for r in scales.sql("SELECT scale, grams, stable FROM scale_readings")] == [("scale-1", 1250, 1)]

    scan = event("s-1", {"code": PORK_EAN, "mode": "sale", "scale": "scale-1"})
    pda.send("scan", scan)
    ack = pda.ack("s-1")
    assert ack["ok"] is True and ack["document"] is not None, ack
    assert ack["detail"] == {"scale": "scale-1", "grams": 1250}
    line = scales.sql(
        "SELECT sku, unit, qty_base, gross_fen FROM document_lines WHERE document_id = ?", (ack["document"],)
    )
    assert tuple(line[0]) == ("PORK", "g", 1250, 1250 * 3)
    assert pork_on_floor(scales) == OPENING_GRAMS - 1250
    topic = stock_topic(STORE, "PORK")  # the writer job's posting updates the retained stock topic too
    assert pda.subscribe(topic) == [1]
    deadline = time.monotonic() + WAIT
    while json.loads(pda.next_message(topic, max(0.0, deadline - time.monotonic())).payload)["on_hand"] != {
        "floor": OPENING_GRAMS - 1250
    }:
        pass

    weigh(scale, "w-2", 800)  # the scale changes; the resent scan still answers what it posted first
    pda.send("scan", scan)
    again = pda.ack("s-1")
    assert (again["ok"], again["document"], again["detail"]) == (True, ack["document"], ack["detail"])
    assert pork_on_floor(scales) == OPENING_GRAMS - 1250


def test_one_stable_reading_books_the_goods_once_and_a_new_reading_again(scales: Box) -> None:
    scale = scales.device("scale-1", password=SCALE_PASSWORD)
    pda = scales.device("pda-1")
    weigh(scale, "w-1", 800)
    pda.send("scan", event("s-1", {"code": PORK_EAN, "mode": "sale", "scale": "scale-1"}))
    assert pda.ack("s-1")["ok"] is True
    for event_id, data in (
        ("s-2", {"code": PORK_EAN, "mode": "receive", "scale": "scale-1"}),
        ("s-3", {"code": PORK_EAN, "mode": "count", "scale": "scale-1"}),
    ):
        pda.send("scan", event(event_id, data))
        ack = pda.ack(event_id)
        assert (ack["ok"], ack["code"], ack["document"]) == (False, "weight_already_taken", None), ack
        assert "800 g" in ack["message"] and "800 g" in ack["message_en"]
    assert pork_on_floor(scales) == OPENING_GRAMS - 800
    weigh(scale, "w-2", 0)  # the goods taken off ...
    weigh(scale, "w-3", 800)  # ... and the next 800 g put on
    pda.send("scan", event("s-4", {"code": PORK_EAN, "mode": "sale", "scale": "scale-1"}))
    assert pda.ack("s-4")["ok"] is True
    assert pork_on_floor(scales) == OPENING_GRAMS - 1600


def add_cold_room(conn: sqlite3.Connection) -> None:
    add_location(conn, "cold", "冷藏库", "cold room", "cold", "chilled")


def test_a_pos_sells_weighed_goods_from_the_cold_room(scales: Box) -> None:
    async def stock_the_cold_room() -> PostResult:
        await scales.writer.execute(add_cold_room)
        return await scales.writer.post(
            PostDocument(key="cold-pork", type=DocType.RECEIPT, location="cold", lines=(Line("PORK", 5000),))
        )

    received = scales.loop.run(stock_the_cold_room())
    assert received.ok, received
    pos = scales.device("pos-1")
    label = encode_label("2PPPPPPWWWWWC", 11, grams=1250)
    pos.send("sale", event("t-1", {"lines": [{"code": label}], "location": "cold"}))
    ack = pos.ack("t-1")
    assert ack["ok"] is True, ack
    cold = scales.sql("SELECT qty FROM balances WHERE sku = 'PORK' AND location = 'cold'")
    assert int(cold[0][0]) == 5000 - 1250
    assert pork_on_floor(scales) == OPENING_GRAMS + 5000 - 1250


@pytest.mark.parametrize(
    ("reading", "code"),
    [
        ({"grams": 1250, "stable": False, "status": "dynamic"}, "weight_not_stable"),
        ({"grams": 1250, "stable": True, "ts": -600}, "weight_too_old"),
        ({"grams": 99999, "stable": True, "status": "overload"}, "scale_overload"),
        ({"grams": 0, "stable": True}, "weight_zero"),
    ],
)
def test_a_weight_that_cannot_be_used_refuses_the_scan_and_posts_nothing(
    scales: Box, reading: dict[str, Any], code: str
) -> None:
    scale = scales.device("scale-1", password=SCALE_PASSWORD)
    pda = scales.device("pda-1")
    ts = now(reading.pop("ts")) if "ts" in reading else None
    weigh(scale, "w-1", ts=ts, **reading)
    documents = len(scales.sql("SELECT id FROM documents"))

    scan = event("s-1", {"code": PORK_EAN, "mode": "sale", "scale": "scale-1"})
    pda.send("scan", scan)
    ack = pda.ack("s-1")
    assert (ack["ok"], ack["code"], ack["document"], ack["retry"]) == (False, code, None, False), ack
    assert ack["message"] and ack["message_en"] and ack["detail"]["scale"] == "scale-1"
    pda.send("scan", scan)
    assert pda.ack("s-1")["code"] == code  # final: a resend gets the same answer
    assert len(scales.sql("SELECT id FROM documents")) == documents
    assert pork_on_floor(scales) == OPENING_GRAMS


def test_a_scan_naming_a_scale_that_never_weighed_is_refused(scales: Box) -> None:
    pda = scales.device("pda-1")
    pda.send("scan", event("s-1", {"code": PORK_EAN, "mode": "receive", "scale": "scale-9"}))
    assert pda.ack("s-1")["code"] == "scale_no_reading"


def test_weights_from_a_device_that_is_not_a_scale_are_refused(scales: Box) -> None:
    pda = scales.device("pda-1")
    pda.send("weight", event("w-1", {"grams": 500, "stable": True}))
    ack = pda.ack("w-1")
    assert (ack["ok"], ack["code"]) == (False, "not_a_scale")
    assert "handheld" in ack["message"] and "handheld" in ack["message_en"], ack
    assert scales.sql("SELECT COUNT(*) FROM scale_readings")[0][0] == 0


def test_a_pos_sells_a_scale_label_at_the_label_s_amount(scales: Box) -> None:
    pos = scales.device("pos-1")
    label = encode_label("2PPPPPPMMMMMWWWWWC", 11, grams=486, amount_fen=1500)
    pos.send("sale", event("t-1", {"lines": [{"code": label}, {"code": "6901234567892", "qty": 1}], "payment": "cash"}))
    ack = pos.ack("t-1")
    assert ack["ok"] is True, ack
    lines = scales.sql(
        "SELECT sku, qty_base, gross_fen FROM document_lines WHERE document_id = ? ORDER BY line_no", (ack["document"],)
    )
    assert [tuple(r) for r in lines] == [("PORK", 486, 1500), ("MILK-1L", 1, 500)]
    assert pork_on_floor(scales) == OPENING_GRAMS - 486


def test_a_code_with_a_wrong_check_digit_is_invalid_data_with_the_right_digit_and_a_dead_letter(scales: Box) -> None:
    pos = scales.device("pos-1")
    pos.send("sale", event("t-1", {"lines": [{"code": "6901234567890", "qty": 1}]}))
    ack = pos.ack("t-1")
    assert (ack["ok"], ack["code"]) == (False, "invalid_data")
    assert "校验位" in ack["message"] and "expected 2" in ack["message_en"]
    letters = scales.sql("SELECT reason_code, event_id FROM dead_letters")
    assert [tuple(r) for r in letters] == [("invalid_data", "t-1")]


def test_a_gs1_label_receives_its_lot_expiry_and_count(scales: Box) -> None:
    pda = scales.device("pda-1")
    code = "]C102069012345678921727063010L270101\x1d3712"
    pda.send("scan", event("r-1", {"code": code, "mode": "receive", "location": "backroom", "supplier": "sup-1"}))
    ack = pda.ack("r-1")
    assert ack["ok"] is True, ack
    row = scales.sql(
        "SELECT l.sku, l.qty_base, l.lot, l.expiry, d.counterparty FROM document_lines l"
        " JOIN documents d ON d.id = l.document_id WHERE d.id = ?",
        (ack["document"],),
    )
    assert tuple(row[0]) == ("MILK-1L", 12, "L270101", "2027-06-30", "sup-1")


def test_receiving_an_expired_lot_is_refused_and_books_nothing(scales: Box) -> None:
    pda = scales.device("pda-1")
    code = "]d201069012345678921724010110OLD"  # lot OLD, use by 2024-01-01
    pda.send("scan", event("r-1", {"code": code, "mode": "receive", "location": "backroom", "supplier": "sup-1"}))
    ack = pda.ack("r-1")
    assert (ack["ok"], ack["code"], ack["document"]) == (False, "expired", None), ack
    assert "过期" in ack["message"] and "2024-01-01" in ack["message_en"]
    assert scales.sql("SELECT COUNT(*) FROM document_lines WHERE lot = 'OLD'")[0][0] == 0


# --- the scale examples of docs/devices.md ------------------------------------------------------------------


def _blocks(info: str) -> list[dict[str, Any]]:
    found = _FENCE.findall(DOC.read_text("utf-8"))
    return [json.loads(body) for lang, tag, body in found if lang == "json" and tag.strip() == info]


def test_the_scale_examples_in_the_device_guide_are_posted_as_shown(scales: Box) -> None:
    devices = {"weight": scales.device("scale-1", password=SCALE_PASSWORD), "scan": scales.device("pda-1")}
    examples = [(kind, e) for kind in ("weight", "scan") for e in _blocks(f"scale-event:{kind}")]
    examples.sort(key=lambda pair: pair[1]["ts"])  # in the guide's order of time: the weight before its scan
    assert {kind for kind, _ in examples} == {"weight", "scan"} and len(examples) >= 3
    acks = {}
    for kind, example in examples:
        devices[kind].send(kind, {**example, "ts": now()})  # the guide's times are examples; weights must be fresh
        acks[example["id"]] = ack = devices[kind].ack(example["id"])
        assert ack["ok"] is True, (example, ack)
    (documented,) = _blocks("scale-ack")
    sent = acks[documented["id"]]
    assert set(documented) == set(sent) == set(json.loads(Ack.stored("x").to_json())) | {"detail"}
    assert documented["detail"] == sent["detail"]
