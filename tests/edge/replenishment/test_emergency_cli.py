"""`storebox replenish emergency "TEXT" [--create]` on a real data dir, and the demo's neighbours' stock."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge.cli import app
from edge.db import connect, migrate
from edge.demo.catalog import build_catalog
from edge.finance.setup import prepare_books
from edge.ledger.masterdata import add_item, add_location, add_store, add_supplier
from edge.replenishment.emergency_orders import PeerStockRow, demo_peer_stock, seed_peer_stock

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    conn = connect(tmp_path / "storebox.db")
    migrate(conn)
    conn.execute("BEGIN")
    prepare_books(conn)
    add_store(conn, "store-001", "本店", is_local=True)
    add_store(conn, "store-zhongshan", "中山路店 Zhongshan Road store")
    add_location(conn, "floor", "卖场", "sales floor", "floor", "ambient")
    add_location(conn, "freezer", "冷冻库", "freezer", "freezer", "frozen")
    add_item(conn, "FZ0001", "三全猪肉白菜水饺 1kg", base_unit="袋", storage_class="frozen", shelf_life_days=300)
    add_item(conn, "FZ0004", "思念猪肉白菜水饺 1kg", base_unit="袋", storage_class="frozen", shelf_life_days=300)
    add_supplier(conn, "sup-cold", "北京冰川冷链物流有限公司")
    now = datetime.now(UTC)
    seed_peer_stock(
        conn, [PeerStockRow("store-zhongshan", "FZ0001", 80, "frozen", True, now, eta_minutes=25, distance_km=3.2)]
    )
    conn.execute("COMMIT")
    conn.close()
    return tmp_path


def test_the_command_shows_the_parse_in_chinese_and_english(data_dir: Path) -> None:
    result = runner.invoke(
        app,
        ["replenish", "emergency", "急需 -20℃ 冷冻水饺 50 袋，明早前到，车载调拨"],
        env={"STOREBOX_DATA_DIR": str(data_dir)},
    )
    assert result.exit_code == 0, result.output
    assert "理解为 / understood" in result.output
    assert "FZ0001" in result.output and "FZ0004" in result.output
    assert "商品不明确" in result.output and "several items match" in result.output
    assert "冷冻" in result.output and "frozen" in result.output


def test_create_drafts_the_transfer_once(data_dir: Path) -> None:
    env = {"STOREBOX_DATA_DIR": str(data_dir)}
    args = ["replenish", "emergency", "三全水饺 50袋 明早 车载调拨", "--create"]
    first = runner.invoke(app, args, env=env)
    assert first.exit_code == 0, first.output
    assert "store-zhongshan" in first.output and "transfer request #1" in first.output
    second = runner.invoke(app, args, env=env)
    assert second.exit_code == 0 and "replayed" in second.output
    shown = runner.invoke(app, ["replenish", "emergency", "三全水饺 50袋", "--json"], env=env)
    body = json.loads(shown.output)
    assert body["parse"]["sku"] == "FZ0001" and body["proposal"]["action"] == "transfer"


def test_an_incomplete_create_is_one_clear_line(data_dir: Path) -> None:
    result = runner.invoke(
        app, ["replenish", "emergency", "水饺", "--create"], env={"STOREBOX_DATA_DIR": str(data_dir)}
    )
    assert result.exit_code == 2
    assert "请求不完整" in result.output and "incomplete" in result.output


def test_demo_peer_stock_is_deterministic_and_loads() -> None:
    catalog = build_catalog()
    items = [(i.sku, i.storage_class, i.shelf_life_days) for i in catalog.items]
    stores = [s.id for s in catalog.neighbour_stores]
    now = datetime(2026, 12, 5, 2, tzinfo=UTC)
    rows = demo_peer_stock(items, stores, now)
    assert rows == demo_peer_stock(items, stores, now)
    assert {r.store for r in rows} == set(stores)
    assert any(r.storage_class == "frozen" and r.cold_chain_capable for r in rows)
