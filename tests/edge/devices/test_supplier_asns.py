"""Supplier ASNs as they arrive: the submission job (whole or nothing, PO by number, where each ASN came from) and
`evt/asn` from a supplier device through the real bus box, with the problems in the ack."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.bus.event_kinds import device_event_kinds
from edge.bus.payloads import DecodedEvent, Rejection, decode_event
from edge.devices.asn import AsnLine, AsnRejected, RecordOutcome
from edge.devices.asn_templates import AsnImportRejected
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
    in_tx,
    open_store,
    post_po,
)

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
