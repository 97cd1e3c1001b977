"""Lead times learned from real purchase orders and receipts posted through the ledger at chosen business dates."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.ledger.commands import DocType, Line, PostDocument, ReverseDocument
from edge.replenishment.leadtime import LeadTimePolicy, import_lead_times, shrink, supplier_lead_times
from edge.replenishment.signal_formats import LeadTimeIn
from tests.edge.finance.books_store import context, post_one
from tests.edge.replenishment.test_signals import NOW, TODAY, open_store

_keys = itertools.count()


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = open_store(tmp_path / "lead.db")
    try:
        yield c
    finally:
        c.close()


def order(conn: sqlite3.Connection, supplier: str, on: date, sku: str = "A1", qty: int = 100) -> int:
    result = post_one(
        conn,
        PostDocument(f"po-{next(_keys)}", DocType.PURCHASE_ORDER, (Line(sku, qty),), counterparty=supplier),
        context(conn, business_date=on),
    )
    assert result.ok, result.message_en
    return int(result.document_id)


def receive(conn: sqlite3.Connection, po: int, supplier: str, on: date, qty: int, sku: str = "A1") -> int:
    result = post_one(
        conn,
        PostDocument(
            f"rc-{next(_keys)}", DocType.RECEIPT, (Line(sku, qty, price_fen=200),), counterparty=supplier, ref_id=po
        ),
        context(conn, business_date=on),
    )
    assert result.ok, result.message_en
    return int(result.document_id)


POLICY = LeadTimePolicy(prior_weight=5, default_days=3, default_std_days=1)


def test_lead_time_is_the_mean_days_from_po_to_receipt_shrunk_towards_the_default(conn: sqlite3.Connection) -> None:
    for i, days in enumerate([4, 6, 5, 5, 6, 4, 5, 5, 5, 5]):
        start = TODAY - timedelta(days=40 + i)
        receive(conn, order(conn, "sup1", start), "sup1", start + timedelta(days=days), 100)
    learned = supplier_lead_times(conn, TODAY, POLICY, defaults={})
    sup1 = learned["sup1"]
    assert sup1.n == 10
    assert sup1.mean == pytest.approx((10 * 5 + 5 * 3) / 15, abs=1e-3)
    assert sup1.std == pytest.approx(((10 * 0.4 + 5 * 1) / 15) ** 0.5, abs=1e-3)


def test_partial_receipts_are_quantity_weighted(conn: sqlite3.Connection) -> None:
    start = TODAY - timedelta(days=30)
    po = order(conn, "sup2", start)
    receive(conn, po, "sup2", start + timedelta(days=2), 80)
    receive(conn, po, "sup2", start + timedelta(days=5), 20)
    learned = supplier_lead_times(conn, TODAY, LeadTimePolicy(prior_weight=0), defaults={})
    assert (learned["sup2"].mean, learned["sup2"].n) == (pytest.approx(2.6), 1)


def test_reversed_receipts_and_old_orders_do_not_count(conn: sqlite3.Connection) -> None:
    old = TODAY - timedelta(days=400)
    receive(conn, order(conn, "sup1", old), "sup1", old + timedelta(days=30), 10)
    start = TODAY - timedelta(days=10)
    po = order(conn, "sup1", start)
    wrong = receive(conn, po, "sup1", start + timedelta(days=9), 10)
    reversal = post_one(conn, ReverseDocument("rev-1", wrong), context(conn, business_date=start + timedelta(days=9)))
    assert reversal.ok, reversal.message_en
    receive(conn, po, "sup1", start + timedelta(days=1), 10)
    learned = supplier_lead_times(conn, TODAY, LeadTimePolicy(prior_weight=0), defaults={})
    assert (learned["sup1"].mean, learned["sup1"].n) == (1.0, 1)


def test_imported_history_counts_with_the_ledger_and_defaults_come_from_item_suppliers(
    conn: sqlite3.Connection,
) -> None:
    rows = [
        LeadTimeIn(
            supplier="sup2",
            po_ref=f"H{i}",
            ordered_on=TODAY - timedelta(days=100 + i),
            received_on=TODAY - timedelta(days=96 + i),
        )
        for i in range(5)
    ]
    conn.execute("BEGIN")
    result = import_lead_times(conn, rows, "file:x", "t", NOW, TODAY)
    again = import_lead_times(conn, rows, "file:x", "t", NOW, TODAY)
    other = import_lead_times(conn, rows[:2], "file:y", "t", NOW, TODAY)
    conn.execute("COMMIT")
    assert (result["accepted"], again["replayed"], other["duplicates"]) == (5, True, 2)
    learned = supplier_lead_times(conn, TODAY, POLICY)  # item_suppliers: sup2 items at 2 days
    assert learned["sup2"].n == 5 and learned["sup2"].mean == pytest.approx((5 * 4 + 5 * 2) / 10)
    assert learned["sup1"].n == 0 and learned["sup1"].mean == pytest.approx(2)


@settings(max_examples=200, deadline=None)
@given(
    observations=st.lists(st.floats(0, 60, allow_nan=False), max_size=40),
    default=st.floats(0, 30, allow_nan=False),
    weight=st.floats(0, 20, allow_nan=False),
)
def test_shrinkage_lies_between_the_default_and_the_sample_mean(
    observations: list[float], default: float, weight: float
) -> None:
    policy = LeadTimePolicy(prior_weight=weight)
    estimate = shrink(observations, default, policy)
    assert estimate.n == len(observations) and estimate.std >= 0
    if not observations:
        assert estimate.mean == default
        return
    mean = sum(observations) / len(observations)
    assert min(mean, default) - 1e-3 <= estimate.mean <= max(mean, default) + 1e-3
