"""Choosing the source of an emergency request and creating it (edge/replenishment/emergency_orders.py), on a real
SQLite file: neighbours that have enough, keep the cold chain, are fresh and arrive in time, nearest first; the best
partial; else an urgent PO through the ledger with its finance guard; once per key."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge.db import connect, migrate
from edge.finance.compliance import make_purchase_order_guard
from edge.finance.rulebook import rule_book
from edge.finance.setup import prepare_books
from edge.ledger.commands import DocType, Line, PostDocument
from edge.ledger.masterdata import add_item, add_location, add_store, add_supplier
from edge.ledger.posting import PostingContext, post
from edge.replenishment.emergency import EmergencyParse, parse_request, with_overrides
from edge.replenishment.emergency_orders import (
    EmergencyPolicy,
    PeerStockRow,
    cancel_transfer_request,
    create_emergency,
    load_peer_stock,
    plan_emergency,
    seed_peer_stock,
    supplier_of,
)
from edge.replenishment.errors import (
    EmergencyIncomplete,
    EmergencyKeyReused,
    EmergencyNoSource,
    EmergencyOrderRefused,
    PeerStockInvalid,
)
from edge.replenishment.item_index import ItemIndex

NOW = datetime(2026, 12, 5, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
POLICY = EmergencyPolicy(local_store="store-001")


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    db = connect(tmp_path / "box.db")
    migrate(db)
    db.execute("BEGIN")
    prepare_books(db)
    add_store(db, "store-001", "本店", is_local=True)
    for sid, name in (("store-a", "中山路店"), ("store-b", "解放路店"), ("store-c", "人民路店")):
        add_store(db, sid, name)
    add_location(db, "floor", "卖场", "sales floor", "floor", "ambient")
    add_location(db, "freezer", "冷冻库", "freezer", "freezer", "frozen")
    add_item(db, "DUMP", "三全猪肉白菜水饺 1kg", base_unit="袋", storage_class="frozen", shelf_life_days=300,
             lot_tracked=True, cost_fen=1500, price_fen=2290, units={"箱": 10})  # fmt: skip
    add_item(db, "MILK", "光明鲜牛奶 950ml", base_unit="盒", storage_class="chilled", shelf_life_days=7, cost_fen=900,
             price_fen=1290)  # fmt: skip
    add_item(db, "COLA", "可口可乐 330ml 听装", base_unit="听", cost_fen=200, price_fen=300, units={"箱": 24})
    add_supplier(db, "sup-cold", "北京冰川冷链物流有限公司")
    db.execute("COMMIT")
    yield db
    _INDEXES.pop(id(db), None)
    db.close()


def row(store: str, sku: str, qty: int, **kw: Any) -> PeerStockRow:
    defaults: dict[str, Any] = {"storage_class": "frozen", "cold_chain_capable": True, "updated_at": NOW}
    return PeerStockRow(store=store, sku=sku, qty=qty, **(defaults | kw))


def seed(conn: sqlite3.Connection, *rows: PeerStockRow) -> None:
    conn.execute("BEGIN")
    seed_peer_stock(conn, rows)
    conn.execute("COMMIT")


_INDEXES: dict[int, ItemIndex] = {}


def parse(conn: sqlite3.Connection, text: str, **overrides: Any) -> EmergencyParse:
    index = _INDEXES.get(id(conn))
    if index is None:  # one per database (a jieba load each)
        index = _INDEXES[id(conn)] = ItemIndex.from_db(conn)
    result = parse_request(text, index, date(2026, 12, 5), NOW)
    return with_overrides(result, index, overrides) if overrides else result


def ctx() -> PostingContext:
    return PostingContext(
        now=NOW, business_date=date(2026, 12, 5), rules=rule_book(), guards=(make_purchase_order_guard(50_000_00),)
    )


def test_the_nearest_store_with_enough_wins(conn: sqlite3.Connection) -> None:
    seed(
        conn,
        row("store-a", "DUMP", 30, eta_minutes=10),  # near but too few
        row("store-b", "DUMP", 200, eta_minutes=60),
        row("store-c", "DUMP", 500, eta_minutes=45),
    )
    plan = plan_emergency(conn, parse(conn, "三全水饺 5箱 -18度 车载调拨 明早"), policy=POLICY, now=NOW)
    assert (plan.action, plan.source_store, plan.qty, plan.unit, plan.qty_base) == ("transfer", "store-c", 5, "箱", 50)
    assert plan.cold_chain == "frozen" and plan.vehicle and plan.shortfall_base == 0
    assert [o.store for o in plan.options] == ["store-c", "store-b", "store-a"]


def test_when_none_has_enough_the_biggest_partial_is_proposed(conn: sqlite3.Connection) -> None:
    seed(conn, row("store-a", "DUMP", 30, eta_minutes=10), row("store-b", "DUMP", 42, eta_minutes=90))
    plan = plan_emergency(conn, parse(conn, "三全水饺 5箱"), policy=POLICY, now=NOW)
    assert (plan.source_store, plan.qty_base, plan.shortfall_base) == ("store-b", 42, 8)
    assert (plan.qty, plan.unit) == (42, "袋")  # 42 bags is no whole number of cases
    assert "还差 8" in plan.message


@pytest.mark.parametrize(
    ("kw", "reason_en"),
    [
        ({"cold_chain_capable": False}, "cannot ship frozen"),
        ({"storage_class": "chilled"}, "held chilled, needs frozen"),
        ({"min_shelf_life_days": 20}, "20 days of shelf life left, 75 needed"),
        ({"updated_at": NOW - timedelta(hours=49)}, "stock report too old"),
        ({"eta_minutes": 24 * 60}, "after the deadline"),
    ],
)
def test_a_neighbour_that_cannot_keep_the_chain_or_is_stale_or_late_is_passed_over(
    conn: sqlite3.Connection, kw: dict[str, Any], reason_en: str
) -> None:
    seed(conn, row("store-a", "DUMP", 500, **kw))
    conn.execute("BEGIN")
    conn.execute(
        "INSERT INTO item_suppliers (sku, supplier, unit, pack, updated_at, updated_by)"
        " VALUES ('DUMP', 'sup-cold', '箱', 10, ?, 'test')",
        (NOW.isoformat(),),
    )
    conn.execute("COMMIT")
    plan = plan_emergency(conn, parse(conn, "三全水饺 5箱 明早"), policy=POLICY, now=NOW)
    assert plan.action == "purchase" and plan.supplier == "sup-cold"
    assert not plan.options[0].eligible
    assert any(reason_en in r[1] for r in plan.options[0].reasons), plan.options[0].reasons


def test_a_named_source_store_is_the_only_one_considered(conn: sqlite3.Connection) -> None:
    seed(conn, row("store-a", "DUMP", 500, eta_minutes=5), row("store-b", "DUMP", 500, eta_minutes=50))
    plan = plan_emergency(conn, parse(conn, "从解放路店调 三全水饺 5箱"), policy=POLICY, now=NOW)
    assert plan.source_store == "store-b"


def test_purchase_said_skips_the_neighbours(conn: sqlite3.Connection) -> None:
    seed(conn, row("store-a", "DUMP", 500))
    conn.execute("BEGIN")
    conn.execute(
        "INSERT INTO item_suppliers (sku, supplier, unit, pack, updated_at, updated_by)"
        " VALUES ('DUMP', 'sup-cold', '箱', 10, ?, 'test')",
        (NOW.isoformat(),),
    )
    conn.execute("COMMIT")
    plan = plan_emergency(conn, parse(conn, "三全水饺 5箱 紧急采购"), policy=POLICY, now=NOW)
    assert (plan.action, plan.supplier) == ("purchase", "sup-cold")


def test_without_supplier_table_rows_the_last_receipt_names_the_supplier_and_none_is_a_clear_refusal(
    conn: sqlite3.Connection,
) -> None:
    cola = parse(conn, "可口可乐 2箱")
    assert plan_emergency(conn, cola, policy=POLICY, now=NOW).action == "none"
    conn.execute("BEGIN")
    with pytest.raises(EmergencyNoSource):
        create_emergency(conn, ctx(), cola, "k-none", "tester", POLICY)
    conn.execute("ROLLBACK")
    conn.execute("BEGIN")
    receipt = PostDocument(
        key="r-1", type=DocType.RECEIPT, lines=(Line(code="COLA", qty=24, price_fen=200),), counterparty="sup-cold"
    )
    assert post(conn, receipt, ctx()).ok
    conn.execute("COMMIT")
    assert supplier_of(conn, "COLA") == "sup-cold"
    plan = plan_emergency(conn, cola, policy=POLICY, now=NOW)
    assert (plan.action, plan.supplier, plan.qty, plan.unit) == ("purchase", "sup-cold", 2, "箱")


def test_urgent_po_is_posted_through_the_ledger_once_per_key(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN")
    conn.execute(
        "INSERT INTO item_suppliers (sku, supplier, unit, pack, updated_at, updated_by)"
        " VALUES ('COLA', 'sup-cold', '箱', 24, ?, 'test')",
        (NOW.isoformat(),),
    )
    conn.execute("COMMIT")
    request = parse(conn, "可口可乐 2箱 明天中午前 采购")
    conn.execute("BEGIN")
    first = create_emergency(conn, ctx(), request, "k-po", "tester", POLICY)
    conn.execute("COMMIT")
    document = conn.execute("SELECT * FROM documents WHERE id = ?", (first["document_id"],)).fetchone()
    assert document["type"] == "purchase_order" and document["counterparty"] == "sup-cold"
    assert "紧急采购" in document["note"] and "2026-12-06 12:00" in document["note"]
    line = conn.execute("SELECT unit, qty, qty_base FROM document_lines WHERE document_id = ?", (document["id"],))
    assert tuple(line.fetchone()) == ("箱", 2, 48)
    conn.execute("BEGIN")
    again = create_emergency(conn, ctx(), request, "k-po", "tester", POLICY)
    with pytest.raises(EmergencyKeyReused):
        create_emergency(conn, ctx(), parse(conn, "可口可乐 3箱 采购"), "k-po", "tester", POLICY)
    conn.execute("COMMIT")
    assert again["replayed"] and again["id"] == first["id"]
    assert conn.execute("SELECT COUNT(*) FROM documents WHERE type = 'purchase_order'").fetchone()[0] == 1


def test_a_frozen_supplier_refuses_the_urgent_po(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN")
    conn.execute(
        "INSERT INTO item_suppliers (sku, supplier, unit, pack, updated_at, updated_by)"
        " VALUES ('COLA', 'sup-cold', '箱', 24, ?, 'test')",
        (NOW.isoformat(),),
    )
    from edge.finance.compliance import freeze_supplier

    freeze_supplier(conn, "sup-cold", "资质过期", "manager", NOW)
    conn.execute("COMMIT")
    conn.execute("BEGIN")
    with pytest.raises(EmergencyOrderRefused) as caught:
        create_emergency(conn, ctx(), parse(conn, "可口可乐 2箱 采购"), "k-frozen", "tester", POLICY)
    conn.execute("ROLLBACK")
    assert caught.value.detail["refusal"]
    assert conn.execute("SELECT COUNT(*) FROM emergency_requests").fetchone()[0] == 0


def test_incomplete_parse_is_refused_before_anything(conn: sqlite3.Connection) -> None:
    with pytest.raises(EmergencyIncomplete) as caught:
        plan_emergency(conn, parse(conn, "水饺 明天"), policy=POLICY, now=NOW)
    assert "数量" in caught.value.message


def test_transfer_request_is_drafted_and_cancelled(conn: sqlite3.Connection) -> None:
    seed(conn, row("store-a", "DUMP", 100))
    conn.execute("BEGIN")
    made = create_emergency(conn, ctx(), parse(conn, "三全水饺 3箱 车载 送到冷冻库"), "k-t", "clerk", POLICY)
    conn.execute("COMMIT")
    transfer = conn.execute("SELECT * FROM transfer_requests WHERE id = ?", (made["transfer_id"],)).fetchone()
    assert (transfer["from_store"], transfer["to_store"], transfer["qty"], transfer["unit"]) == (
        "store-a", "store-001", 3, "箱"
    )  # fmt: skip
    assert (transfer["cold_chain"], transfer["vehicle"], transfer["to_location"], transfer["state"]) == (
        "frozen", 1, "freezer", "draft"
    )  # fmt: skip
    conn.execute("BEGIN")
    cancelled = cancel_transfer_request(conn, made["transfer_id"], "不需要了", "clerk", NOW)
    conn.execute("COMMIT")
    assert cancelled["state"] == "cancelled" and cancelled["cancel_reason"] == "不需要了"


def test_peer_stock_report_is_checked_whole(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN")
    with pytest.raises(PeerStockInvalid) as caught:
        load_peer_stock(
            conn, "store-a", [{"sku": "DUMP", "qty": -1}, {"sku": "X", "qty": 1}, {"sku": "COLA", "qty": True}], NOW
        )
    assert [p["row"] for p in caught.value.detail["problems"]] == [0, 1, 2]
    with pytest.raises(PeerStockInvalid):
        load_peer_stock(conn, "store-001", [], NOW)
    with pytest.raises(PeerStockInvalid):
        load_peer_stock(conn, "nowhere", [], NOW)
    done = load_peer_stock(conn, "store-a", [{"sku": "DUMP", "qty": 5}, {"sku": "COLA", "qty": 0}], NOW)
    conn.execute("COMMIT")
    assert done["rows"] == 2
    stored = conn.execute("SELECT sku, storage_class FROM peer_stock ORDER BY sku").fetchall()
    assert [tuple(r) for r in stored] == [("COLA", "ambient"), ("DUMP", "frozen")]  # the item's class by default


def test_an_unknown_source_store_or_destination_is_refused(conn: sqlite3.Connection) -> None:
    with pytest.raises(EmergencyIncomplete):
        plan_emergency(conn, parse(conn, "三全水饺 5袋", source_store="store-001"), policy=POLICY, now=NOW)
    with pytest.raises(EmergencyIncomplete):
        plan_emergency(conn, parse(conn, "三全水饺 5袋", destination="roof"), policy=POLICY, now=NOW)
