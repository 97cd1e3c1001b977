"""Garbage from devices: a failed ack with the reason, a dead-letter row, a metric; the consumer goes on."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.bus.storage import DEAD_LETTER_PAYLOAD_CAP, list_dead_letters
from edge.db import connect
from edge.ledger.verify import verify_ledger
from tests.edge.bus.conftest import Box, sale

TS = "2024-05-01T09:30:00+08:00"
OVERSIZED = json.dumps(sale("big-1", *[("MILK-1L", 1)] * 600)).encode()


@pytest.mark.parametrize(
    ("kind", "payload", "event_id", "code"),
    [
        ("sale", b"\x00\xffnot text at all", None, "not_utf8"),
        ("sale", b"{not json", None, "not_json"),
        ("sale", json.dumps({"id": "g-1", "data": {}}).encode(), "g-1", "invalid_envelope"),
        ("sale", json.dumps({"id": "g-2", "ts": TS, "data": {"lines": [{"qty": 1}]}}).encode(), "g-2", "invalid_data"),
        ("sale", json.dumps(sale("g-3", ("0000000000000", 1))).encode(), "g-3", "unknown_item"),
        ("smell", json.dumps({"id": "g-4", "ts": TS, "data": {"ppm": 5}}).encode(), "g-4", "unknown_kind"),
        ("sale", OVERSIZED, "big-1", "payload_too_large"),
    ],
)
def test_garbage_gets_a_failed_ack_a_dead_letter_and_a_metric_and_ingest_goes_on(
    box: Box, kind: str, payload: bytes, event_id: str | None, code: str
) -> None:
    pos = box.device("pos-1")
    pos.send(kind, payload)

    ack = pos.ack(event_id)
    assert ack["ok"] is False and ack["code"] == code and ack["document"] is None and ack["retry"] is False
    assert ack["message"] and ack["message_en"]
    conn = connect(box.settings.db_path, readonly=True)
    try:
        letters = list_dead_letters(conn)
    finally:
        conn.close()
    assert len(letters) == 1
    letter = letters[0]
    assert (letter["device"], letter["event_id"], letter["reason_code"]) == ("pos-1", event_id, code)
    assert letter["topic"] == f"storebox/store-t/dev/pos-1/evt/{kind}"
    assert letter["payload_size"] == len(payload)
    stored = bytes.fromhex(letter["payload"]) if letter["payload_encoding"] == "hex" else letter["payload"].encode()
    assert stored == payload[:DEAD_LETTER_PAYLOAD_CAP]
    assert box.metric("storebox_ingest_dead_letters_total", reason=code) == 1
    assert box.metric("storebox_ingest_acks_total", ok="false", code=code) == 1

    pos.send("sale", sale("after", ("MILK-1L", 1)))
    assert pos.ack("after")["ok"] is True


def test_a_resent_unknown_code_is_answered_again_but_kept_once(box: Box) -> None:
    pos = box.device("pos-1")
    for _ in range(2):
        pos.send("sale", sale("u-1", ("0000000000000", 1)))
        assert pos.ack("u-1")["code"] == "unknown_item"
    assert box.sql("SELECT COUNT(*) FROM dead_letters")[0][0] == 1


def test_an_event_id_reused_for_different_content_is_refused_and_kept(box: Box) -> None:
    pos = box.device("pos-1")
    pos.send("sale", sale("r-1", ("MILK-1L", 1)))
    assert pos.ack("r-1")["ok"] is True
    pos.send("sale", sale("r-1", ("MILK-1L", 2)))
    assert pos.ack("r-1")["code"] == "idempotency_key_reused"
    assert box.sql("SELECT reason_code FROM dead_letters")[0][0] == "idempotency_key_reused"
    assert box.sql("SELECT SUM(qty) FROM balances WHERE sku = 'MILK-1L'")[0][0] == 9


_scalar = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12)
_json = st.recursive(
    _scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)
_code = st.sampled_from(["MILK-1L", "6901234567892", "BREAD", "EMPTY", "0000000000000", ""]) | st.text(max_size=8)
_qty = st.integers(-1, 4) | _json
_sale = st.fixed_dictionaries(
    {"lines": st.lists(st.fixed_dictionaries({"code": _code, "qty": _qty}), min_size=1, max_size=3)}
)
_scan = st.fixed_dictionaries(
    {"code": _code, "mode": st.sampled_from(["sale", "return", "count", "receive", "bogus"])},
    optional={"qty": _qty, "reason": st.sampled_from(["quality", "其他", "bad"]), "location": _code},
)
_temp = st.fixed_dictionaries({"celsius": st.floats(-300, 300) | _json})
_event_id = st.text(alphabet="abc-12", min_size=1, max_size=6) | _json
_event = st.fixed_dictionaries(
    {"id": _event_id, "ts": st.sampled_from([TS, "2024-05-01T01:30:00Z", "not a time"]) | _json},
    optional={"data": _sale | _scan | _temp | _json, "extra": _json},
)
_payload = (
    st.binary(max_size=200)
    | _json.map(lambda v: json.dumps(v).encode())
    | _event.map(lambda v: json.dumps(v, ensure_ascii=False).encode())
)
_message = st.tuples(st.sampled_from(["sale", "scan", "temp", "nope", "sale/x"]), _payload)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(messages=st.lists(_message, min_size=1, max_size=8))
def test_any_payloads_are_each_answered_and_never_half_written(box: Box, messages: list[tuple[str, Any]]) -> None:
    """Hypothesis examples share one box: ids repeat across examples on purpose (resends, reused ids)."""
    pos = box.device("pos-1")
    try:
        for kind, payload in messages:
            pos.send(kind, payload)
        acks = pos.acks(len(messages))
    finally:
        box.clients.remove(pos)
        pos.close()

    for ack in acks:
        assert set(ack) == {"id", "ok", "code", "message", "message_en", "document", "retry"}
        assert ack["retry"] is False
    conn = connect(box.settings.db_path, readonly=True)
    try:
        report = verify_ledger(conn)
        assert not any(report[k] for k in report if isinstance(report[k], list)), report
        for ack in acks:
            if ack["ok"] and ack["document"] is not None:
                row = conn.execute("SELECT command_key FROM documents WHERE id = ?", (ack["document"],)).fetchone()
                assert row["command_key"] == f"dev:pos-1:{ack['id']}"
        # every document posted by the device is answered by an ok ack somewhere, and lines and moves are whole
        orphans = conn.execute(
            "SELECT d.id FROM documents d WHERE d.device = 'pos-1' AND NOT EXISTS"
            " (SELECT 1 FROM document_lines l WHERE l.document_id = d.id)"
        ).fetchall()
        assert orphans == []
    finally:
        conn.close()
