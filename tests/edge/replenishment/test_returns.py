"""Customer-return spikes and supplier quality from real sales and returns posted through the ledger."""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from edge.bus.return_alerts import run_return_alerts
from edge.bus.topics import alert_topic
from edge.ledger.commands import DocType, Line, PostDocument
from edge.replenishment.returns import (
    ReturnSpikePolicy,
    detect_return_spikes,
    item_suppliers_of,
    mark_spikes_published,
    spike_alert_data,
    spikes_since,
    supplier_quality,
    unpublished_spikes,
)
from edge.replenishment.signals import signal_effects
from tests.edge.bus.conftest import STORE as BUS_STORE
from tests.edge.bus.conftest import Box as BusBox
from tests.edge.bus.conftest import box  # noqa: F401 - the real broker, writer and ingest of the bus tests
from tests.edge.finance.books_store import context, post_one
from tests.edge.replenishment.test_signals import KEYS, NOW, TODAY, open_store

_keys = itertools.count()


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = open_store(tmp_path / "returns.db")
    try:
        yield c
    finally:
        c.close()


def post(conn: sqlite3.Connection, doc_type: DocType, sku: str, qty: int, on: date, **kw: object) -> int:
    result = post_one(
        conn,
        PostDocument(f"{doc_type}-{next(_keys)}", doc_type, (Line(sku, qty),), **kw),  # type: ignore[arg-type]
        context(conn, business_date=on),
    )
    assert result.ok, result.message_en
    return int(result.document_id)


def stock_and_sell(conn: sqlite3.Connection, sku: str, qty: int, on: date, supplier: str = "sup1") -> int:
    post(conn, DocType.RECEIPT, sku, qty, on, counterparty=supplier)
    return post(conn, DocType.SALE, sku, qty, on)


def returns_of(conn: sqlite3.Connection, sku: str, reason: str, days: list[int], sale: int) -> None:
    for d in days:
        post(conn, DocType.CUSTOMER_RETURN, sku, 1, TODAY - timedelta(days=d), reason=reason, ref_id=sale)


def test_a_rise_of_one_reason_raises_one_spike_per_item_and_supplier(conn: sqlite3.Connection) -> None:
    sale = stock_and_sell(conn, "S1", 40, TODAY - timedelta(days=30))
    returns_of(conn, "S1", "damaged_packaging", [20], sale)  # baseline: one in four weeks
    returns_of(conn, "S1", "damaged_packaging", [0, 1, 3, 5], sale)
    returns_of(conn, "S1", "taste", [2], sale)  # a single one is no spike
    found = detect_return_spikes(conn, TODAY)
    assert {(s.scope, s.subject, s.reason) for s in found} == {
        ("item", "S1", "damaged_packaging"),
        ("supplier", "sup1", "damaged_packaging"),
    }
    item = next(s for s in found if s.scope == "item")
    assert (item.recent_count, item.recent_qty, item.baseline_qty, item.skus) == (4, 4, 1, ("S1",))
    assert item.ratio == pytest.approx((4 / 7) / (1 / 28))
    assert "包装破损" in item.message and "damaged packaging" in item.message_en
    supplier = next(s for s in found if s.scope == "supplier")
    assert supplier.skus == ("S1", "S2")
    assert detect_return_spikes(conn, TODAY) == []  # raised once while it lasts


def test_a_steady_return_rate_is_no_spike(conn: sqlite3.Connection) -> None:
    sale = stock_and_sell(conn, "S1", 60, TODAY - timedelta(days=40))
    returns_of(conn, "S1", "quality", list(range(0, 35, 2)), sale)  # every other day for five weeks
    assert detect_return_spikes(conn, TODAY) == []


def test_a_spike_ends_and_a_later_rise_is_a_new_one(conn: sqlite3.Connection) -> None:
    sale = stock_and_sell(conn, "Y1", 30, TODAY - timedelta(days=60), supplier="sup2")
    returns_of(conn, "Y1", "quality", [30, 31, 32], sale)
    first = detect_return_spikes(conn, TODAY - timedelta(days=29))
    assert [(s.scope, s.subject) for s in first] == [("item", "Y1"), ("supplier", "sup2")]
    assert detect_return_spikes(conn, TODAY - timedelta(days=10)) == []  # over: ended
    ended = conn.execute("SELECT COUNT(*) FROM return_spikes WHERE ended_on IS NOT NULL").fetchone()[0]
    assert ended == 2
    returns_of(conn, "Y1", "quality", [0, 1, 2], sale)
    cursor, spikes = spikes_since(conn, first[-1].id, TODAY)
    assert [s.subject for s in spikes] == ["Y1", "sup2"] and cursor == spikes[-1].id
    assert spikes_since(conn, cursor, TODAY) == (cursor, [])


def test_spikes_change_effective_demand_by_reason(conn: sqlite3.Connection) -> None:
    sale = stock_and_sell(conn, "S1", 40, TODAY - timedelta(days=5))
    returns_of(conn, "S1", "damaged_packaging", [0, 1, 2, 3], sale)
    sale_y = stock_and_sell(conn, "Y1", 40, TODAY - timedelta(days=5), supplier="sup2")
    returns_of(conn, "Y1", "quality", [0, 1, 2], sale_y)
    detect_return_spikes(conn, TODAY)
    effects = signal_effects(conn, KEYS, TODAY, 5)
    # Damaged packaging: returned units come back into stock unsellable -> demand x (1 + 4/40).
    assert effects.demand_factor[0].tolist() == pytest.approx([1.1] * 5)
    assert effects.demand_factor[1].tolist() == pytest.approx([1.1] * 5)  # every location of the item
    assert effects.demand_factor[3].tolist() == pytest.approx([0.8] * 5)  # quality: shoppers turn away
    assert np.all(effects.demand_factor[[2, 4, 5]] == 1.0)
    assert [n.message for n in effects.notes[3]] == ["退货激增: 质量问题 3 次 3 件，需求 ×0.80"]


def test_quality_score_falls_with_weighted_return_rates_and_spikes(conn: sqlite3.Connection) -> None:
    assert supplier_quality(conn, "sup1", TODAY)["score"] == 100.0
    sale = stock_and_sell(conn, "S2", 50, TODAY - timedelta(days=20))
    returns_of(conn, "S2", "quality", [15], sale)
    returns_of(conn, "S2", "late_delivery", [14, 13], sale)
    score = supplier_quality(conn, "sup1", TODAY)
    assert score["sold_qty"] == 50 and score["returned_qty"] == 3
    assert score["score"] == pytest.approx(100 - 100 * (4 * 1 / 50 + 2 * 2 / 50))
    assert [r["reason"] for r in score["by_reason"]] == ["late_delivery", "quality"]
    policy = ReturnSpikePolicy(min_count=2)
    detect_return_spikes(conn, TODAY - timedelta(days=13), policy)
    after = supplier_quality(conn, "sup1", TODAY, policy)
    assert after["score"] == pytest.approx(score["score"] - 2 * 5) and len(after["spikes"]) == 2


def test_an_item_without_a_mapping_belongs_to_the_supplier_it_came_from(conn: sqlite3.Connection) -> None:
    post(conn, DocType.RECEIPT, "A1", 10, TODAY - timedelta(days=3), counterparty="sup2")
    mapping = item_suppliers_of(conn)
    assert mapping["A1"] == "sup2" and mapping["S1"] == "sup1"


def test_alerts_are_published_once(conn: sqlite3.Connection) -> None:
    sale = stock_and_sell(conn, "S1", 20, TODAY - timedelta(days=5))
    returns_of(conn, "S1", "quality", [0, 1, 2], sale)
    detect_return_spikes(conn, TODAY)
    pending = unpublished_spikes(conn)
    assert len(pending) == 2
    data = spike_alert_data(pending[0])
    assert data["kind"] == "return_spike" and data["message"].startswith("退货激增") and data["skus"] == ["S1"]
    mark_spikes_published(conn, [s.id for s in pending], NOW)
    assert unpublished_spikes(conn) == []


def test_a_spike_reaches_a_subscriber_on_alert_returns_once(box: BusBox) -> None:  # noqa: F811 - the bus fixture
    sale = box.loop.run(box.writer.post(PostDocument("sale-1", DocType.SALE, (Line("MILK-1L", 5),))))
    assert sale.ok, sale.message_en
    for i in range(3):
        returned = box.loop.run(
            box.writer.post(
                PostDocument(
                    f"ret-{i}",
                    DocType.CUSTOMER_RETURN,
                    (Line("MILK-1L", 1),),
                    reason="质量问题",
                    ref_id=sale.document_id,
                )
            )
        )
        assert returned.ok, returned.message_en
    listener = box.device("pos-1", subscribe=False)
    assert listener.subscribe(f"storebox/{BUS_STORE}/alert/#") == [1]

    def clock() -> datetime:
        return datetime.now(UTC)

    published = box.loop.run(run_return_alerts(box.settings, box.writer, box.broker, clock))
    assert [(s.scope, s.subject, s.reason) for s in published] == [("item", "MILK-1L", "quality")]
    topic = alert_topic(BUS_STORE, "returns")
    body = json.loads(listener.next_message(topic).payload.decode("utf-8"))
    assert body["id"] == f"returns-{published[0].id}"
    assert body["data"]["kind"] == "return_spike" and "质量问题" in body["data"]["message"]
    assert box.loop.run(run_return_alerts(box.settings, box.writer, box.broker, clock)) == []
    box.loop.run(box.broker.publish(topic, b"marker"))
    assert listener.next_message(topic).payload == b"marker"  # nothing was published twice
