"""Demo data for replenishment (补货演示数据): who each item is bought from and how, ~120 days of sales history from a
"previous system", lead-time history, a few outside signals (a promotion, a weather forecast, a supplier delay) and
the neighbour stores' stock. Deterministic for the catalog's seed; bulk inserts, inside the demo seed's transaction.

The sales history comes from tools.train.generator (the same realistic demand the model was trained on), scaled to
each item's price: cheap everyday goods sell tens a day, expensive ones a few a week.
"""

from __future__ import annotations

import sqlite3
from datetime import date, timedelta
from typing import Any

import numpy as np

from edge.demo.catalog import CASE_UNIT, DEFAULT_SEED, HOME_LOCATION, WEIGHED_UNIT, Catalog, ItemSpec
from edge.ledger.posting import PostingContext
from edge.replenishment.plan_data import epoch_day

HISTORY_DAYS = 120
ACTOR = "demo-seed"
# Supplier -> default lead time in days, service level, review days.
SUPPLIER_TERMS: dict[str, tuple[float, float, float]] = {
    "sup-bev": (2.0, 0.95, 1.0),
    "sup-food": (3.0, 0.95, 2.0),
    "sup-daily": (4.0, 0.93, 3.0),
    "sup-cold": (1.0, 0.95, 1.0),
    "sup-fresh": (1.0, 0.90, 1.0),
}
# Lead times the previous system recorded per supplier (days, one per delivery): sup-daily is slower than it says.
LEAD_TIME_HISTORY: dict[str, tuple[int, ...]] = {
    "sup-bev": (2, 2, 3, 2, 2, 3),
    "sup-food": (3, 3, 4, 3, 2, 3),
    "sup-daily": (5, 6, 5, 7, 5, 6),
    "sup-cold": (1, 1, 1, 2, 1, 1),
    "sup-fresh": (1, 1, 1, 1, 1, 2),
}


def seed_replenishment(conn: sqlite3.Connection, ctx: PostingContext, catalog: Catalog, settings: Any) -> None:
    """Seed item suppliers, sales history, signals and peer stock inside the demo seed's transaction."""
    today = ctx.business_date
    _item_suppliers(conn, catalog, ctx)
    _sales_history(conn, catalog, today, getattr(settings, "demo_seed", DEFAULT_SEED))
    _lead_time_history(conn, ctx)
    _signals(conn, catalog, ctx)
    _peer_stock(conn, catalog, ctx)


def purchase_terms(item: ItemSpec) -> tuple[str, int, int]:
    """Purchase unit, its size in base units and the minimum order in purchase units."""
    units = dict(item.units)
    if CASE_UNIT in units:
        return CASE_UNIT, units[CASE_UNIT], 1
    if item.base_unit == WEIGHED_UNIT:
        return "kg", units.get("kg", 1000), 2
    return item.base_unit, 1, 6 if item.price_fen <= 3000 else 1


def _item_suppliers(conn: sqlite3.Connection, catalog: Catalog, ctx: PostingContext) -> None:
    rows = []
    for item in catalog.items:
        unit, pack, moq = purchase_terms(item)
        lead, service, review = SUPPLIER_TERMS.get(item.supplier, (3.0, 0.95, 1.0))
        rows.append((item.sku, item.supplier, unit, pack, moq, lead, review, service, ctx.now.isoformat(), ACTOR))
    conn.executemany(
        "INSERT OR IGNORE INTO item_suppliers (sku, supplier, unit, pack, moq, lead_time_days, review_days,"
        " service_level, is_primary, active, updated_at, updated_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, 1, ?, ?)",
        rows,
    )


def daily_level(item: ItemSpec) -> float:
    """Typical daily sales in base units by price: cheap goods sell tens a day, a 100-yuan item a few a week."""
    if item.base_unit == WEIGHED_UNIT:
        per_jin = item.price_fen * 500 / 100  # yuan per 500 g
        return float(np.clip(8000.0 / max(per_jin, 1.0), 300.0, 6000.0))
    yuan = item.price_fen / 100
    return float(np.clip(60.0 / max(yuan, 0.5) ** 0.9, 0.05, 40.0))


def _sales_history(conn: sqlite3.Connection, catalog: Catalog, today: date, seed: int) -> None:
    from tools.train.generator import generate

    items = list(catalog.items)
    if not items:
        return
    start = today - timedelta(days=HISTORY_DAYS)
    data = generate(len(items), HISTORY_DAYS, start, seed)
    level = np.array([daily_level(item) for item in items])
    # The generator's shapes (week, calendar, promotions, weather, stockouts) at each item's own level.
    scale = level / np.maximum(data.level.astype(np.float64), 1e-6)
    expected = data.expected.astype(np.float64) * scale[:, None]
    rng = np.random.default_rng(seed + 5)
    sales = rng.poisson(np.maximum(expected, 0.0)).astype(np.int64)
    sales[data.censored] //= 2  # the shelf ran empty part of the day
    pairs = [(item.sku, HOME_LOCATION[item.storage_class]) for item in items]
    conn.executemany("INSERT OR IGNORE INTO plan_series (sku, location) VALUES (?, ?)", pairs)
    series = {(r[1], r[2]): int(r[0]) for r in conn.execute("SELECT id, sku, location FROM plan_series")}
    ids = np.array([series[p] for p in pairs], dtype=np.int64)
    first = epoch_day(start)
    rows_idx, days_idx = np.nonzero(sales)
    conn.executemany(
        "INSERT INTO sales_history (series, day, qty) VALUES (?, ?, ?)"
        " ON CONFLICT (series, day) DO UPDATE SET qty = excluded.qty",
        zip(
            ids[rows_idx].tolist(),
            (days_idx + first).tolist(),
            sales[rows_idx, days_idx].tolist(),
            strict=True,
        ),
    )
    conn.execute(
        "INSERT INTO history_imports (source, sha256, rows, first_day, last_day, imported_at, imported_by)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            "demo: tools.train.generator",
            "-",
            int(rows_idx.size),
            start.isoformat(),
            (today - timedelta(days=1)).isoformat(),
            today.isoformat(),
            ACTOR,
        ),
    )


def _lead_time_history(conn: sqlite3.Connection, ctx: PostingContext) -> None:
    from edge.replenishment.leadtime import import_lead_times
    from edge.replenishment.signal_formats import LeadTimeIn

    today = ctx.business_date
    records = []
    for supplier, days in LEAD_TIME_HISTORY.items():
        for k, lead in enumerate(days):
            ordered = today - timedelta(days=90 - 14 * k)
            records.append(
                LeadTimeIn(
                    supplier=supplier,
                    po_ref=f"OLD-{supplier}-{k + 1:03d}",
                    ordered_on=ordered,
                    received_on=ordered + timedelta(days=lead),
                    qty=1,
                )
            )
    import_lead_times(conn, records, "demo-lead-times", ACTOR, ctx.now, today)


def _signals(conn: sqlite3.Connection, catalog: Catalog, ctx: PostingContext) -> None:
    from edge.replenishment.signals import Promotion, SupplierDelay, Weather, record_signals

    today = ctx.business_date
    drinks = [i for i in catalog.items if i.category == "drinks"]
    if drinks:
        record_signals(
            conn,
            "promotion",
            [
                Promotion(
                    sku=drinks[0].sku,
                    category=None,
                    start=today + timedelta(days=2),
                    end=today + timedelta(days=8),
                    discount=0.2,
                    promo_price_fen=None,
                    kind="折扣",
                    note="周末饮料八折 demo",
                )
            ],
            "demo-promotion",
            ACTOR,
            ctx.now,
            today,
            source="file",
        )
    record_signals(
        conn,
        "weather",
        [
            Weather(day=today + timedelta(days=k), temp_max_c=t, temp_min_c=t - 8, rain_mm=r)
            for k, (t, r) in enumerate(((12, 0), (14, 0), (9, 28), (7, 12), (10, 0), (11, 0), (13, 0)))
        ],
        "demo-weather",
        ACTOR,
        ctx.now,
        today,
        source="file",
    )
    record_signals(
        conn,
        "supplier_delay",
        [
            SupplierDelay(
                supplier="sup-daily",
                delay_days=2,
                from_date=today,
                until=today + timedelta(days=10),
                reason="物流中心盘点 warehouse stocktake",
            )
        ],
        "demo-delay",
        ACTOR,
        ctx.now,
        today,
        source="file",
    )


def _peer_stock(conn: sqlite3.Connection, catalog: Catalog, ctx: PostingContext) -> None:
    from edge.replenishment.emergency_orders import demo_peer_stock, seed_peer_stock

    items = [(i.sku, i.storage_class, i.shelf_life_days) for i in catalog.items]
    stores = [s.id for s in catalog.neighbour_stores]
    seed_peer_stock(conn, demo_peer_stock(items, stores, ctx.now))
