"""ASNs (发货通知): validation with every problem by line, idempotent resends, revisions, remaining quantities."""

from __future__ import annotations

import pickle
import sqlite3
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.devices.asn import (
    AsnAlreadyReceived,
    AsnInput,
    AsnLine,
    AsnProblem,
    AsnRejected,
    AsnState,
    Difference,
    RecordOutcome,
    get_asn,
    list_asns,
    mark_received,
    open_purchase_orders,
    record_asn,
)
from edge.ledger.commands import DocType, Line, PostDocument, ReverseDocument
from edge.ledger.posting import post
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

SHIP = TODAY - timedelta(days=1)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = open_store(tmp_path / "store.db")
    yield connection
    connection.close()


@pytest.fixture
def po(conn: sqlite3.Connection) -> int:
    return post_po(conn)[0]


def good(po_id: int, asn_id: str = "ASN-1", **changes: object) -> AsnInput:
    lines = (AsnLine(COLA_CASE, 1), AsnLine(MILK_CARTON, 12, lot="M2611", expiry=MILK_EXPIRY))
    return AsnInput(**{"asn_id": asn_id, "po_id": po_id, "ship_date": SHIP, "lines": lines, **changes})  # type: ignore[arg-type]


def record(conn: sqlite3.Connection, asn: AsnInput, supplier: str = "sup1") -> object:
    return in_tx(conn, record_asn, supplier, asn, NOW)


def rows(conn: sqlite3.Connection) -> dict[str, int]:
    return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("asns", "asn_lines", "asn_revisions")}


def test_an_asn_is_stored_with_lines_resolved_to_items_in_base_units(conn: sqlite3.Connection, po: int) -> None:
    stored = in_tx(conn, record_asn, "sup1", good(po), NOW)
    assert stored.outcome is RecordOutcome.CREATED
    assert (stored.revision, stored.state, stored.po_id) == (1, AsnState.OPEN, po)
    assert [(ln.sku, ln.unit, ln.qty, ln.qty_base, ln.lot) for ln in stored.lines] == [
        ("A1", "箱", 1, 24, None),
        ("M1", "盒", 12, 12, "M2611"),
    ]
    assert get_asn(conn, "ASN-1", supplier="sup1") == stored.__class__(
        **{**{f: getattr(stored, f) for f in stored.__slots__}, "outcome": RecordOutcome.STORED}  # type: ignore[attr-defined]
    )
    assert stored.to_dict()["lines"][1]["expiry"] == MILK_EXPIRY.isoformat()


def test_the_same_asn_sent_again_changes_nothing(conn: sqlite3.Connection, po: int) -> None:
    first = in_tx(conn, record_asn, "sup1", good(po), NOW)
    before = rows(conn)
    again = in_tx(conn, record_asn, "sup1", good(po), NOW + timedelta(hours=1))
    assert again.outcome is RecordOutcome.UNCHANGED
    assert (again.revision, again.recorded_at, again.lines) == (first.revision, first.recorded_at, first.lines)
    assert rows(conn) == before


def test_other_content_under_the_same_id_is_a_new_revision_while_nothing_was_received(
    conn: sqlite3.Connection, po: int
) -> None:
    record(conn, good(po))
    revised = in_tx(conn, record_asn, "sup1", good(po, lines=(AsnLine(COLA_CASE, 2),)), NOW)
    assert revised.outcome is RecordOutcome.REVISED
    assert revised.revision == 2
    assert [(ln.sku, ln.qty_base) for ln in revised.lines] == [("A1", 48)]
    assert rows(conn) == {"asns": 1, "asn_lines": 1, "asn_revisions": 2}


def test_an_asn_received_against_cannot_change_but_may_be_resent_unchanged(conn: sqlite3.Connection, po: int) -> None:
    record(conn, good(po))
    in_tx(conn, mark_received, "sup1", "ASN-1", 99, [Difference("short", "M1", 12, 10, "M2611")])
    with pytest.raises(AsnAlreadyReceived) as caught:
        record(conn, good(po, lines=(AsnLine(COLA_CASE, 2),)))
    assert caught.value.status == 409 and caught.value.code == "asn_already_received"
    assert [p.code for p in caught.value.problems] == ["asn_already_received"]
    resent = in_tx(conn, record_asn, "sup1", good(po), NOW)
    assert resent.outcome is RecordOutcome.UNCHANGED
    assert resent.state is AsnState.RECEIVED and resent.receipt_ids == (99,)
    assert resent.differences == (Difference("short", "M1", 12, 10, "M2611"),)


def test_every_problem_is_reported_with_its_line_and_nothing_is_written(conn: sqlite3.Connection, po: int) -> None:
    lines = (
        AsnLine(COLA_CASE, 3),  # 72 cans: over the 48 ordered
        AsnLine(MILK_CARTON, 12),  # food without lot and expiry
        AsnLine("NOPE", 1),  # unknown item
        AsnLine("G1", 1),  # not on the PO
        AsnLine("A1", 0),  # invalid quantity
        AsnLine("F1", 1, lot="F1", expiry=SHIP - timedelta(days=1)),  # expired before it ships
        AsnLine("A1", 1, unit="pallet"),  # unknown unit
    )
    with pytest.raises(AsnRejected) as caught:
        record(conn, good(po, lines=lines))
    problems = caught.value.problems
    assert [(p.line, p.code) for p in problems] == [
        (1, "over_po_remaining"),
        (2, "missing_lot"),
        (2, "missing_expiry"),
        (3, "unknown_item"),
        (4, "not_on_po"),
        (5, "invalid_qty"),
        (6, "expired"),
        (7, "unknown_unit"),
    ]
    assert all(p.message and p.message_en for p in problems)
    assert "72" in problems[0].message_en and "48" in problems[0].message_en
    assert caught.value.status == 422
    assert caught.value.detail["problems"][0] == {
        "line": 1,
        "code": "over_po_remaining",
        "message": problems[0].message,
        "message_en": problems[0].message_en,
    }
    assert "and 7 more problems" in caught.value.message_en
    assert rows(conn) == {"asns": 0, "asn_lines": 0, "asn_revisions": 0}


def test_a_barcode_with_a_wrong_check_digit_is_an_invalid_code_not_an_unknown_item(
    conn: sqlite3.Connection, po: int
) -> None:
    misread = COLA_CASE[:-1] + str((int(COLA_CASE[-1]) + 1) % 10)
    for code in (misread, "6967573016393"):
        with pytest.raises(AsnRejected) as caught:
            record(conn, good(po, lines=(AsnLine(code, 1),)))
        (problem,) = caught.value.problems
        assert (problem.line, problem.code) == (1, "invalid_code"), problem
        assert "校验位" in problem.message and "check digit" in problem.message_en
    assert "(expected 2)" in problem.message_en
    assert rows(conn) == {"asns": 0, "asn_lines": 0, "asn_revisions": 0}


def test_problems_unpack_as_tuples_and_survive_the_writer_pipe(conn: sqlite3.Connection, po: int) -> None:
    with pytest.raises(AsnRejected) as caught:
        record(conn, good(po, lines=(AsnLine("NOPE", 1),)))
    line, code, message, message_en = caught.value.problems[0]
    assert (line, code) == (1, "unknown_item") and "NOPE" in message and "NOPE" in message_en
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is AsnRejected
    assert copy.problems == caught.value.problems and copy.to_dict() == caught.value.to_dict()


def test_another_suppliers_po_reads_as_unknown(conn: sqlite3.Connection, po: int) -> None:
    for po_id in (po, 12345):
        with pytest.raises(AsnRejected) as caught:
            record(conn, good(po_id), supplier="sup2")
        assert caught.value.problems[0][:2] == (None, "unknown_purchase_order")


def test_a_reversed_po_is_closed_and_an_unknown_supplier_is_refused(conn: sqlite3.Connection, po: int) -> None:
    result = in_tx(conn, post, ReverseDocument(key="rv-po", document_id=po), context())
    assert result.ok
    with pytest.raises(AsnRejected) as caught:
        record(conn, good(po))
    assert caught.value.problems[0].code == "purchase_order_closed"
    with pytest.raises(AsnRejected) as caught:
        record(conn, good(po), supplier="ghost")
    assert caught.value.problems == (
        AsnProblem(None, "unknown_supplier", "未知供应商: ghost", "unknown supplier: ghost"),
    )


def test_remaining_counts_what_was_received_and_what_other_open_asns_announce(
    conn: sqlite3.Connection, po: int
) -> None:
    receipt = PostDocument(key="rc-1", type=DocType.RECEIPT, lines=(Line("A1", 12),), counterparty="sup1", ref_id=po)
    assert in_tx(conn, post, receipt, context()).ok
    record(conn, good(po, "ASN-A", lines=(AsnLine("A1", 24),)))
    with pytest.raises(AsnRejected) as caught:
        record(conn, good(po, "ASN-B", lines=(AsnLine("A1", 6), AsnLine("A1", 7))))
    # 48 ordered - 12 received - 24 announced = 12 open; the second line makes 13.
    assert [(p.line, p.code) for p in caught.value.problems] == [(2, "over_po_remaining")]
    assert record(conn, good(po, "ASN-B", lines=(AsnLine("A1", 12),)))
    # Revising ASN-A does not count ASN-A's own earlier lines against it.
    assert in_tx(conn, record_asn, "sup1", good(po, "ASN-A", lines=(AsnLine("A1", 23),)), NOW).revision == 2
    (order,) = open_purchase_orders(conn, "sup1")
    cola = next(i for i in order.items if i.sku == "A1")
    assert (cola.ordered_base, cola.received_base, cola.announced_base, cola.remaining_base) == (48, 12, 35, 1)
    assert order.to_dict()["items"][0]["remaining"] == 1
    assert open_purchase_orders(conn, "sup2") == []


def test_a_gtin_14_with_a_leading_zero_is_the_ean_13(conn: sqlite3.Connection, po: int) -> None:
    stored = in_tx(conn, record_asn, "sup1", good(po, lines=(AsnLine("0" + COLA_CASE, 1),)), NOW)
    assert [(ln.sku, ln.qty_base) for ln in stored.lines] == [("A1", 24)]


def test_bad_ids_and_too_many_lines_are_refused(conn: sqlite3.Connection, po: int) -> None:
    with pytest.raises(AsnRejected) as caught:
        record(conn, good(po, asn_id="bad id/1"))
    assert caught.value.problems[0].code == "invalid_asn_id"
    with pytest.raises(AsnRejected) as caught:
        record(conn, good(po, lines=tuple(AsnLine("A1", 1) for _ in range(1001))))
    assert caught.value.problems[0].code == "too_many_lines"
    with pytest.raises(AsnRejected) as caught:
        record(conn, good(po, lines=()))
    assert caught.value.problems[0].code == "no_lines"


def test_list_filters_by_supplier_po_and_state(conn: sqlite3.Connection, po: int) -> None:
    record(conn, good(po, "ASN-1"))
    record(conn, good(po, "ASN-2", lines=(AsnLine("F1", 1, lot="F1", expiry=TODAY + timedelta(days=90)),)))
    in_tx(conn, mark_received, "sup1", "ASN-1", 7, [])
    assert {r.asn_id for r in list_asns(conn)} == {"ASN-1", "ASN-2"}
    assert [r.asn_id for r in list_asns(conn, state=AsnState.OPEN)] == ["ASN-2"]
    assert [r.asn_id for r in list_asns(conn, state="received", po_id=po)] == ["ASN-1"]
    assert list_asns(conn, supplier="sup2") == []
    assert get_asn(conn, "ASN-1", supplier="sup2") is None


codes = st.sampled_from(["A1", "M1", "F1", "G1", COLA_CASE, MILK_CARTON, "0" + COLA_CASE, "", "NOPE", "x" * 70])
asn_lines = st.builds(
    AsnLine,
    code=codes | st.text(max_size=80),
    qty=st.integers(min_value=-5, max_value=20_000_000) | st.booleans(),  # type: ignore[arg-type]
    unit=st.none() | st.sampled_from(["箱", "盒", "pallet", ""]),
    lot=st.none() | st.text(max_size=70),
    expiry=st.none() | st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)),
    price_fen=st.none() | st.integers(min_value=-10, max_value=2_000_000_000),
)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    connection = open_store(tmp_path_factory.mktemp("asn") / "store.db")
    post_po(connection)
    yield connection
    connection.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    asn_id=st.text(max_size=70) | st.just("ASN-1"),
    po_id=st.integers(min_value=-3, max_value=3),
    lines=st.lists(asn_lines, max_size=6),
    note=st.none() | st.text(max_size=600),
)
def test_any_asn_is_stored_whole_or_refused_with_problems(
    shared: sqlite3.Connection, asn_id: str, po_id: int, lines: list[AsnLine], note: str | None
) -> None:
    asn = AsnInput(asn_id=asn_id, po_id=po_id, ship_date=SHIP, lines=tuple(lines), note=note)
    shared.execute("BEGIN IMMEDIATE")
    try:
        try:
            stored = record_asn(shared, "sup1", asn, NOW)
        except AsnRejected as err:
            assert err.problems and all(isinstance(p.code, str) and p.message_en for p in err.problems)
            assert rows(shared) == {"asns": 0, "asn_lines": 0, "asn_revisions": 0}
        else:
            assert len(stored.lines) == len(lines)
            assert rows(shared) == {"asns": 1, "asn_lines": len(lines), "asn_revisions": 1}
    finally:
        shared.execute("ROLLBACK")
