"""Device ingest end to end: paho devices -> embedded broker -> ingest -> writer -> ledger -> ack."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry

from edge.bus.ingest import INBOX_BATCHES, IngestConsumer
from edge.bus.topics import stock_topic
from edge.config import Settings
from edge.ledger.commands import DocType, Line, PostDocument
from edge.writer import LedgerWriter
from tests.edge.bus.conftest import STORE, Box, sale


def test_sale_event_is_posted_acked_with_its_document_and_updates_the_retained_stock(box: Box) -> None:
    pos = box.device("pos-1")
    pos.send("sale", sale("s-1", ("6901234567892", 2), payment="cash"))

    ack = pos.ack("s-1")
    assert ack["ok"] is True and ack["code"] == "ok" and isinstance(ack["document"], int)
    assert ack["message"].startswith("已过账") and ack["message_en"].startswith("posted")
    doc = box.sql("SELECT type, device, actor, command_key FROM documents WHERE id = ?", (ack["document"],))[0]
    assert tuple(doc) == ("sale", "pos-1", "pos-1", "dev:pos-1:s-1")

    # A client that subscribes afterwards gets the stock as retained.
    pda = box.device("pda-1", subscribe=False)
    assert pda.subscribe(f"storebox/{STORE}/stock/#") == [1]
    msg = pda.next_message(stock_topic(STORE, "MILK-1L"))
    assert msg.retain
    body = json.loads(msg.payload)
    assert body["sku"] == "MILK-1L" and body["on_hand"] == {"floor": 8} and body["ts"]


def test_a_resent_event_gets_the_first_answer_again_and_is_posted_once(box: Box) -> None:
    pos = box.device("pos-1")
    pos.send("sale", sale("s-2", ("MILK-1L", 1)))
    first = pos.ack("s-2")
    pos.send("sale", sale("s-2", ("MILK-1L", 1)))
    again = pos.ack("s-2")

    assert again == first and first["ok"] is True
    assert box.sql("SELECT COUNT(*) FROM documents WHERE command_key = 'dev:pos-1:s-2'")[0][0] == 1
    assert box.sql("SELECT SUM(qty) FROM balances WHERE sku = 'MILK-1L'")[0][0] == 9


def test_the_same_event_id_from_two_devices_is_two_events(box: Box) -> None:
    pos1, pos2 = box.device("pos-1"), box.device("pos-2")
    pos1.send("sale", sale("same", ("BREAD", 1)))
    pos2.send("sale", sale("same", ("BREAD", 1)))
    assert pos1.ack("same")["document"] != pos2.ack("same")["document"]


def test_insufficient_stock_is_a_failed_ack_with_the_ledgers_reason_and_not_a_dead_letter(box: Box) -> None:
    pos = box.device("pos-1")
    pos.send("sale", sale("s-3", ("BREAD", 6)))

    ack = pos.ack("s-3")
    assert ack["ok"] is False and ack["code"] == "insufficient_stock" and ack["document"] is None
    assert "库存不足" in ack["message"] and "BREAD" in ack["message_en"]
    assert ack["retry"] is False
    assert box.sql("SELECT COUNT(*) FROM dead_letters")[0][0] == 0
    assert box.metric("storebox_ingest_acks_total", ok="false", code="insufficient_stock") == 1
    # Resent, the refusal is the first answer: the ledger keeps it under the event's key.
    pos.send("sale", sale("s-3", ("BREAD", 6)))
    assert pos.ack("s-3") == ack


def test_a_failing_event_does_not_fail_its_neighbours_in_the_same_batch(box: Box) -> None:
    pos = box.device("pos-1")
    pos.send("sale", sale("n-1", ("MILK-1L", 1)))
    pos.send("sale", sale("n-2", ("BREAD", 99)))
    pos.send("sale", b"garbage")
    pos.send("sale", sale("n-3", ("NO-SUCH-ITEM", 1)))
    pos.send("sale", sale("n-4", ("BREAD", 1)))

    acks = {a["id"]: a for a in pos.acks(5)}
    assert acks["n-1"]["ok"] and acks["n-4"]["ok"]
    assert acks["n-2"]["code"] == "insufficient_stock"
    assert acks[None]["code"] == "not_json"
    assert acks["n-3"]["code"] == "unknown_item"
    assert box.sql("SELECT SUM(qty) FROM balances WHERE sku = 'BREAD'")[0][0] == 4


def test_scan_modes_receive_count_and_return_post_their_documents(box: Box) -> None:
    pda = box.device("pda-1")
    ts = "2024-05-01T10:00:00+08:00"
    events = [
        ("r-1", {"code": "EMPTY", "qty": 6, "mode": "receive", "location": "backroom", "supplier": "sup-1"}),
        ("c-1", {"code": "EMPTY", "qty": 4, "mode": "count", "location": "backroom"}),
        ("t-1", {"code": "6901234567892", "mode": "return", "reason": "口味不符"}),
        ("x-1", {"code": "MILK-1L", "mode": "sale"}),
    ]
    for event_id, data in events:
        pda.send("scan", {"id": event_id, "ts": ts, "data": data})
    docs = {}
    for event_id, _ in events:
        ack = pda.ack(event_id)
        assert ack["ok"], ack
        docs[event_id] = box.sql("SELECT type, reason FROM documents WHERE id = ?", (ack["document"],))[0]
    assert [docs[e][0] for e, _ in events] == ["receipt", "stocktake", "customer_return", "sale"]
    assert docs["t-1"][1] == "taste"
    assert box.sql("SELECT qty FROM balances WHERE sku = 'EMPTY' AND location = 'backroom'")[0][0] == 4
    assert box.sql("SELECT SUM(qty) FROM balances WHERE sku = 'MILK-1L'")[0][0] == 10


def test_temperature_reading_is_stored_once_and_acked_without_a_document(box: Box) -> None:
    sensor = box.device("cold-1")
    event = {"id": "t-1", "ts": "2024-05-01T10:00:00+08:00", "data": {"celsius": 3.5, "location": "floor"}}
    sensor.send("temp", event)
    first = sensor.ack("t-1")
    sensor.send("temp", event)
    again = sensor.ack("t-1")

    assert first == again
    assert first["ok"] is True and first["document"] is None
    rows = box.sql("SELECT device, location, milli_celsius FROM sensor_readings")
    assert [tuple(r) for r in rows] == [("cold-1", "floor", 3500)]
    assert box.sql("SELECT COUNT(*) FROM documents")[0][0] == 1  # the opening receipt only


def test_a_reading_naming_an_unknown_location_is_refused_dead_lettered_and_not_stored(box: Box) -> None:
    sensor = box.device("cold-1")
    ts = "2024-05-01T10:00:00+08:00"
    sensor.send("temp", {"id": "t-2", "ts": ts, "data": {"celsius": 30, "location": "nowhere"}})
    sensor.send("temp", {"id": "t-3", "ts": ts, "data": {"celsius": 3.0, "location": "backroom"}})
    acks = {a["id"]: a for a in sensor.acks(2)}

    refused = acks["t-2"]
    assert (refused["ok"], refused["code"], refused["document"], refused["retry"]) == (
        False,
        "unknown_location",
        None,
        False,
    )
    assert "nowhere" in refused["message"] and refused["message_en"] == "unknown location: nowhere"
    assert acks["t-3"]["ok"] is True  # its neighbour in the batch is stored as usual
    rows = box.sql("SELECT event_id, location FROM sensor_readings ORDER BY id")
    assert [tuple(r) for r in rows] == [("t-3", "backroom")]
    letters = box.sql("SELECT device, event_id, reason_code, reason_en FROM dead_letters")
    assert [tuple(r) for r in letters] == [("cold-1", "t-2", "unknown_location", "unknown location: nowhere")]
    assert box.metric("storebox_ingest_dead_letters_total", reason="unknown_location") == 1


def test_a_posting_from_any_source_updates_the_retained_stock_topic(box: Box) -> None:
    pda = box.device("pda-1", subscribe=False)
    assert pda.subscribe(stock_topic(STORE, "BREAD")) == [1]
    command = PostDocument(key="api-1", type=DocType.RECEIPT, lines=(Line("BREAD", 3, location="backroom"),))
    assert box.loop.run(box.writer.post(command)).ok  # as the HTTP API posts: through the writer
    body = json.loads(pda.next_message(stock_topic(STORE, "BREAD")).payload)
    assert body["on_hand"] == {"backroom": 3, "floor": 5}


def test_when_the_box_cannot_write_the_ack_asks_the_device_to_resend(box: Box) -> None:
    pos = box.device("pos-1")
    box.loop.run(box.writer.close())
    pos.send("sale", sale("w-1", ("MILK-1L", 1)))
    ack = pos.ack("w-1")
    assert (ack["ok"], ack["code"], ack["retry"], ack["document"]) == (False, "unavailable", True, None)
    pos.send("sale", sale("w-2", ("MILK-1L", 1)))  # and the consumer is still there
    assert pos.ack("w-2")["retry"] is True


def test_events_beyond_the_inbox_are_dropped_unanswered_and_counted(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, store_id=STORE, ingest_batch_max=1)
    registry = CollectorRegistry()
    writer = LedgerWriter(settings.db_path, context=lambda: None)  # type: ignore[arg-type,return-value]
    consumer = IngestConsumer(settings=settings, writer=writer, registry=registry, clock=lambda: datetime.now(UTC))
    for i in range(INBOX_BATCHES + 3):
        consumer.offer("pos-1", "sale", "storebox/store-t/dev/pos-1/evt/sale", str(i).encode())
    assert consumer.pending == INBOX_BATCHES
    assert registry.get_sample_value("storebox_ingest_dropped_total") == 3
