"""The demo store: seeded once through the ledger, consistent, and kept on a second start."""

from __future__ import annotations

import json
import sqlite3
import stat
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.cn import uscc

from edge.config import Settings
from edge.db import connect, migrate
from edge.demo.catalog import DEFAULT_SEED, build_catalog, check_catalog, opening_stock
from edge.demo.demo_json import TOP_LEVEL_KEYS, read_demo_json, refresh_demo_json
from edge.demo.seed import DemoSeedError, demo_needed, plu_barcodes, seed_demo
from edge.finance.rulebook import rule_book
from edge.ledger.masterdata import is_valid_ean13, resolve_item
from edge.ledger.posting import PostingContext
from edge.ledger.verify import verify_ledger
from edge.security.devices import verify_device
from edge.security.errors import WeakPassword
from edge.security.roles import Role
from edge.security.users import authenticate_user

NOW = datetime(2025, 3, 1, 2, 30, tzinfo=UTC)
TODAY = date(2025, 3, 1)
TABLES = ("items", "barcodes", "lots", "documents", "stock_moves", "vouchers", "outbox", "audit", "users", "devices")


def _context() -> PostingContext:
    return PostingContext(now=NOW, business_date=TODAY, rules=rule_book())


def _box(data_dir: Path, **overrides: object) -> tuple[Settings, sqlite3.Connection]:
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=data_dir, **overrides)
    conn = connect(settings.db_path)
    migrate(conn)
    return settings, conn


def _counts(conn: sqlite3.Connection) -> dict[str, int]:
    return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, sqlite3.Connection, Path]:
    settings, conn = _box(tmp_path_factory.mktemp("demo"))
    assert demo_needed(conn)
    seed_demo(conn, settings, _context())
    return settings, conn, settings.data_dir / "demo.json"


def test_seeding_creates_at_least_200_items_with_unique_valid_chinese_ean13_barcodes(seeded) -> None:
    _, conn, _ = seeded
    assert conn.execute("SELECT COUNT(*) FROM items").fetchone()[0] >= 200
    # Weighed items also carry the item code of their scale labels (flag 2 + PLU, docs/barcodes.md).
    plus = {code for item in build_catalog(DEFAULT_SEED).items for code in plu_barcodes(item.plu)}
    codes = [r[0] for r in conn.execute("SELECT code FROM barcodes")]
    assert codes and all(is_valid_ean13(c) and "690" <= c[:3] <= "699" for c in codes if c not in plus)
    assert plus and plus <= set(codes)
    assert len(codes) == len(set(codes))
    without = conn.execute(
        "SELECT COUNT(*) FROM items i WHERE NOT EXISTS (SELECT 1 FROM barcodes b WHERE b.sku = i.sku)"
    )
    assert without.fetchone()[0] == 0


def test_some_items_have_several_barcodes_and_a_case_barcode_that_scans_as_a_case(seeded) -> None:
    _, conn, _ = seeded
    several = conn.execute("SELECT COUNT(*) FROM (SELECT sku FROM barcodes GROUP BY sku HAVING COUNT(*) > 1)")
    assert several.fetchone()[0] >= 20
    cases = conn.execute(
        "SELECT b.code, u.sku, u.factor FROM barcodes b JOIN item_units u ON u.sku = b.sku AND u.unit = b.unit"
        " WHERE u.unit = '箱' AND u.factor > 1"
    ).fetchall()
    assert len(cases) >= 20
    code, sku, factor = cases[0]
    ref = resolve_item(conn, code)
    assert (ref.sku, ref.unit, ref.factor) == (sku, "箱", factor)
    assert any(f == 24 for _, _, f in cases)


def test_chilled_and_frozen_categories_have_lot_tracked_items_with_shelf_lives(seeded) -> None:
    _, conn, _ = seeded
    rows = conn.execute(
        "SELECT c.code, c.storage_class, MIN(i.shelf_life_days), MAX(i.shelf_life_days), MIN(i.lot_tracked)"
        " FROM items i JOIN categories c ON c.code = i.category GROUP BY c.code"
    ).fetchall()
    by_code = {r[0]: tuple(r[1:]) for r in rows}
    assert by_code["dairy"][0] == "chilled" and by_code["dairy"][1] >= 7 and by_code["dairy"][2] <= 21
    assert by_code["frozen"][0] == "frozen" and by_code["frozen"][1] >= 180 and by_code["frozen"][2] <= 365
    assert by_code["fresh"][0] == "chilled" and by_code["fresh"][2] <= 21
    assert all(by_code[c][3] == 1 for c in ("dairy", "frozen", "fresh"))
    names = {r[0] for r in conn.execute("SELECT name FROM categories")}
    assert {"饮料", "零食", "粮油", "日化", "乳制品", "冷冻食品", "生鲜", "酒类", "调味品"} <= names


def test_grain_and_fresh_produce_carry_9_percent_vat_vegetables_and_eggs_none_and_most_goods_13(seeded) -> None:
    _, conn, _ = seeded
    rates = dict(conn.execute("SELECT vat_rate_bp, COUNT(*) FROM items GROUP BY vat_rate_bp").fetchall())
    assert set(rates) == {0, 900, 1300} and rates[1300] > rates[900] > rates[0] == 7
    exempt = [r[0] for r in conn.execute("SELECT name FROM items WHERE vat_rate_bp = 0")]
    assert any("鸡蛋" in name for name in exempt) and any("西红柿" in name for name in exempt)
    rice = conn.execute("SELECT vat_rate_bp FROM items WHERE name LIKE '%大米%'").fetchall()
    assert rice and all(r[0] == 900 for r in rice)
    assert conn.execute("SELECT COUNT(*) FROM items WHERE cost_fen >= price_fen OR cost_fen <= 0").fetchone()[0] == 0


def test_five_locations_with_transit_as_the_in_transit_location(seeded) -> None:
    _, conn, _ = seeded
    rows = {r[0]: (r[1], r[2]) for r in conn.execute("SELECT code, kind, storage_class FROM locations")}
    assert rows == {
        "floor": ("floor", "ambient"),
        "backroom": ("backroom", "ambient"),
        "cold": ("cold", "chilled"),
        "freezer": ("freezer", "frozen"),
        "transit": ("transit", "ambient"),
    }


def test_opening_stock_sits_where_its_storage_class_belongs_in_lots_that_expire_later(seeded) -> None:
    _, conn, _ = seeded
    placed = conn.execute(
        "SELECT DISTINCT i.storage_class, b.location FROM balances b JOIN items i ON i.sku = b.sku"
    ).fetchall()
    assert set(map(tuple, placed)) == {
        ("ambient", "floor"),
        ("ambient", "backroom"),
        ("chilled", "cold"),
        ("frozen", "freezer"),
    }
    lots = conn.execute(
        "SELECT b.sku, b.lot, l.expiry FROM balances b JOIN items i ON i.sku = b.sku"
        " LEFT JOIN lots l ON l.sku = b.sku AND l.lot = b.lot WHERE i.lot_tracked = 1"
    ).fetchall()
    assert len(lots) >= 50
    assert all(lot and expiry and expiry > TODAY.isoformat() for _, lot, expiry in lots)
    assert conn.execute("SELECT MIN(qty) FROM balances").fetchone()[0] >= 40


def test_ledger_verifies_clean_after_seeding_with_a_voucher_outbox_row_and_audit_row_per_receipt(seeded) -> None:
    _, conn, _ = seeded
    report = verify_ledger(conn)
    assert report["ok"], report
    docs = conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
    kinds = dict(conn.execute("SELECT type, COUNT(*) FROM documents GROUP BY type").fetchall())
    # Opening stock as receipts, then the finance demo: 2 POs with a receipt each, 1 matched invoice, 1 write-off.
    assert kinds.pop("receipt") >= 5 + 2
    assert kinds == {"purchase_order": 2, "purchase_invoice": 1, "write_off": 1}
    purchase_orders_have_no_voucher = kinds["purchase_order"]
    assert _counts(conn)["vouchers"] == docs - purchase_orders_have_no_voucher
    assert _counts(conn)["outbox"] == docs


def test_the_demo_books_hold_papers_an_alert_due_an_open_exception_and_a_loss_to_approve(seeded) -> None:
    from edge.finance import compliance
    from edge.finance.books import books_check
    from edge.finance.entries import pending_losses

    _, conn, _ = seeded
    assert books_check(conn).ok
    payable = {s: compliance.qualification_status(conn, s, TODAY).payable for s in ("sup-bev", "sup-daily")}
    assert payable == {"sup-bev": True, "sup-daily": False}
    states = dict(conn.execute("SELECT status, COUNT(*) FROM invoices GROUP BY status").fetchall())
    assert states == {"matched": 1, "exception": 1}
    assert [row["reason"] for row in pending_losses(conn)] == ["theft"]
    papers = conn.execute("SELECT COUNT(*) FROM supplier_papers WHERE state = 'confirmed'").fetchone()[0]
    assert papers == 16


def test_five_suppliers_with_valid_credit_codes_and_two_neighbour_stores(seeded) -> None:
    settings, conn, _ = seeded
    codes = [r[0] for r in conn.execute("SELECT credit_code FROM suppliers")]
    assert len(codes) == 5 and all(uscc.is_valid(c) for c in codes)
    stores = conn.execute("SELECT id, is_local FROM stores ORDER BY is_local DESC").fetchall()
    assert tuple(stores[0]) == (settings.store_id, 1)
    assert sum(1 for s in stores if not s[1]) == 2


def test_demo_json_has_exactly_the_documented_keys_and_is_private(seeded) -> None:
    settings, _, path = seeded
    data = json.loads(path.read_text(encoding="utf-8"))
    assert tuple(data) == TOP_LEVEL_KEYS
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert data["store_id"] == settings.store_id
    assert data["http_url"] == settings.http_url
    assert data["mqtt"] == {"host": settings.mqtt_host, "port": settings.mqtt_port}
    assert set(data["users"]) == {r.value for r in Role}
    assert all(set(u) == {"username", "password"} for u in data["users"].values())
    assert all(set(d) == {"id", "kind", "username", "password"} for d in data["devices"])
    assert all(set(i) == {"sku", "barcode", "name", "unit"} for i in data["items"])
    assert {d["id"]: d["kind"] for d in data["devices"]} == {
        "pos-1": "pos",
        "pda-1": "handheld",
        "cold-1": "sensor",
        "scale-1": "scale",
        "scanner-1": "scanner",
    }


def test_demo_json_passwords_log_in_users_of_every_role_and_devices(seeded) -> None:
    _, conn, path = seeded
    info = read_demo_json(path)
    for role in Role:
        login = info.user(role.value)
        user = authenticate_user(conn, login.username, login.password)
        assert user is not None and user.role is role
        assert authenticate_user(conn, login.username, login.password + "x") is None
    for device in info.devices:
        assert device.username == device.id
        assert verify_device(conn, device.username, device.password) == device.id


def test_demo_json_items_sell_from_the_sales_floor(seeded) -> None:
    _, conn, path = seeded
    info = read_demo_json(path)
    assert len(info.items) >= 20
    for item in info.items:
        ref = resolve_item(conn, item.barcode)
        assert (ref.sku, ref.unit, ref.base_unit) == (item.sku, item.unit, item.unit)
        on_floor = conn.execute(
            "SELECT SUM(qty) FROM balances WHERE sku = ? AND location = 'floor'", (item.sku,)
        ).fetchone()[0]
        assert on_floor >= 1000, item


def test_a_second_start_keeps_all_data_and_passwords_and_refreshes_addresses(tmp_path: Path) -> None:
    settings, conn = _box(tmp_path / "data")
    seed_demo(conn, settings, _context())
    before_counts = _counts(conn)
    before = read_demo_json(settings.data_dir / "demo.json")

    assert not demo_needed(conn)
    with pytest.raises(DemoSeedError):
        seed_demo(conn, settings, _context())
    assert _counts(conn) == before_counts
    assert not refresh_demo_json(settings.data_dir / "demo.json", settings)
    assert read_demo_json(settings.data_dir / "demo.json") == before

    moved = Settings(data_dir=settings.data_dir, http_port=18080, mqtt_port=11883)
    assert refresh_demo_json(moved.data_dir / "demo.json", moved)
    after = read_demo_json(moved.data_dir / "demo.json")
    assert (after.http_url, after.mqtt_port) == ("http://127.0.0.1:18080", 11883)
    assert (after.users, after.devices, after.items) == (before.users, before.devices, before.items)
    assert stat.S_IMODE((moved.data_dir / "demo.json").stat().st_mode) == 0o600
    login = after.user("manager")
    assert authenticate_user(conn, login.username, login.password) is not None


def test_a_failed_seeding_writes_nothing(tmp_path: Path) -> None:
    settings, conn = _box(tmp_path / "data")
    with pytest.raises(WeakPassword):
        seed_demo(conn, settings, _context(), password=lambda: "short")
    assert demo_needed(conn)
    assert _counts(conn) == dict.fromkeys(TABLES, 0)
    assert not (settings.data_dir / "demo.json").exists()
    assert not conn.in_transaction


def test_a_local_store_id_that_clashes_with_a_neighbour_is_kept_as_the_local_store(tmp_path: Path) -> None:
    settings, conn = _box(tmp_path / "data", store_id="store-zhongshan")
    seed_demo(conn, settings, _context())
    stores = dict(conn.execute("SELECT id, is_local FROM stores").fetchall())
    assert stores["store-zhongshan"] == 1 and len(stores) == 3


def test_catalog_is_deterministic_for_a_seed() -> None:
    assert build_catalog(DEFAULT_SEED) == build_catalog(DEFAULT_SEED)
    first, other = build_catalog(DEFAULT_SEED), build_catalog(DEFAULT_SEED + 1)
    assert [i.name for i in first.items] == [i.name for i in other.items]
    assert [i.barcode for i in first.items] != [i.barcode for i in other.items]


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32), day=st.dates(date(2020, 1, 1), date(2040, 12, 31)))
def test_any_seed_gives_a_sound_catalog_and_unexpired_opening_lots(seed: int, day: date) -> None:
    catalog = build_catalog(seed)
    assert check_catalog(catalog) == []
    plan = opening_stock(catalog, day, seed)
    tracked = {i.sku for i in catalog.items if i.lot_tracked}
    assert all(p.qty > 0 for p in plan)
    assert all(p.expiry is not None and p.expiry > day for p in plan if p.sku in tracked)
    assert all(p.lot is None for p in plan if p.sku not in tracked)
