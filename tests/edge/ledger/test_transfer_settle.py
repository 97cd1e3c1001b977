"""Transfers between two stores' ledgers: the sender's transit, the receiver's transfer in at the sender's value,
and the sender's settlement (调拨结算), with both books checks passing and company-wide 1402 at zero."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.finance import books
from edge.ledger.commands import DocType, Line, PostDocument, ReverseDocument, SettledPart, SettleTransfer
from edge.ledger.posting import shipped_parts, transfer_share
from edge.ledger.verify import verify_ledger
from edge.sync.transfers import ShippedPart, parse_external_ref, receipt_command, settle_command
from tests.edge.finance.books_store import balance, open_books, post_one, voucher


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[sqlite3.Connection, sqlite3.Connection]]:
    a = open_books(tmp_path / "a.db")
    b = open_books(tmp_path / "b.db")
    yield a, b
    a.close()
    b.close()


def _stock_a(a: sqlite3.Connection) -> None:
    assert post_one(a, PostDocument("rc-1", DocType.RECEIPT, (Line("A1", 7, price_fen=113),), counterparty="sup1")).ok
    assert post_one(a, PostDocument("rc-2", DocType.RECEIPT, (Line("A1", 5, price_fen=120),), counterparty="sup1")).ok
    milk = (
        Line("M1", 4, price_fen=433, lot="L1", expiry=date(2026, 11, 28)),
        Line("M1", 6, price_fen=401, lot="L2", expiry=date(2026, 12, 1)),
    )
    assert post_one(a, PostDocument("rc-3", DocType.RECEIPT, milk, counterparty="sup1")).ok


def _parts(a: sqlite3.Connection, transfer_out_id: int) -> list[ShippedPart]:
    expiries = dict(((r[0], r[1]), r[2]) for r in a.execute("SELECT sku, lot, expiry FROM lots"))
    return [
        ShippedPart(i, sku, lot, qty, value, expiries.get((sku, lot)))
        for i, (sku, lot, qty, value) in enumerate(shipped_parts(a, transfer_out_id), start=1)
    ]


def _ship(a: sqlite3.Connection, a1: int, m1: int) -> tuple[int, str]:
    lines = tuple(line for line in (Line("A1", a1), Line("M1", m1, location="floor")) if line.qty)
    shipped = post_one(a, PostDocument("to-1", DocType.TRANSFER_OUT, lines, counterparty="s2"))
    assert shipped.ok, shipped
    return shipped.document_id or 0, shipped.doc_no or ""


def _gl(conn: sqlite3.Connection, account: str) -> int:
    return balance(conn, account)


def _checks_pass(*conns: sqlite3.Connection) -> None:
    for conn in conns:
        report = books.books_check(conn)
        assert report.ok, report.problems
        assert books.stock_valuation(conn).agrees
        assert verify_ledger(conn)["ok"]


def test_a_short_receipt_is_settled_with_the_shortage_in_1901(stores: tuple[sqlite3.Connection, ...]) -> None:
    a, b = stores
    _stock_a(a)
    out_id, doc_no = _ship(a, 10, 7)
    parts = _parts(a, out_id)
    shipped_value = sum(p.value_fen for p in parts)
    assert _gl(a, "1402") == shipped_value
    # B counts 9 of the cola and all the milk of the first lot, 1 of the second.
    counts = {p.part_no: (p.qty - 1 if p.sku == "A1" else (p.qty if p.lot == "L1" else 1)) for p in parts}
    received = post_one(b, receipt_command(key="ti-1", from_store="s1", doc_no=doc_no, parts=parts, counts=counts))
    assert received.ok, received
    ref = b.execute("SELECT external_ref FROM documents WHERE id = ?", (received.document_id,)).fetchone()[0]
    assert parse_external_ref(ref) == ("s1", doc_no)
    lots_b = {(r[0], r[1]): (r[2], r[3]) for r in b.execute("SELECT sku, lot, qty, value_fen FROM balances")}
    received_value = sum(transfer_share(p.value_fen, p.qty, counts[p.part_no]) for p in parts)
    assert sum(v for _, v in lots_b.values()) == received_value
    assert b.execute("SELECT expiry FROM lots WHERE sku = 'M1' AND lot = 'L1'").fetchone()[0] == "2026-11-28"
    _checks_pass(a, b)  # before settlement: A's goods in transit, B's goods on hand, 1402 nets to what is in transit
    settled_parts = [
        ShippedPart(p.part_no, p.sku, p.lot, p.qty, p.value_fen, p.expiry, counts[p.part_no]) for p in parts
    ]
    settle = post_one(
        a, settle_command(key="ts-1", transfer_out_id=out_id, parts=settled_parts, received_ref=f"b:{received.doc_no}")
    )
    assert settle.ok, settle
    assert voucher(a, settle.document_id) == [
        ("1402", received_value, 0),
        ("1901", shipped_value - received_value, 0),
        ("1402", 0, shipped_value),
    ]
    assert a.execute("SELECT COALESCE(SUM(qty), 0) FROM balances WHERE location = 'transit'").fetchone()[0] == 0
    assert _gl(a, "1402") + _gl(b, "1402") == 0
    assert _gl(a, "1901") == shipped_value - received_value
    _checks_pass(a, b)
    # Settled once only; the transfer out cannot be reversed while settled; the settlement can, and then it can.
    again = post_one(a, SettleTransfer("ts-2", out_id, (SettledPart("A1", "", 9),)))
    assert not again.ok and again.code == "invalid_command"
    assert not post_one(a, ReverseDocument("rv-1", out_id)).ok
    assert post_one(a, ReverseDocument("rv-2", settle.document_id or 0)).ok
    _checks_pass(a)
    assert _gl(a, "1402") == shipped_value
    # Receiving the same transfer twice is refused.
    twice = post_one(b, receipt_command(key="ti-2", from_store="s1", doc_no=doc_no, parts=parts, counts=counts))
    assert not twice.ok and twice.detail.get("field") == "external_ref"


def test_settlement_is_not_a_postable_document_type() -> None:
    from edge.ledger.commands import POSTABLE_TYPES
    from edge.security.roles import ALL_WRITES

    assert DocType.TRANSFER_SETTLE not in POSTABLE_TYPES
    assert not any("transfer_settle" in p for p in ALL_WRITES)


def test_an_outbox_payload_carries_external_ref_and_lot_expiries(stores: tuple[sqlite3.Connection, ...]) -> None:
    import json

    a, b = stores
    _stock_a(a)
    out_id, doc_no = _ship(a, 2, 5)
    payload = json.loads(a.execute("SELECT payload FROM outbox WHERE document_id = ?", (out_id,)).fetchone()[0])
    assert payload["document"]["external_ref"] is None
    assert all("expiry" in line for line in payload["lines"])
    assert ["M1", "L1", "2026-11-28"] in payload["lot_expiry"] and ["M1", "L2", "2026-12-01"] in payload["lot_expiry"]
    parts = _parts(a, out_id)
    got = post_one(b, receipt_command(key="ti", from_store="s1", doc_no=doc_no, parts=parts, counts={1: 2}))
    payload = json.loads(
        b.execute("SELECT payload FROM outbox WHERE document_id = ?", (got.document_id,)).fetchone()[0]
    )
    assert payload["document"]["external_ref"] == f"transfer:s1:{doc_no}"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    a1=st.integers(0, 12),
    m1=st.integers(0, 10),
    deltas=st.lists(st.integers(-12, 3), min_size=3, max_size=3),
)
def test_value_is_conserved_to_the_fen_across_ship_receive_and_settle(
    tmp_path_factory: pytest.TempPathFactory, a1: int, m1: int, deltas: list[int]
) -> None:
    if a1 + m1 == 0:
        return
    folder = tmp_path_factory.mktemp("pair")
    a, b = open_books(folder / "a.db"), open_books(folder / "b.db")
    try:
        _stock_a(a)
        before = _gl(a, "1405") + _gl(a, "1402")
        out_id, doc_no = _ship(a, a1, m1)
        parts = _parts(a, out_id)
        counts = {p.part_no: max(0, p.qty + deltas[(p.part_no - 1) % 3]) for p in parts}
        received_value = 0
        if any(counts.values()):
            got = post_one(b, receipt_command(key="ti", from_store="s1", doc_no=doc_no, parts=parts, counts=counts))
            assert got.ok, got
            received_value = _gl(b, "1405")
        settled = [ShippedPart(p.part_no, p.sku, p.lot, p.qty, p.value_fen, p.expiry, counts[p.part_no]) for p in parts]
        assert post_one(a, settle_command(key="ts", transfer_out_id=out_id, parts=settled, received_ref=None)).ok
        shipped = sum(p.value_fen for p in parts)
        # Nothing lost or made: what A had = what A keeps + what B holds + the difference pending in A's 1901.
        assert before == _gl(a, "1405") + _gl(a, "1402") + _gl(b, "1405") + _gl(b, "1402") + shipped - received_value
        assert _gl(a, "1901") == shipped - received_value
        assert _gl(a, "1402") + _gl(b, "1402") == 0
        _checks_pass(a, b)
    finally:
        a.close()
        b.close()
