"""Supplier ASNs as they arrive: the submission job (whole or nothing, PO by number, where each ASN came from) and
`evt/asn` from a supplier device through the real bus box, with the problems in the ack."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.bus.event_kinds import device_event_kinds
from edge.bus.payloads import DecodedEvent, Rejection, decode_event
from edge.config import Settings
from edge.db import connect, migrate
from edge.demo.catalog import DEFAULT_SEED, ItemSpec, build_catalog
from edge.demo.seed import seed_demo
from edge.devices.asn import AsnLine, AsnRecord, AsnRejected, RecordOutcome
from edge.devices.asn_templates import AsnImportRejected, convert, find_template
from edge.devices.supplier_asns import (
    AsnSource,
    IncomingAsn,
    SupplierAsnIn,
    record_device_asn,
    record_incoming_asns,
)
from edge.devices.supplier_keys import link_supplier_device
from edge.ledger.commands import DocType, Line, PostDocument
from edge.security.devices import create_device
from tests.edge.bus.conftest import STORE, Box, box  # noqa: F401  (the running bus box fixture)
from tests.edge.devices.receiving_store import (
    COLA_CASE,
    MILK_CARTON,
    MILK_EXPIRY,
    NOW,
    TODAY,
    context,
    in_tx,
    open_store,
    post_po,
)
from tests.edge.devices.test_asn_templates import assert_says_the_same

SHIP = TODAY - timedelta(days=1)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = open_store(tmp_path / "store.db")
    yield connection
    connection.close()


def incoming(
    po: int | str, asn_id: str = "A-1", *lines: AsnLine, where: str = "", sources: tuple[str, ...] = ()
) -> IncomingAsn:
    lines = lines or (AsnLine(COLA_CASE, 1), AsnLine(MILK_CARTON, 12, lot="M2611", expiry=MILK_EXPIRY))
    return IncomingAsn(asn_id, po, SHIP, lines, None, where, sources)


def test_one_json_asn_is_recorded_with_its_source(conn: sqlite3.Connection) -> None:
    po_id, _ = post_po(conn)
    (record,) = in_tx(conn, record_incoming_asns, "sup1", (incoming(po_id),), AsnSource("http", key_id="k1"), NOW)
    assert (record.outcome, record.revision) == (RecordOutcome.CREATED, 1)
    row = conn.execute("SELECT channel, key_id, template, device FROM asn_sources").fetchone()
    assert tuple(row) == ("http", "k1", None, None)
    (again,) = in_tx(conn, record_incoming_asns, "sup1", (incoming(po_id),), AsnSource("http", key_id="k2"), NOW)
    assert again.outcome is RecordOutcome.UNCHANGED
    assert conn.execute("SELECT COUNT(*) FROM asn_sources").fetchone()[0] == 1


def test_the_po_may_be_its_number_and_an_unknown_number_is_named(conn: sqlite3.Connection) -> None:
    po_id, po_no = post_po(conn)
    (record,) = in_tx(conn, record_incoming_asns, "sup1", (incoming(po_no),), AsnSource("http"), NOW)
    assert record.po_id == po_id
    with pytest.raises(AsnRejected) as err:
        in_tx(conn, record_incoming_asns, "sup1", (incoming("PO-NOPE", "A-2"),), AsnSource("http"), NOW)
    assert [(p.code, "PO-NOPE" in p.message_en) for p in err.value.problems] == [("unknown_purchase_order", True)]
    with pytest.raises(AsnRejected):  # another supplier's PO number reads as unknown
        in_tx(conn, record_incoming_asns, "sup2", (incoming(po_no, "A-3"),), AsnSource("http"), NOW)


def test_a_file_is_recorded_whole_or_not_at_all_with_problems_at_its_lines(conn: sqlite3.Connection) -> None:
    po_id, _ = post_po(conn)
    good = incoming(po_id, "F-1", AsnLine(COLA_CASE, 1), where="line 2", sources=("line 2",))
    bad = incoming(
        po_id, "F-2", AsnLine(COLA_CASE, 1), AsnLine(MILK_CARTON, 2), where="line 3", sources=("line 3", "line 5")
    )
    source = AsnSource("import", key_id="k1", template="generic-csv")
    with pytest.raises(AsnImportRejected) as err:
        in_tx(conn, record_incoming_asns, "sup1", (good, bad), source, NOW)
    assert [(p.where, p.line, p.asn_id, p.asn_line, p.code) for p in err.value.problems] == [
        ("line 5", 5, "F-2", 2, "missing_lot"),
        ("line 5", 5, "F-2", 2, "missing_expiry"),
    ]
    assert conn.execute("SELECT COUNT(*) FROM asns").fetchone()[0] == 0
    records = in_tx(conn, record_incoming_asns, "sup1", (good,), source, NOW)
    assert [r.asn_id for r in records] == ["F-1"]
    assert conn.execute("SELECT template FROM asn_sources").fetchone()[0] == "generic-csv"


def test_every_problem_of_a_refused_asn_says_the_same_in_chinese_and_english(conn: sqlite3.Connection) -> None:
    po_id, _ = post_po(conn)
    lines = (
        AsnLine("", 0, unit="x" * 33, price_fen=-1),
        AsnLine(MILK_CARTON, 10**8, lot="a b", price_fen=10**10),
        AsnLine(COLA_CASE, 9),
        AsnLine("NOPE", 1),
    )
    bad = IncomingAsn("A-9", po_id, SHIP, lines, "x" * 501)
    with pytest.raises(AsnRejected) as err:
        in_tx(conn, record_incoming_asns, "sup1", (bad,), AsnSource("http"), NOW)
    codes = {p.code for p in err.value.problems}
    assert {"invalid_code", "invalid_qty", "invalid_unit", "invalid_price", "invalid_lot", "invalid_note"} <= codes
    assert {"over_po_remaining", "unknown_item"} <= codes
    for problem in err.value.problems:
        assert_says_the_same(problem.message, problem.message_en)


def test_the_json_model_takes_the_po_by_id_or_number_but_not_both() -> None:
    body: dict[str, Any] = {"asn_id": "A", "ship_date": "2026-11-24", "lines": [{"code": "X", "qty": 1}]}
    assert SupplierAsnIn.model_validate({**body, "po_id": 3}).incoming().po == 3
    assert SupplierAsnIn.model_validate({**body, "po_no": "PO1"}).incoming().po == "PO1"
    for wrong in ({}, {"po_id": 3, "po_no": "PO1"}):
        with pytest.raises(ValueError):
            SupplierAsnIn.model_validate({**body, **wrong})


# --- evt/asn through the real bus ------------------------------------------------------------------

SUPPLIER_DEVICE = "sup-acme"
SUPPLIER_PASSWORD = "sup-acme-secret"


def _bus_po(bus: Box) -> int:
    command = PostDocument(
        key="po-bus", type=DocType.PURCHASE_ORDER, lines=(Line("MILK-1L", 10, 300),), counterparty="sup-1"
    )
    result = bus.loop.run(bus.writer.post(command))
    assert result.ok and result.document_id is not None, result
    return result.document_id


def _bus_write(bus: Box, fn: Any, *args: Any, **kwargs: Any) -> None:
    from edge.db import connect

    conn = connect(bus.settings.db_path)
    try:
        in_tx(conn, fn, *args, **kwargs)
    finally:
        conn.close()


def _event(event_id: str, po_id: int, qty: int = 4, **line: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "ts": "2026-11-25T09:30:00+08:00",
        "data": {
            "asn_id": "MQ-1",
            "po_id": po_id,
            "ship_date": date.today().isoformat(),
            "lines": [{"code": "6901234567892", "qty": qty, **line}],
        },
    }


def test_a_supplier_device_sends_an_asn_and_the_ack_carries_the_outcome_or_the_problems(box: Box) -> None:  # noqa: F811
    po_id = _bus_po(box)
    _bus_write(box, create_device, SUPPLIER_DEVICE, "supplier", SUPPLIER_PASSWORD)
    _bus_write(box, link_supplier_device, SUPPLIER_DEVICE, "sup-1", now=NOW, actor="test")
    device = box.device(SUPPLIER_DEVICE, password=SUPPLIER_PASSWORD)

    device.send("asn", _event("e-1", po_id))
    ack = device.ack("e-1")
    assert ack["ok"] is True, ack
    assert ack["detail"] == {
        "asn_id": "MQ-1",
        "revision": 1,
        "outcome": "created",
        "po_id": po_id,
        "po_no": ack["detail"]["po_no"],
        "lines": 1,
    }
    device.send("asn", _event("e-1", po_id))  # the same event again: the same answer, nothing new
    assert device.ack("e-1")["detail"]["outcome"] == "created"
    device.send("asn", _event("e-2", po_id))  # the same ASN in a new event: unchanged
    assert device.ack("e-2")["detail"]["outcome"] == "unchanged"

    device.send("asn", _event("e-3", po_id, qty=11))
    refused = device.ack("e-3")
    assert (refused["ok"], refused["code"], refused["retry"]) == (False, "asn_rejected", False)
    assert [(p["line"], p["code"]) for p in refused["detail"]["problems"]] == [(1, "over_po_remaining")]
    assert refused["detail"]["more_problems"] == 0
    rows = box.sql("SELECT revision, channel, device FROM asn_sources")
    assert [tuple(r) for r in rows] == [(1, "mqtt", SUPPLIER_DEVICE)]
    assert box.sql("SELECT qty FROM asn_lines WHERE asn_id = 'MQ-1'")[0][0] == 4

    device.send("asn", {"id": "e-4", "ts": "2026-11-25T09:30:00+08:00", "data": {"asn_id": "x y"}})
    garbage = device.ack("e-4")
    assert (garbage["ok"], garbage["code"]) == (False, "invalid_data")
    assert box.sql("SELECT COUNT(*) FROM dead_letters WHERE event_id = 'e-4'")[0][0] == 1


def test_only_a_linked_supplier_device_may_send_asns(box: Box) -> None:  # noqa: F811
    po_id = _bus_po(box)
    _bus_write(box, create_device, SUPPLIER_DEVICE, "supplier", SUPPLIER_PASSWORD)
    for device in (box.device("pos-1"), box.device(SUPPLIER_DEVICE, password=SUPPLIER_PASSWORD)):
        device.send("asn", _event(f"{device.id}-1", po_id))
        ack = device.ack(f"{device.id}-1")
        assert (ack["ok"], ack["code"]) == (False, "not_a_supplier_device"), ack
    assert box.sql("SELECT COUNT(*) FROM asns")[0][0] == 0
    assert STORE == "store-t"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12) | st.sampled_from(["2026-11-24", "PO1", "X1"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                ["asn_id", "po_id", "po_no", "ship_date", "note", "lines", "code", "qty", "lot", "expiry", "x"]
            ),
            inner,
            max_size=6,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(data=_json, raw=st.binary(max_size=200))
def test_any_evt_asn_payload_decodes_to_a_job_or_a_refusal(data: Any, raw: bytes) -> None:
    kinds = device_event_kinds()
    for payload in (json.dumps({"id": "e-1", "ts": "2026-11-25T09:30:00+08:00", "data": data}).encode(), raw):
        decoded = decode_event(SUPPLIER_DEVICE, "asn", payload, kinds=kinds)
        assert isinstance(decoded, (DecodedEvent, Rejection))
        if isinstance(decoded, DecodedEvent):
            assert decoded.job is not None and decoded.job.fn is record_device_asn


# --- the shipped connector templates on the demo store (箱, 提, 听, 瓶, g / kg / 斤) ------------------------


@dataclass(frozen=True)
class DemoStore:
    conn: sqlite3.Connection
    can: ItemSpec  # 听 base, 提 of 6, 箱 of 24
    bottle: ItemSpec  # 瓶 base, 箱
    weighed: ItemSpec  # g base, kg and 斤 units, a kilogram barcode; fresh: lot and expiry


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStore]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("demo"))
    conn = connect(settings.db_path)
    migrate(conn)
    seed_demo(conn, settings, context())
    catalog = build_catalog(DEFAULT_SEED, local_store_id=settings.store_id)
    can = next(i for i in catalog.items if i.base_unit == "听" and dict(i.units).get("提") == 6)
    bottle = next(i for i in catalog.items if i.base_unit == "瓶" and "箱" in dict(i.units))
    weighed = next(i for i in catalog.items if i.base_unit == "g" and "kg" in dict(i.barcodes).values())
    yield DemoStore(conn, can, bottle, weighed)
    conn.close()


def _barcode(item: ItemSpec, unit: str) -> str:
    return next(code for code, of in item.barcodes if of == unit)


def _demo_po(demo: DemoStore, key: str, *lines: Line) -> str:
    """A purchase order of the demo store; its number."""
    supplier = {demo.can.sku: demo.can.supplier, demo.weighed.sku: demo.weighed.supplier}[lines[0].code]
    return post_po(demo.conn, lines, supplier=supplier, key=key)[1]


def _import(demo: DemoStore, supplier: str, template: str, data: bytes) -> list[AsnRecord]:
    found = convert(find_template(template), data, today=TODAY)
    incoming = tuple(IncomingAsn.from_file(asn) for asn in found)
    return in_tx(demo.conn, record_incoming_asns, supplier, incoming, AsnSource("import", template=template), NOW)


def _erp_csv(rows: list[str]) -> bytes:
    head = "发货单,,,,,,,,,\r\n送货单号,采购订单号,发货日期,商品条码,数量,单位,批号,有效期至,含税单价,备注\r\n"
    return (head + "".join(row + "\r\n" for row in rows)).encode("gbk")


def _shipped(record: AsnRecord) -> list[tuple[str, str, int, int]]:
    return [(line.sku, line.unit, line.qty, line.qty_base) for line in record.lines]


def test_erp_gbk_csv_reads_the_demo_store_s_cases_packs_cans_and_bottles(demo: DemoStore) -> None:
    can, bottle = demo.can, demo.bottle
    po = _demo_po(demo, "demo-po-erp", Line(can.sku, 480), Line(bottle.sku, 240))
    ship = SHIP.strftime("%Y/%m/%d")
    rows = [
        f"DN-B-22,{po},{ship},{can.barcode},2,箱,,,72.00,",  # the piece barcode, in cases
        f",,,{_barcode(can, '箱')},1,件,,,,",  # 件: a whole case
        f",,,{can.barcode},3,提,,,,",
        f",,,{can.barcode},5,听,,,,",
        f",,,{_barcode(bottle, '箱')},10,瓶,,,,",  # a case barcode, but the file says bottles
        f",,,{bottle.barcode},4,桶,,,,",  # not listed, not the item's: refused with the item's units
    ]
    with pytest.raises(AsnImportRejected) as err:
        _import(demo, can.supplier, "erp-gbk-csv", _erp_csv(rows))
    (problem,) = err.value.problems
    assert (problem.where, problem.code, problem.asn_line) == ("line 8", "unknown_unit", 6)
    assert "桶" in problem.message and "瓶, 箱" in problem.message and "瓶, 箱" in problem.message_en
    assert_says_the_same(problem.message, problem.message_en)
    (record,) = _import(demo, can.supplier, "erp-gbk-csv", _erp_csv(rows[:-1]))
    assert _shipped(record) == [
        (can.sku, "箱", 2, 48),
        (can.sku, "箱", 1, 24),
        (can.sku, "提", 3, 18),
        (can.sku, "听", 5, 5),
        (bottle.sku, "瓶", 10, 10),
    ]
    assert record.lines[0].price_fen == 7200


def test_erp_gbk_csv_converts_kilograms_and_jin_to_grams_once(demo: DemoStore) -> None:
    meat = demo.weighed
    po = _demo_po(demo, "demo-po-weighed", Line(meat.sku, 20_000))
    ship, expiry = SHIP.strftime("%Y/%m/%d"), (SHIP + timedelta(days=3)).strftime("%Y%m%d")
    rows = [
        f"DN-F-01,{po},{ship},{_barcode(meat, 'kg')},2,公斤,P1,{expiry},36.00,",  # the kilogram barcode
        f",,,{_barcode(meat, 'g')},1.5,千克,P1,{expiry},,",  # the gram barcode
        f",,,{meat.sku},3,斤,P1,{expiry},,",
        f",,,{_barcode(meat, 'kg')},250,克,P1,{expiry},,",
    ]
    (record,) = _import(demo, meat.supplier, "erp-gbk-csv", _erp_csv(rows))
    assert _shipped(record) == [
        (meat.sku, "g", 2000, 2000),
        (meat.sku, "g", 1500, 1500),
        (meat.sku, "g", 1500, 1500),
        (meat.sku, "g", 250, 250),
    ]
    assert record.lines[0].price_fen == 4  # 36.00 yuan a kilogram: 3.6 fen a gram, rounded once


def test_nested_json_and_generic_csv_read_the_demo_store_s_units(demo: DemoStore) -> None:
    can, bottle, meat = demo.can, demo.bottle, demo.weighed
    po = _demo_po(demo, "demo-po-json", Line(can.sku, 480), Line(bottle.sku, 240))
    items = [
        {"sku": {"gtin": "0" + can.barcode}, "quantity": 2, "uom": "CS", "unitPriceFen": 7200},
        {"sku": {"gtin": can.barcode}, "quantity": 4, "uom": "PK"},
        {"sku": {"gtin": _barcode(bottle, "箱")}, "quantity": 1, "uom": "EA"},  # each: the code's unit, a case
        {"sku": {"gtin": bottle.barcode}, "quantity": 6, "uom": "BT"},
        {"sku": {"gtin": can.barcode}, "quantity": 7, "uom": "听"},  # the store's own unit passes through
    ]
    doc = {
        "shipments": [
            {"shipmentNo": "J-DEMO-1", "order": {"poNumber": po}, "shipDate": SHIP.isoformat(), "items": items}
        ]
    }
    (record,) = _import(demo, can.supplier, "nested-json", json.dumps(doc, ensure_ascii=False).encode())
    assert _shipped(record) == [
        (can.sku, "箱", 2, 48),
        (can.sku, "提", 4, 24),
        (bottle.sku, "箱", 1, 24),
        (bottle.sku, "瓶", 6, 6),
        (can.sku, "听", 7, 7),
    ]
    csv_po = _demo_po(demo, "demo-po-csv", Line(can.sku, 480))
    text = (
        "asn_id,po,ship_date,item,qty,unit\n"
        f"C-DEMO-1,{csv_po},{SHIP.isoformat()},{can.barcode},2,case\n"
        f",,,{can.barcode},3,提\n"
        f",,,{can.barcode},5,CAN\n"
        f",,,{_barcode(can, '箱')},1,\n"
    )
    (record,) = _import(demo, can.supplier, "generic-csv", text.encode())
    assert _shipped(record) == [
        (can.sku, "箱", 2, 48),
        (can.sku, "提", 3, 18),
        (can.sku, "听", 5, 5),
        (can.sku, "箱", 1, 24),
    ]
    meat_po = _demo_po(demo, "demo-po-csv-kg", Line(meat.sku, 5000))
    expiry = (SHIP + timedelta(days=3)).isoformat()
    weighed = (
        "asn_id,po,ship_date,item,qty,unit,lot,expiry\n"
        f"C-DEMO-2,{meat_po},{SHIP.isoformat()},{_barcode(meat, 'kg')},2.5,kg,P1,{expiry}\n"
    )
    (record,) = _import(demo, meat.supplier, "generic-csv", weighed.encode())
    assert _shipped(record) == [(meat.sku, "g", 2500, 2500)]
