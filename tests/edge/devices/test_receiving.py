"""Scan-to-receive: drafts from signed delivery notes, scans, confirm into a receipt with its differences; forged,
stale and replayed notes refused; the whole flow from a paho handheld through the real bus box."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.bus.payloads import decode_event
from edge.bus.storage import run_event_job
from edge.devices.asn import AsnInput, AsnLine, AsnState, get_asn, record_asn
from edge.devices.delivery_note import (
    BASE45,
    PREFIX,
    DeliveryNote,
    NoteLine,
    base45_encode,
    encode_note,
    generate_key_pair,
    key_id,
    public_key_text,
    set_signing_key,
)
from edge.devices.receiving import (
    RECEIVE_KIND,
    CancelDraft,
    ConfirmDraft,
    DraftClosed,
    NoteAlreadyReceived,
    NoteDoesNotMatch,
    NoteNotYetValid,
    NoteReplayed,
    NoteStale,
    NothingToReceive,
    OpenNote,
    ReceiptRefused,
    ReceivingPolicy,
    ScanGoods,
    ScanRefused,
    UnknownDraft,
    load_draft,
    perform,
    receive_job,
)
from edge.ledger.commands import DocType, Line, PostDocument, ReverseDocument
from edge.ledger.posting import post
from tests.edge.bus.conftest import Box, box  # noqa: F401  (the real bus box fixture)
from tests.edge.devices.receiving_store import (
    COLA_CAN,
    COLA_CASE,
    DUMPLING_EXPIRY,
    MILK_CARTON,
    MILK_EXPIRY,
    NOTE_LINES,
    NOW,
    TODAY,
    context,
    ctx_at,
    in_tx,
    note,
    open_store,
    post_po,
    register_key,
)
from tools.delivery_note import public_key_of, sign_note

POLICY = ReceivingPolicy()


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = open_store(tmp_path / "store.db")
    yield connection
    connection.close()


@pytest.fixture
def store(conn: sqlite3.Connection) -> dict[str, Any]:
    po_id, po_no = post_po(conn)
    return {"conn": conn, "po_id": po_id, "po_no": po_no, "key": register_key(conn)}


def act(conn: sqlite3.Connection, action: Any, *, now: Any = NOW, actor: str = "pda-1") -> Any:
    return in_tx(conn, perform, ctx_at(now), action, POLICY, actor=actor, device=actor)


def open_note(store: dict[str, Any], **kw: Any) -> tuple[int, Any]:
    outcome = act(store["conn"], OpenNote(note(store["key"], store["po_no"], **kw)))
    return int(outcome.detail["draft"]), outcome


def table(conn: sqlite3.Connection, name: str) -> int:
    return int(conn.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0])


def receipt_lines(conn: sqlite3.Connection, document_id: int) -> list[tuple[Any, ...]]:
    return [
        tuple(r)
        for r in conn.execute(
            "SELECT sku, unit, qty, qty_base, price_fen, lot, expiry FROM document_lines WHERE document_id = ?"
            " ORDER BY line_no",
            (document_id,),
        )
    ]


# --- open -------------------------------------------------------------------------------------


def test_scanning_a_note_opens_a_draft_expecting_its_lines(store: dict[str, Any]) -> None:
    draft_id, opened = open_note(store)
    assert opened.code == "ok" and opened.detail["resumed"] is False
    assert opened.detail["po_id"] == store["po_id"] and opened.detail["asn_id"] == "ASN-1"
    assert [(e["line"], e["sku"], e["qty_base"], e["lot"], e["expiry"]) for e in opened.detail["expected"]] == [
        (1, "A1", 48, None, None),
        (2, "M1", 24, "M2611", MILK_EXPIRY.isoformat()),
        (3, "F1", 10, "F2611", DUMPLING_EXPIRY.isoformat()),
    ]
    assert "asn_matches" not in opened.detail  # no ASN on the box: the note is the ASN
    draft = load_draft(store["conn"], draft_id)
    assert (draft.state, draft.supplier, draft.opened_by, draft.device) == ("open", "sup1", "pda-1", "pda-1")


def test_a_note_matching_a_stored_asn_says_so(store: dict[str, Any]) -> None:
    conn = store["conn"]
    asn = AsnInput(
        "ASN-1",
        store["po_id"],
        TODAY,
        (
            AsnLine(COLA_CASE, 2),
            AsnLine(MILK_CARTON, 24, lot="M2611", expiry=MILK_EXPIRY),
            AsnLine("F1", 10, lot="F2611", expiry=DUMPLING_EXPIRY),
        ),
    )
    in_tx(conn, record_asn, "sup1", asn, NOW)
    _, opened = open_note(store)
    assert opened.detail["asn_matches"] is True and opened.detail["asn_revision"] == 1
    _, other = open_note(store, asn_id="ASN-1", lines=NOTE_LINES[:2])
    assert other.detail["asn_matches"] is False


def test_scanning_the_same_note_again_resumes_its_open_draft(store: dict[str, Any]) -> None:
    text = note(store["key"], store["po_no"])
    first = act(store["conn"], OpenNote(text))
    act(store["conn"], ScanGoods(first.detail["draft"], COLA_CASE))
    again = act(store["conn"], OpenNote(text))
    assert again.detail["draft"] == first.detail["draft"] and again.detail["resumed"] is True
    assert again.detail["scanned"] == [{"sku": "A1", "lot": None, "expiry": None, "qty_base": 24}]
    assert table(store["conn"], "receipt_drafts") == 1


# --- refusals of the note ------------------------------------------------------------------------


def test_a_stale_or_future_note_is_refused(store: dict[str, Any]) -> None:
    with pytest.raises(NoteStale) as stale:
        open_note(store, issued_at=NOW - timedelta(days=31))
    assert "30 days" in stale.value.message_en
    with pytest.raises(NoteNotYetValid):
        open_note(store, issued_at=NOW + timedelta(minutes=11))
    open_note(store, issued_at=NOW + timedelta(minutes=9))  # within the clock skew


def test_a_nonce_reused_with_other_content_is_a_replay(store: dict[str, Any]) -> None:
    open_note(store, nonce="same-nonce-123")
    with pytest.raises(NoteReplayed) as caught:
        open_note(store, nonce="same-nonce-123", lines=NOTE_LINES[:1])
    assert caught.value.code == "note_replayed" and caught.value.status == 409


def test_a_received_note_or_another_note_of_its_asn_is_refused(store: dict[str, Any]) -> None:
    text = note(store["key"], store["po_no"])
    draft = act(store["conn"], OpenNote(text)).detail["draft"]
    receipt = act(store["conn"], ConfirmDraft(draft, as_announced=True)).document
    before = table(store["conn"], "documents")
    with pytest.raises(NoteAlreadyReceived) as caught:
        act(store["conn"], OpenNote(text))
    assert caught.value.detail == {"supplier": "sup1", "asn_id": "ASN-1", "receipt_id": receipt}
    with pytest.raises(NoteAlreadyReceived):  # reprinted with a new nonce: still the same shipment
        open_note(store)
    assert table(store["conn"], "documents") == before


def test_a_note_for_a_po_that_is_not_the_suppliers_or_unknown_items_does_not_match(store: dict[str, Any]) -> None:
    conn = store["conn"]
    _, other_po = post_po(conn, supplier="sup2", key="po-sup2")
    for po_no in (other_po, "PO-NOPE"):
        with pytest.raises(NoteDoesNotMatch, match="not an open purchase order"):
            act(conn, OpenNote(note(store["key"], po_no)))
    with pytest.raises(NoteDoesNotMatch) as caught:
        act(conn, OpenNote(note(store["key"], store["po_no"], lines=(NoteLine("A1", 1), NoteLine("NOPE", 1)))))
    assert caught.value.detail == {"lines": [2]}
    # An ASN on the box for another PO of the supplier.
    second_id, _ = post_po(conn, key="po-2")
    in_tx(conn, record_asn, "sup1", AsnInput("ASN-9", second_id, TODAY, (AsnLine("A1", 1),)), NOW)
    with pytest.raises(NoteDoesNotMatch, match="ASN ASN-9 is for purchase order"):
        act(conn, OpenNote(note(store["key"], store["po_no"], asn_id="ASN-9")))
    assert table(conn, "receipt_drafts") == 0 and table(conn, "delivery_notes") == 0


def test_a_refused_job_writes_nothing_and_answers_a_final_failed_ack(store: dict[str, Any]) -> None:
    conn = store["conn"]
    other, _ = generate_key_pair()
    unknown = sign_note(other, supplier="sup1", asn_id="ASN-1", po_no=store["po_no"], lines=NOTE_LINES, issued_at=NOW)
    outcome = in_tx(conn, receive_job, ctx_at(), OpenNote(unknown), "pda-1", POLICY)
    assert (outcome.ok, outcome.code) == (False, "note_unknown_key")
    # Naming the supplier's real key, signed by someone else.
    forged_note = DeliveryNote(
        "sup1", key_id(public_key_of(store["key"])), "ASN-1", store["po_no"], NOW, "forged-nonce-1", NOTE_LINES
    )
    outcome = in_tx(conn, receive_job, ctx_at(), OpenNote(encode_note(forged_note, other)), "pda-1", POLICY)
    assert (outcome.ok, outcome.code) == (False, "note_bad_signature")
    assert outcome.detail == {"supplier": "sup1", "asn_id": "ASN-1"}
    assert table(conn, "delivery_notes") == 0 and table(conn, "receipt_drafts") == 0


# --- scans ------------------------------------------------------------------------------------


def test_each_scan_says_how_the_item_stands_against_the_note(store: dict[str, Any]) -> None:
    draft, _ = open_note(store)
    conn = store["conn"]
    cans = act(conn, ScanGoods(draft, COLA_CAN, qty=12))
    assert (cans.detail["sku"], cans.detail["qty_base"], cans.detail["scanned"], cans.detail["expected"]) == (
        "A1",
        12,
        12,
        48,
    )
    assert cans.detail["status"] == "ok"
    case = act(conn, ScanGoods(draft, COLA_CASE, qty=2))
    assert (case.detail["unit"], case.detail["qty_base"], case.detail["status"]) == ("箱", 48, "over")
    assert act(conn, ScanGoods(draft, "G1")).detail["status"] == "not_on_po"
    assert act(conn, ScanGoods(draft, MILK_CARTON, lot="M9999")).detail["status"] == "wrong_lot"
    old = act(conn, ScanGoods(draft, "F1", lot="F0001", expiry=TODAY - timedelta(days=1)))
    assert old.detail["status"] == "expired"
    # The lot's expiry comes from the note when the scan has none.
    assert act(conn, ScanGoods(draft, "F1", lot="F2611")).detail["expiry"] == DUMPLING_EXPIRY.isoformat()


def test_the_running_count_is_what_will_be_received_and_says_so_when_some_will_not(store: dict[str, Any]) -> None:
    draft, _ = open_note(store)
    conn = store["conn"]
    good = act(conn, ScanGoods(draft, MILK_CARTON, qty=20, lot="M2611"))
    assert (good.detail["scanned"], good.detail["booked"]) == (20, 20)
    assert good.message_en == "M1: scanned 20 of 24 盒"
    old = act(conn, ScanGoods(draft, MILK_CARTON, qty=3, lot="M0001", expiry=TODAY - timedelta(days=1)))
    assert (old.detail["scanned"], old.detail["booked"], old.detail["status"]) == (23, 20, "expired")
    assert old.message == "鲜牛奶 250ml: 可入库 20/24 盒 (已扫 23, 其中 3 过期或不在订单上, 不入库)"
    assert old.message_en == "M1: 20 of 24 盒 to receive (23 scanned, 3 expired or not on the PO: not received)"
    stray = act(conn, ScanGoods(draft, "G1", qty=2))
    assert (stray.detail["scanned"], stray.detail["booked"], stray.detail["status"]) == (2, 0, "not_on_po")
    assert "0 of 0" in stray.message_en and "2 scanned" in stray.message_en
    # Over is counted on what will be received: 3 expired cartons do not make 23 + 3 over 24.
    more = act(conn, ScanGoods(draft, MILK_CARTON, qty=4, lot="M2611"))
    assert (more.detail["booked"], more.detail["status"]) == (24, "ok")


def test_a_negative_scan_takes_back_but_never_below_zero(store: dict[str, Any]) -> None:
    draft, _ = open_note(store)
    conn = store["conn"]
    act(conn, ScanGoods(draft, COLA_CAN, qty=5))
    assert act(conn, ScanGoods(draft, COLA_CAN, qty=-2)).detail["scanned"] == 3
    with pytest.raises(ScanRefused, match="cannot undo 4"):
        act(conn, ScanGoods(draft, COLA_CAN, qty=-4))
    with pytest.raises(ScanRefused, match="invalid quantity 0"):
        act(conn, ScanGoods(draft, COLA_CAN, qty=0))


def test_unknown_codes_drafts_and_closed_drafts_are_refused(store: dict[str, Any]) -> None:
    draft, _ = open_note(store)
    conn = store["conn"]
    with pytest.raises(ScanRefused) as caught:
        act(conn, ScanGoods(draft, "NOPE"))
    assert caught.value.code == "scan_refused" and "NOPE" in caught.value.message_en
    with pytest.raises(UnknownDraft):
        act(conn, ScanGoods(draft + 1, COLA_CAN))
    act(conn, CancelDraft(draft))
    with pytest.raises(DraftClosed, match="cancelled"):
        act(conn, ScanGoods(draft, COLA_CAN))
    with pytest.raises(DraftClosed):
        act(conn, ConfirmDraft(draft))


def test_a_gs1_code_brings_its_lot_and_expiry(store: dict[str, Any]) -> None:
    draft, _ = open_note(store)
    gs1 = f"(01)0{MILK_CARTON}(17){MILK_EXPIRY:%y%m%d}(10)M2611"
    scanned = act(store["conn"], ScanGoods(draft, gs1, qty=24))
    assert (scanned.detail["sku"], scanned.detail["lot"], scanned.detail["expiry"], scanned.detail["status"]) == (
        "M1",
        "M2611",
        MILK_EXPIRY.isoformat(),
        "ok",
    )


def test_a_cancelled_drafts_note_can_be_scanned_again(store: dict[str, Any]) -> None:
    text = note(store["key"], store["po_no"])
    first = act(store["conn"], OpenNote(text)).detail["draft"]
    act(store["conn"], CancelDraft(first))
    second = act(store["conn"], OpenNote(text))
    assert second.detail["draft"] != first and second.detail["resumed"] is False


# --- confirm ----------------------------------------------------------------------------------


def scan_everything(conn: sqlite3.Connection, draft: int) -> None:
    act(conn, ScanGoods(draft, COLA_CASE, qty=2))
    act(conn, ScanGoods(draft, MILK_CARTON, qty=24, lot="M2611"))
    act(conn, ScanGoods(draft, "F1", qty=10, lot="F2611"))


def test_confirm_posts_the_receipt_against_the_po_by_lot_and_expiry(store: dict[str, Any]) -> None:
    conn = store["conn"]
    in_tx(
        conn,
        record_asn,
        "sup1",
        AsnInput("ASN-1", store["po_id"], TODAY, (AsnLine(COLA_CASE, 2),)),
        NOW,
    )
    draft, _ = open_note(store)
    scan_everything(conn, draft)
    done = act(conn, ConfirmDraft(draft))
    assert done.code == "ok" and done.detail["differences"] == []
    assert done.message_en.endswith("3 lines, no differences")
    receipt = conn.execute("SELECT * FROM documents WHERE id = ?", (done.document,)).fetchone()
    assert (receipt["type"], receipt["ref_id"], receipt["counterparty"]) == ("receipt", store["po_id"], "sup1")
    assert done.detail["receipt"] == {"id": receipt["id"], "doc_no": receipt["doc_no"]}
    # At the PO's prices: cola in cases as ordered; milk and dumplings by lot with their expiry.
    assert receipt_lines(conn, done.document) == [
        ("A1", "箱", 2, 48, 4800, None, None),
        ("M1", "盒", 24, 24, 420, "M2611", MILK_EXPIRY.isoformat()),
        ("F1", "袋", 10, 10, 1207, "F2611", DUMPLING_EXPIRY.isoformat()),
    ]
    balances = {(r[0], r[1]): r[2] for r in conn.execute("SELECT sku, lot, qty FROM balances")}
    assert balances == {("A1", ""): 48, ("M1", "M2611"): 24, ("F1", "F2611"): 10}
    voucher = conn.execute("SELECT id FROM vouchers WHERE document_id = ?", (done.document,)).fetchone()
    assert voucher is not None  # booked by the finance rules (暂估 until the invoice comes)
    assert len(done.post_results) == 1 and done.post_results[0].document_id == done.document
    asn = get_asn(conn, "ASN-1", supplier="sup1")
    assert asn is not None and asn.state is AsnState.RECEIVED and asn.receipt_ids == (done.document,)
    stored = load_draft(conn, draft)
    assert (stored.state, stored.receipt_id, stored.result) == ("confirmed", done.document, done.detail)


def test_confirm_reports_short_over_wrong_lot_expired_and_not_on_po(store: dict[str, Any]) -> None:
    conn = store["conn"]
    draft, _ = open_note(store)
    act(conn, ScanGoods(draft, COLA_CASE, qty=3))  # over: 72 of 48
    act(conn, ScanGoods(draft, MILK_CARTON, qty=20, lot="M2611"))  # short: 20 of 24
    act(conn, ScanGoods(draft, "F1", qty=4, lot="F2611"))  # short of the announced lot ...
    act(conn, ScanGoods(draft, "F1", qty=6, lot="F7777", expiry=DUMPLING_EXPIRY))  # ... the rest another lot
    act(conn, ScanGoods(draft, "M1", qty=2, lot="M0001", expiry=TODAY - timedelta(days=1)))  # expired
    act(conn, ScanGoods(draft, "G1", qty=5))  # not on the PO
    done = act(conn, ConfirmDraft(draft))
    kinds = [(d["kind"], d["sku"], d["expected"], d["received"], d["lot"]) for d in done.detail["differences"]]
    assert kinds == [
        ("over", "A1", 48, 72, None),
        ("expired", "M1", 0, 2, "M0001"),
        ("short", "M1", 24, 20, "M2611"),
        ("wrong_lot", "F1", 0, 6, "F7777"),
        ("short", "F1", 10, 4, "F2611"),
        ("not_on_po", "G1", 0, 5, None),
    ]
    assert sorted((r[0], r[3], r[5]) for r in receipt_lines(conn, done.document)) == [
        ("A1", 72, None),
        ("F1", 4, "F2611"),
        ("F1", 6, "F7777"),
        ("M1", 20, "M2611"),
    ]
    assert "6 differences" in done.message_en


def test_goods_not_on_the_po_are_reported_with_their_lot_and_expiry(store: dict[str, Any]) -> None:
    conn = store["conn"]
    draft, _ = open_note(store)
    act(conn, ScanGoods(draft, COLA_CASE, qty=2))
    act(conn, ScanGoods(draft, "G1", qty=5, lot="G2611", expiry=TODAY + timedelta(days=90)))
    act(conn, ScanGoods(draft, "G1", qty=1, lot="G2612"))
    done = act(conn, ConfirmDraft(draft, as_announced=True))
    stray = [d for d in done.detail["differences"] if d["kind"] == "not_on_po"]
    assert stray == [
        {
            "kind": "not_on_po",
            "sku": "G1",
            "expected": 0,
            "received": 5,
            "lot": "G2611",
            "expiry": (TODAY + timedelta(days=90)).isoformat(),
            "line_no": None,
        },
        {
            "kind": "not_on_po",
            "sku": "G1",
            "expected": 0,
            "received": 1,
            "lot": "G2612",
            "expiry": None,
            "line_no": None,
        },
    ]


def test_the_asn_records_what_differs_from_the_asn_not_only_from_the_note(store: dict[str, Any]) -> None:
    conn = store["conn"]
    asn = AsnInput(
        "ASN-1",
        store["po_id"],
        TODAY,
        (
            AsnLine(COLA_CASE, 2),
            AsnLine(MILK_CARTON, 20, lot="M2611", expiry=MILK_EXPIRY),  # the note says 24
            AsnLine("F1", 10, lot="F2611", expiry=DUMPLING_EXPIRY),
        ),
    )
    in_tx(conn, record_asn, "sup1", asn, NOW)
    draft, opened = open_note(store)
    assert opened.detail["asn_matches"] is False
    done = act(conn, ConfirmDraft(draft, as_announced=True))  # everything as the note announced it
    assert done.detail["differences"] == []
    over = {"kind": "over", "sku": "M1", "expected": 20, "received": 24, "lot": "M2611"}
    assert [{k: d[k] for k in over} for d in done.detail["asn_differences"]] == [over]
    recorded = conn.execute("SELECT differences FROM asns WHERE supplier = 'sup1' AND asn_id = 'ASN-1'").fetchone()
    assert [{k: d[k] for k in over} for d in json.loads(recorded[0])] == [over]
    assert json.loads(recorded[0])[0]["line_no"] == 2  # the ASN's own line


def test_plain_scans_fill_the_announced_lots_in_note_order(store: dict[str, Any]) -> None:
    conn = store["conn"]
    lines = (NoteLine(MILK_CARTON, 10, "M1A", MILK_EXPIRY), NoteLine(MILK_CARTON, 14, "M1B", MILK_EXPIRY))
    draft, _ = open_note(store, lines=lines)
    act(conn, ScanGoods(draft, MILK_CARTON, qty=25))  # the barcode carries no lot
    done = act(conn, ConfirmDraft(draft))
    assert sorted((r[0], r[3], r[5]) for r in receipt_lines(conn, done.document)) == [
        ("M1", 10, "M1A"),
        ("M1", 15, "M1B"),
    ]
    assert [(d["kind"], d["lot"], d["expected"], d["received"]) for d in done.detail["differences"]] == [
        ("over", "M1B", 14, 15)
    ]


def test_a_few_plain_scans_fill_the_first_announced_lot_and_leave_the_rest_short(store: dict[str, Any]) -> None:
    conn = store["conn"]
    lines = (NoteLine(MILK_CARTON, 10, "M1A", MILK_EXPIRY), NoteLine(MILK_CARTON, 14, "M1B", MILK_EXPIRY))
    draft, _ = open_note(store, lines=lines)
    act(conn, ScanGoods(draft, MILK_CARTON, qty=6))
    done = act(conn, ConfirmDraft(draft))
    assert [(r[0], r[3], r[5]) for r in receipt_lines(conn, done.document)] == [("M1", 6, "M1A")]
    assert [(d["kind"], d["lot"], d["expected"], d["received"]) for d in done.detail["differences"]] == [
        ("short", "M1A", 10, 6),
        ("short", "M1B", 14, 0),
    ]


def test_confirm_as_announced_takes_unscanned_lines_as_on_the_note(store: dict[str, Any]) -> None:
    conn = store["conn"]
    draft, _ = open_note(store)
    act(conn, ScanGoods(draft, COLA_CAN, qty=40))  # cola counted: 8 short
    done = act(conn, ConfirmDraft(draft, as_announced=True))
    assert [(d["kind"], d["sku"]) for d in done.detail["differences"]] == [("short", "A1")]
    assert sorted((r[0], r[3]) for r in receipt_lines(conn, done.document)) == [("A1", 40), ("F1", 10), ("M1", 24)]


def test_confirm_without_anything_to_book_is_refused_and_the_draft_stays_open(store: dict[str, Any]) -> None:
    draft, _ = open_note(store)
    with pytest.raises(NothingToReceive):
        act(store["conn"], ConfirmDraft(draft))
    assert load_draft(store["conn"], draft).state == "open"


def test_a_second_confirm_answers_the_first_result_and_posts_nothing(store: dict[str, Any]) -> None:
    draft, _ = open_note(store)
    first = act(store["conn"], ConfirmDraft(draft, as_announced=True))
    before = table(store["conn"], "documents")
    second = act(store["conn"], ConfirmDraft(draft), actor="pda-2")
    assert (second.document, second.detail, second.message) == (first.document, first.detail, first.message)
    assert table(store["conn"], "documents") == before


def test_a_receipt_the_ledger_refuses_leaves_the_draft_open_and_nothing_half_written(store: dict[str, Any]) -> None:
    conn = store["conn"]
    draft, _ = open_note(store)
    assert in_tx(conn, post, ReverseDocument(key="rv-po", document_id=store["po_id"]), context()).ok
    before = {t: table(conn, t) for t in ("documents", "commands", "stock_moves", "event_outcomes")}
    with pytest.raises(ReceiptRefused) as caught:
        act(conn, ConfirmDraft(draft, as_announced=True))
    assert caught.value.detail["ledger_code"] == "invalid_command" and "reversed" in caught.value.message_en
    outcome = in_tx(conn, receive_job, ctx_at(), ConfirmDraft(draft, as_announced=True), "pda-1", POLICY)
    assert (outcome.ok, outcome.code) == (False, "receipt_refused")
    assert {t: table(conn, t) for t in before} == before
    assert load_draft(conn, draft).state == "open"


def test_the_receive_kind_decodes_each_action_and_refuses_bad_data() -> None:
    kinds = {"receive": RECEIVE_KIND}

    def decode(data: dict[str, Any]) -> Any:
        body = {"id": "e1", "ts": "2026-11-25T09:00:00+08:00", "data": data}
        return decode_event("pda-1", "receive", json.dumps(body).encode(), kinds=kinds)

    opened = decode({"action": "open", "qr": "SBDN1:XYZ", "location": "backroom"})
    assert opened.job.args[0] == OpenNote("SBDN1:XYZ", "backroom") and opened.job.args[1] == "pda-1"
    scan = decode({"action": "scan", "draft": 3, "code": COLA_CAN, "qty": -1, "lot": "L1", "expiry": "2027-01-02"})
    assert scan.job.args[0] == ScanGoods(3, COLA_CAN, -1, None, "L1", date(2027, 1, 2))
    assert decode({"action": "confirm", "draft": 3, "as_announced": True}).job.args[0] == ConfirmDraft(3, True)
    assert decode({"action": "cancel", "draft": 3}).job.args[0] == CancelDraft(3)
    for bad in (
        {"action": "open"},
        {"action": "explode", "draft": 1},
        {"action": "scan", "draft": "3", "code": "x"},
        {"action": "scan", "draft": 3, "code": "x", "qty": 1, "scale": "scale-1"},
        {"action": "confirm", "draft": 0},
        {"action": "cancel", "draft": 1, "extra": 1},
        {"action": "open", "qr": "x" * 5000},
    ):
        rejected = decode(bad)
        assert getattr(rejected, "code", None) == "invalid_data", bad


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[sqlite3.Connection, str]]:
    connection = open_store(tmp_path_factory.mktemp("garbage") / "store.db")
    _, po_no = post_po(connection)
    register_key(connection)
    yield connection, po_no
    connection.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    qr=st.text(max_size=300)
    | st.text(alphabet=BASE45, max_size=600).map(lambda t: PREFIX + t)
    | st.binary(min_size=60, max_size=400).map(lambda b: PREFIX + base45_encode(b))
)
def test_garbage_qr_text_from_a_handheld_is_refused_and_writes_nothing(
    shared: tuple[sqlite3.Connection, str], qr: str
) -> None:
    conn, _ = shared
    key = f"dev:pda-1:{uuid.uuid4()}"
    outcome = in_tx(conn, run_event_job, ctx_at(), key, "receive", receive_job, (OpenNote(qr), "pda-1", POLICY))
    assert not outcome.ok and outcome.code.startswith("note_")
    assert table(conn, "delivery_notes") == 0 and table(conn, "receipt_drafts") == 0


# --- end to end: a paho handheld through the real bus box ----------------------------------------


def event(data: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "ts": "2026-11-25T09:30:00+08:00", "data": data}


def send(device: Any, data: dict[str, Any]) -> dict[str, Any]:
    body = event(data)
    device.send("receive", body)
    ack = device.ack(body["id"])
    ack["_event"] = body
    return ack


def prepare_box(box: Box, lines: int = 3) -> tuple[Any, str, list[NoteLine]]:  # noqa: F811
    """A PO of sup-1 for the bus box's items, and sup-1's signing key; the private key, PO number and note lines."""
    private, public = generate_key_pair()
    box.loop.run(box.writer.execute(set_signing_key, "sup-1", public_key_text(public), "test", NOW))
    skus = ["MILK-1L", "BREAD", "EMPTY"]
    po_lines = tuple(Line(skus[i % 3], 100, 300) for i in range(lines))
    result = box.loop.run(
        box.writer.post(PostDocument(key="po-e2e", type=DocType.PURCHASE_ORDER, lines=po_lines, counterparty="sup-1"))
    )
    assert result.ok, result
    note_lines = [NoteLine(skus[i % 3], 10, f"L{i:04d}", date.today() + timedelta(days=30)) for i in range(lines)]
    return private, result.doc_no, note_lines


def test_a_handheld_receives_a_delivery_note_end_to_end(box: Box) -> None:  # noqa: F811
    private, po_no, lines = prepare_box(box)
    qr = sign_note(private, supplier="sup-1", asn_id="ASN-E2E", po_no=po_no, lines=lines, issued_at=datetime.now(UTC))
    pda = box.device("pda-1")
    stock_topic = f"storebox/{box.settings.store_id}/stock/MILK-1L"
    assert pda.subscribe(stock_topic) == [1]
    opened = send(pda, {"action": "open", "qr": qr})
    assert opened["ok"] and opened["code"] == "ok", opened
    draft = opened["detail"]["draft"]
    assert [e["sku"] for e in opened["detail"]["expected"]] == ["MILK-1L", "BREAD", "EMPTY"]
    scanned = send(pda, {"action": "scan", "draft": draft, "code": "6901234567892", "qty": 8, "lot": "L0000"})
    assert scanned["ok"] and scanned["detail"]["scanned"] == 8 and scanned["detail"]["status"] == "ok"
    # A resent event (same id) gets the same ack and adds nothing.
    pda.send("receive", scanned["_event"])
    again = pda.ack(scanned["_event"]["id"])
    assert again["detail"] == scanned["detail"]
    done = send(pda, {"action": "confirm", "draft": draft, "as_announced": True})
    assert done["ok"] and done["document"] == done["detail"]["receipt"]["id"], done
    assert [(d["kind"], d["sku"], d["expected"], d["received"]) for d in done["detail"]["differences"]] == [
        ("short", "MILK-1L", 10, 8)
    ]
    stock = json.loads(pda.next_message(stock_topic).payload)
    assert stock["on_hand"]["floor"] == 10 + 8
    replayed = send(pda, {"action": "open", "qr": qr})
    assert (replayed["ok"], replayed["code"]) == (False, "note_already_received")
    forged = send(pda, {"action": "open", "qr": qr[:-4] + ("0000" if not qr.endswith("0000") else "1111")})
    assert not forged["ok"] and forged["code"] in ("note_bad_signature", "note_malformed")
    (receipt,) = box.sql("SELECT ref_id, counterparty, device FROM documents WHERE id = ?", (done["document"],))
    assert (receipt["counterparty"], receipt["device"]) == ("sup-1", "pda-1") and receipt["ref_id"] is not None


def test_a_fifty_line_note_goes_from_scan_to_posted_receipt_quickly(box: Box) -> None:  # noqa: F811
    private, po_no, lines = prepare_box(box, 50)
    qr = sign_note(private, supplier="sup-1", asn_id="ASN-50", po_no=po_no, lines=lines, issued_at=datetime.now(UTC))
    pda = box.device("pda-1")
    started = time.perf_counter()
    opened = send(pda, {"action": "open", "qr": qr})
    done = send(pda, {"action": "confirm", "draft": opened["detail"]["draft"], "as_announced": True})
    elapsed = time.perf_counter() - started
    assert done["ok"] and done["detail"]["differences"] == [], done
    assert len(box.sql("SELECT 1 FROM document_lines WHERE document_id = ?", (done["document"],))) == 50
    assert elapsed < 2.0, elapsed  # the lead's benchmark holds the 200 ms target; this only catches a regression


# --- the CLI ----------------------------------------------------------------------------------


def test_the_cli_keeps_signing_keys_checks_notes_and_lists_asns_and_drafts(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edge.cli import app

    conn = open_store(tmp_path / "storebox.db")
    po_id, po_no = post_po(conn)
    in_tx(conn, record_asn, "sup1", AsnInput("ASN-1", po_id, TODAY, (AsnLine(COLA_CASE, 1),)), NOW)
    conn.close()
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path)]
    private, public = generate_key_pair()

    def run(*args: str) -> Any:
        return runner.invoke(app, [*args, *data], env={"STOREBOX_CONFIG": ""})

    added = run("supplier", "signing-key", "set", "sup1", "--public-key", public.hex())
    assert added.exit_code == 0, added.output
    assert json.loads(added.output)["key_id"] == key_id(public)
    text = sign_note(private, supplier="sup1", asn_id="ASN-1", po_no=po_no, lines=NOTE_LINES, issued_at=NOW)
    checked = run("receiving", "check-note", text)
    assert checked.exit_code == 0, checked.output
    shown = json.loads(checked.output)
    assert (shown["signature"], shown["received"], shown["po_no"]) == ("valid", False, po_no)
    other, _ = generate_key_pair()
    forged = sign_note(other, supplier="sup1", asn_id="ASN-1", po_no=po_no, lines=NOTE_LINES, issued_at=NOW)
    refused = run("receiving", "check-note", forged)
    assert refused.exit_code == 2 and "no registered signing key" in refused.output
    assert [
        json.loads(line)["active"] for line in run("supplier", "signing-key", "list", "sup1").output.splitlines()
    ] == [True]
    assert run("supplier", "signing-key", "revoke", "sup1", key_id(public)).exit_code == 0
    assert "revoked" in run("receiving", "check-note", text).output
    assert run("supplier", "signing-key", "set", "sup1", "--public-key", "junk").exit_code == 2
    assert json.loads(run("asn", "list", "--state", "open").output)["asn_id"] == "ASN-1"
    assert json.loads(run("asn", "show", "sup1", "ASN-1").output)["lines"][0]["qty_base"] == 24
    assert run("asn", "show", "sup1", "NOPE").exit_code == 2
    assert run("receiving", "drafts").output == ""


def test_the_documented_handheld_session_answers_the_documented_acks(conn: sqlite3.Connection) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edge.bus.payloads import Ack
    from tests.edge.devices.test_delivery_note import doc_blocks

    (seed,) = doc_blocks("text", "private-key")
    public = public_key_of(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed.strip())))
    post_po(conn, [Line(COLA_CASE, 2, 4800), Line("M1", 24, 420)])
    in_tx(conn, set_signing_key, "sup1", public_key_text(public), "manager", NOW)
    events = [json.loads(body) for body in doc_blocks("json", "event:receive")]
    acks = [json.loads(body) for body in doc_blocks("json", "ack:receive")]
    assert [e["data"]["action"] for e in events] == ["open", "scan", "scan", "confirm"] and len(acks) == 4
    for event_body, documented in zip(events, acks, strict=True):
        decoded = decode_event("pda-1", "receive", json.dumps(event_body).encode(), kinds={"receive": RECEIVE_KIND})
        key = f"dev:pda-1:{event_body['id']}"
        outcome = in_tx(conn, run_event_job, ctx_at(), key, "receive", decoded.job.fn, decoded.job.args)
        assert json.loads(Ack.for_outcome(event_body["id"], outcome).to_json()) == documented


def test_two_notes_of_one_asn_opened_side_by_side_are_received_once(store: dict[str, Any]) -> None:
    first, _ = open_note(store)
    second, _ = open_note(store)  # a reprint: another nonce, the same ASN
    assert first != second
    act(store["conn"], ConfirmDraft(first, as_announced=True))
    with pytest.raises(NoteAlreadyReceived):
        act(store["conn"], ConfirmDraft(second, as_announced=True))
    assert table(store["conn"], "documents") == 2  # the PO and one receipt


def test_a_draft_for_an_unknown_location_is_refused(store: dict[str, Any]) -> None:
    from edge.ledger.errors import UnknownLocation

    with pytest.raises(UnknownLocation):
        act(store["conn"], OpenNote(note(store["key"], store["po_no"]), location="roof"))
    assert table(store["conn"], "delivery_notes") == 0
    draft = act(store["conn"], OpenNote(note(store["key"], store["po_no"]), location="cold")).detail["draft"]
    done = act(store["conn"], ConfirmDraft(draft, as_announced=True))
    locations = {
        r[0]
        for r in store["conn"].execute("SELECT location FROM document_lines WHERE document_id = ?", (done.document,))
    }
    assert locations == {"cold"}


skus = st.sampled_from(["A1", "M1", "F1", "G1"])
lots = st.sampled_from([None, "L1", "L2", "L3"])
expiries = st.sampled_from([None, TODAY - timedelta(days=1), TODAY, TODAY + timedelta(days=30)])


@settings(max_examples=300, deadline=None)
@given(
    expected=st.lists(st.tuples(skus, st.integers(1, 50), lots, expiries), max_size=6),
    scanned=st.lists(st.tuples(skus, lots, expiries, st.integers(1, 60)), max_size=8, unique_by=lambda s: s[:2]),
    on_po=st.sets(skus),
    as_announced=st.booleans(),
)
def test_reconcile_books_every_scanned_unit_once_or_says_why_not(
    expected: list[tuple[str, int, str | None, date | None]],
    scanned: list[tuple[str, str | None, date | None, int]],
    on_po: set[str],
    as_announced: bool,
) -> None:
    from edge.devices.asn import PoItem
    from edge.devices.receiving import Draft, ExpectedLine, ReceivedQty, reconcile

    draft = Draft(
        id=1,
        state="open",
        supplier="sup1",
        po_id=1,
        po_no="PO",
        asn_id="ASN",
        asn_revision=None,
        location=None,
        opened_at=NOW,
        opened_by="t",
        device=None,
        expected=tuple(
            ExpectedLine(n, sku, sku, sku, "pcs", qty, qty, lot, expiry, sku in on_po)
            for n, (sku, qty, lot, expiry) in enumerate(expected, start=1)
        ),
        scanned=tuple(ReceivedQty(sku, lot, expiry, qty) for sku, lot, expiry, qty in scanned),
    )
    po = {sku: PoItem(sku, sku, "pcs", 100, 0, 0, 100) for sku in on_po}
    booked, differences = reconcile(draft, po, TODAY, as_announced=as_announced)
    assert all(b.qty_base > 0 and b.sku in on_po for b in booked)
    assert all(b.expiry is None or b.expiry >= TODAY for b in booked)
    assert len({(b.sku, b.lot) for b in booked}) == len(booked)
    kinds = {"short", "over", "wrong_lot", "expired", "not_on_po"}
    assert all(d.kind in kinds for d in differences)
    scanned_skus = {s[0] for s in scanned}
    counted = list(scanned) + (
        [(sku, lot, expiry, qty) for sku, qty, lot, expiry in expected if sku not in scanned_skus]
        if as_announced
        else []
    )
    refused = sum(d.received_base for d in differences if d.kind in ("expired", "not_on_po"))
    assert sum(b.qty_base for b in booked) + refused == sum(c[3] for c in counted)


def test_an_offline_handheld_names_the_draft_by_its_note_and_the_queued_receipt_posts(store: dict[str, Any]) -> None:
    """Queued offline, the handheld never saw the open's ack: scans and the confirm carry the note instead."""
    from edge.devices.receiving import ConfirmData, OnNote, ScanActionData, to_action

    conn = store["conn"]
    qr = note(store["key"], store["po_no"])
    draft, _ = open_note_qr(conn, qr)
    scan = to_action(ScanActionData.model_validate({"action": "scan", "qr": qr, "code": COLA_CAN, "qty": 48}))
    assert isinstance(scan, OnNote)
    assert act(conn, scan).detail["draft"] == draft  # the note's open draft, resumed
    confirm = to_action(ConfirmData.model_validate({"action": "confirm", "qr": qr, "as_announced": True}))
    posted = act(conn, confirm)
    assert posted.document is not None and posted.detail["draft"] == draft
    with pytest.raises(ValueError, match="exactly one"):
        ScanActionData.model_validate({"action": "scan", "code": COLA_CAN})


def open_note_qr(conn: sqlite3.Connection, qr: str) -> tuple[int, Any]:
    outcome = act(conn, OpenNote(qr))
    return int(outcome.detail["draft"]), outcome
