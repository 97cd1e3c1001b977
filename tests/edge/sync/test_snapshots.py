"""Snapshots of the item master and of the suppliers' compliance: an outbox row only when the content changed,
and at the aggregator the store's items and compliance replaced by them."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from cloud_sync.tables import compliance_suppliers
from edge.finance.compliance import freeze_supplier
from edge.sync.snapshots import compliance_state, items_state, snapshots_changed, write_snapshots
from tests.edge.sync.conftest import STORE, Aggregator, Box

pytestmark = pytest.mark.anyio


def _freeze(conn: sqlite3.Connection) -> None:
    freeze_supplier(conn, "sup-1", "营业执照地址不符", "reviewer", datetime(2026, 12, 5, tzinfo=UTC))


async def test_items_and_compliance_state_have_the_contract_shape(box: Box) -> None:
    conn = box.reader()
    try:
        items = items_state(conn)["items"]
        compliance = compliance_state(conn)["suppliers"]
    finally:
        conn.close()
    assert [i["sku"] for i in items] == ["COLA", "RICE"]
    assert set(items[0]) == {
        "sku", "name", "name_en", "category", "category_name", "category_name_en", "storage_class", "base_unit",
        "shelf_life_days",
    }  # fmt: skip
    assert compliance == [
        {
            "id": "sup-1",
            "name": "华润饮料",
            "frozen": False,
            "freeze_reason": None,
            "frozen_at": None,
            "papers": [],
            "next_expiry": None,
        }
    ]


async def test_a_snapshot_row_is_written_only_when_its_state_changed(box: Box) -> None:
    now = "2026-12-05T00:00:00+00:00"
    assert await box.writer.execute(write_snapshots, now) == ["state.items", "state.compliance"]
    assert await box.writer.execute(write_snapshots, now) == []
    conn = box.reader()
    try:
        assert not snapshots_changed(conn)
    finally:
        conn.close()
    await box.writer.execute(_freeze)
    conn = box.reader()
    try:
        assert snapshots_changed(conn)
    finally:
        conn.close()
    assert await box.writer.execute(write_snapshots, now) == ["state.compliance"]


async def test_a_frozen_supplier_reaches_the_aggregator(box: Box, aggregator: Aggregator) -> None:
    await box.writer.execute(_freeze)
    box.set_key(aggregator.key)
    service = box.service(transport=aggregator.transport())
    await service.push_now()
    await service.client.aclose()
    with aggregator.engine.connect() as conn:
        row = conn.execute(sa.select(compliance_suppliers).where(compliance_suppliers.c.store == STORE)).one()
    assert row.supplier == "sup-1" and bool(row.frozen)
    assert "营业执照地址不符" in str(row.freeze_reason)
