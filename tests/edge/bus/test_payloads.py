"""Device event payloads: validation, the command each becomes, the ack; any bytes are answered."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.bus.payloads import (
    Ack,
    DecodedEvent,
    EventKind,
    RejectCode,
    Rejection,
    decode_event,
    event_key,
)
from edge.ledger.commands import DocType, Line, PostResult, ReturnReason

MAX = 16384
TS = "2024-05-01T09:30:00+08:00"


def event(event_id: str = "e-1", data: dict[str, Any] | None = None, **extra: Any) -> bytes:
    body = {"id": event_id, "ts": TS, "data": data if data is not None else {}, **extra}
    return json.dumps(body, ensure_ascii=False).encode()


def decoded(kind: str, data: dict[str, Any], device: str = "hh-1") -> DecodedEvent:
    outcome = decode_event(device, kind, event("e-1", data), max_bytes=MAX)
    assert isinstance(outcome, DecodedEvent), outcome
    return outcome


def rejected(kind: str, payload: bytes) -> Rejection:
    outcome = decode_event("hh-1", kind, payload, max_bytes=MAX)
    assert isinstance(outcome, Rejection), outcome
    return outcome


def test_sale_event_becomes_a_sale_keyed_by_device_and_event_id() -> None:
    data = {"lines": [{"code": "6901234567892", "qty": 2, "price_fen": 350}, {"code": "SKU2", "qty": 1}]}
    out = decoded("sale", {**data, "payment": "wechat"}, device="pos-1")
    cmd = out.command
    assert cmd is not None and out.reading is None
    assert cmd.key == "dev:pos-1:e-1" == event_key("pos-1", "e-1")
    assert cmd.type is DocType.SALE
    assert cmd.lines == (Line("6901234567892", 2, 350), Line("SKU2", 1))
    assert (cmd.payment, cmd.actor, cmd.device) == ("wechat", "pos-1", "pos-1")


def test_a_sale_may_name_the_location_it_sells_from() -> None:
    out = decoded("sale", {"lines": [{"code": "2000001012505"}], "location": "cold"}, device="pos-1")
    assert out.command is not None and out.command.location == "cold"
    assert decoded("sale", {"lines": [{"code": "SKU1", "qty": 1}]}).command.location is None  # type: ignore[union-attr]
    assert rejected("sale", event("e-1", {"lines": [{"code": "SKU1", "qty": 1}], "location": "no where"}))


@pytest.mark.parametrize(
    ("mode", "doc_type"),
    [("sale", DocType.SALE), ("count", DocType.STOCKTAKE), ("receive", DocType.RECEIPT)],
)
def test_scan_modes_map_to_document_types(mode: str, doc_type: DocType) -> None:
    cmd = decoded("scan", {"code": "6901234567892", "mode": mode, "location": "backroom"}).command
    assert cmd is not None
    assert cmd.type is doc_type
    assert cmd.location == "backroom"
    assert cmd.lines[0].qty == 1  # qty defaults to one piece


def test_scan_count_carries_the_counted_quantity_even_zero() -> None:
    cmd = decoded("scan", {"code": "SKU1", "mode": "count", "qty": 0}).command
    assert cmd is not None and cmd.type is DocType.STOCKTAKE and cmd.lines[0].qty == 0


def test_scan_receive_carries_lot_expiry_price_and_supplier() -> None:
    data = {
        "code": "SKU1",
        "mode": "receive",
        "qty": 12,
        "lot": "L240501",
        "expiry": "2024-06-01",
        "price_fen": 120,
        "supplier": "sup-1",
    }
    cmd = decoded("scan", data).command
    assert cmd is not None and cmd.type is DocType.RECEIPT
    assert cmd.lines == (Line("SKU1", 12, 120, lot="L240501", expiry=date(2024, 6, 1)),)
    assert cmd.counterparty == "sup-1"


@pytest.mark.parametrize(
    ("reason", "code"), [("quality", ReturnReason.QUALITY), ("包装破损", ReturnReason.DAMAGED_PACKAGING)]
)
def test_scan_return_takes_a_reason_code_or_its_chinese_label(reason: str, code: ReturnReason) -> None:
    cmd = decoded("scan", {"code": "SKU1", "mode": "return", "reason": reason}).command
    assert cmd is not None and cmd.type is DocType.CUSTOMER_RETURN and cmd.reason == code.value


@pytest.mark.parametrize(
    "data",
    [
        {"code": "SKU1", "mode": "return"},  # no reason
        {"code": "SKU1", "mode": "return", "reason": "不喜欢"},
        {"code": "SKU1", "mode": "return", "reason": "other"},  # other needs text
        {"code": "SKU1", "mode": "sale", "reason": "quality"},
        {"code": "SKU1", "mode": "sale", "qty": 0},
        {"code": "SKU1", "mode": "sale", "qty": -1},
        {"code": "SKU1", "mode": "sale", "qty": 1.5},
        {"code": "SKU1", "mode": "sale", "qty": "2"},
        {"code": "SKU1", "mode": "sale", "qty": True},
        {"code": "SKU1", "mode": "sell"},
        {"code": "SKU1"},
        {"code": "", "mode": "sale"},
        {"code": "SKU1", "mode": "sale", "expiry": "2024-06-01"},
        {"code": "SKU1", "mode": "receive", "expiry": "01/06/2024"},
        {"code": "SKU1", "mode": "count", "price_fen": 100},
        {"code": "SKU1", "mode": "sale", "extra": 1},
    ],
)
def test_invalid_scan_data_is_rejected_with_the_event_id(data: dict[str, Any]) -> None:
    out = rejected("scan", event("e-9", data))
    assert out.code == RejectCode.INVALID_DATA
    assert out.event_id == "e-9"
    assert out.message and out.message_en


def test_temperature_reading_is_kept_in_milli_degrees_not_as_a_document() -> None:
    out = decoded("temp", {"celsius": -18.25, "location": "freezer"}, device="cold-1")
    assert out.command is None and out.reading is not None
    assert out.reading.milli_celsius == -18250
    assert out.reading.location == "freezer"


@pytest.mark.parametrize(
    ("payload", "code", "event_id"),
    [
        (b"\xff\xfe", RejectCode.NOT_UTF8, None),
        (b"not json", RejectCode.NOT_JSON, None),
        (b'{"id": "a", "id": "b"}', RejectCode.NOT_JSON, None),
        (b'{"id": "e-2", "ts": "2024-05-01T09:30:00Z", "data": {"celsius": NaN}}', RejectCode.NOT_JSON, None),
        (b"[" * 5000, RejectCode.NOT_JSON, None),
        (b"[]", RejectCode.INVALID_ENVELOPE, None),
        (b'{"ts": "2024-05-01T09:30:00Z", "data": {}}', RejectCode.INVALID_ENVELOPE, None),
        (b'{"id": "e-2", "data": {}}', RejectCode.INVALID_ENVELOPE, "e-2"),
        (b'{"id": "e-2", "ts": "2024-05-01 09:30", "data": {}}', RejectCode.INVALID_ENVELOPE, "e-2"),
        (b'{"id": "e-2", "ts": 1714527000, "data": {}}', RejectCode.INVALID_ENVELOPE, "e-2"),
        (b'{"id": "e-2", "ts": "2024-05-01T09:30:00", "data": {}}', RejectCode.INVALID_ENVELOPE, "e-2"),
        (b'{"id": "", "ts": "2024-05-01T09:30:00Z", "data": {}}', RejectCode.INVALID_ENVELOPE, None),
        (b'{"id": 17, "ts": "2024-05-01T09:30:00Z", "data": {}}', RejectCode.INVALID_ENVELOPE, None),
        (b'{"id": "e 2", "ts": "2024-05-01T09:30:00Z", "data": {}}', RejectCode.INVALID_ENVELOPE, None),
        (b'{"id": "e-2", "ts": "2024-05-01T09:30:00Z", "data": []}', RejectCode.INVALID_ENVELOPE, "e-2"),
        (b'{"id": "e-2", "ts": "2024-05-01T09:30:00Z", "data": {}, "x": 1}', RejectCode.INVALID_ENVELOPE, "e-2"),
        (b'{"id": "e-2", "ts": "2024-05-01T09:30:00Z", "data": {"lines": []}}', RejectCode.INVALID_DATA, "e-2"),
    ],
)
def test_garbage_is_rejected_with_a_stable_code_and_the_id_when_readable(
    payload: bytes, code: RejectCode, event_id: str | None
) -> None:
    out = rejected("sale", payload)
    assert (out.code, out.event_id) == (code, event_id)


def test_unknown_kind_is_rejected_with_the_event_id() -> None:
    out = rejected("weight-x", event("e-3", {"grams": 5}))
    assert (out.code, out.event_id) == (RejectCode.UNKNOWN_KIND, "e-3")


def test_oversized_payload_is_rejected_unparsed_but_its_id_is_recovered_from_the_head() -> None:
    payload = event("e-big", {"lines": [{"code": "X" * 20, "qty": 1}] * 1000})
    assert len(payload) > MAX
    out = rejected("sale", payload)
    assert (out.code, out.event_id) == (RejectCode.PAYLOAD_TOO_LARGE, "e-big")
    assert str(len(payload)) in out.message_en


def test_ack_json_is_chinese_first_with_english_and_the_document() -> None:
    result = PostResult(
        key="dev:pos-1:e-1", ok=True, code="ok", message="已过账 SA1", message_en="posted SA1", document_id=7
    )
    body = json.loads(Ack.for_result("e-1", result).to_json())
    assert body == {
        "id": "e-1",
        "ok": True,
        "code": "ok",
        "message": "已过账 SA1",
        "message_en": "posted SA1",
        "document": 7,
        "retry": False,
    }
    assert json.loads(Ack.unavailable("e-1").to_json())["retry"] is True


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
_line = st.fixed_dictionaries(
    {"code": st.sampled_from(["SKU1", "6901234567892", "", "x" * 70]), "qty": st.integers(-2, 3) | _json},
    optional={"price_fen": st.integers(-1, 10**10) | _json, "unit": _json},
)
_data = st.one_of(
    _json,
    st.fixed_dictionaries({"lines": st.lists(_line, max_size=3)}, optional={"payment": _json}),
    st.fixed_dictionaries(
        {
            "code": st.sampled_from(["SKU1", "", "6901234567892"]),
            "mode": st.sampled_from(["sale", "return", "count", "receive", "x"]),
        },
        optional={
            "qty": st.integers(-1, 3) | _json,
            "reason": st.sampled_from(["quality", "其他", "other", "nope"]),
            "reason_text": st.text(max_size=5),
            "expiry": st.sampled_from(["2024-06-01", "2024-13-01", "x"]),
            "location": st.sampled_from(["floor", "bad location", ""]),
        },
    ),
    st.fixed_dictionaries({"celsius": st.floats() | _json}, optional={"location": _json}),
)
_envelope = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=110) | _json,
        "ts": st.sampled_from([TS, "2024-05-01T09:30:00.123456789Z", "2024-02-30T00:00:00Z", "yesterday"]) | _json,
        "data": _data,
    },
)


@settings(max_examples=400)
@given(kind=st.sampled_from(["sale", "scan", "temp", "other", ""]), body=_envelope)
def test_any_json_event_is_either_a_command_a_reading_or_a_rejection(kind: str, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    out = decode_event("dev-1", kind, payload, max_bytes=MAX)
    if isinstance(out, Rejection):
        assert out.code in set(RejectCode)
        assert out.message and out.message_en
        json.loads(Ack.for_rejection(out).to_json())
    else:
        assert out.kind == EventKind(kind).value
        assert (out.command is None) != (out.reading is None)
        if out.command is not None:
            assert out.command.key == f"dev:dev-1:{body['id']}"
            assert all(isinstance(line.qty, int) and not isinstance(line.qty, bool) for line in out.command.lines)


@settings(max_examples=400)
@given(payload=st.binary(max_size=300), kind=st.text(max_size=10))
def test_any_bytes_are_answered_without_raising(payload: bytes, kind: str) -> None:
    out = decode_event("dev-1", kind, payload, max_bytes=200)
    assert isinstance(out, Rejection | DecodedEvent)
