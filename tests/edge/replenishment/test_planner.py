"""The planner: the pure core on hand-made arrays, and run_plan on a real SQLite file with documents posted through
the ledger (sales, POs, receipts, ASNs, lots with expiry, a cold-room excursion), checking each quantity it reads."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.db import connect
from edge.finance.compliance import make_purchase_order_guard
from edge.finance.rulebook import rule_book
from edge.ledger.commands import DocType, Line, PostDocument, ReverseDocument
from edge.ledger.posting import PostingContext, post
from edge.replenishment.kernels import plan_orders, service_factor
from edge.replenishment.lots import expiring_quantity, expiring_quantity_reference
from edge.replenishment.plan_data import epoch_day
from edge.replenishment.planner import PlanContext, PlanInputs, compute_plan, prepare_plan, run_plan
from edge.replenishment.signals import SeriesKeys
from edge.replenishment.suggestions import ItemSupplierIn, set_item_supplier
from tests.edge.web.apibox import seed

TODAY = date(2024, 6, 1)
NOW = datetime(2024, 6, 1, 2, 0, tzinfo=UTC)
RULES = rule_book()
GUARDS = (make_purchase_order_guard(50_000 * 100),)


def ctx_on(day: date) -> PostingContext:
    return PostingContext(
        now=datetime(day.year, day.month, day.day, 3, 0, tzinfo=UTC), business_date=day, rules=RULES, guards=GUARDS
    )


def posted(conn: sqlite3.Connection, command: PostDocument | ReverseDocument, day: date = TODAY) -> int:
    result = post(conn, command, ctx_on(day))
    assert result.ok, result.message_en
    assert result.document_id is not None
    return result.document_id


def plan_ctx(**overrides: object) -> PlanContext:
    values: dict[str, object] = {"now": NOW, "today": TODAY, "use_signals": True}
    values.update(overrides)
    return PlanContext(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plan-template") / "storebox.db"
    seed(path)
    return path


@pytest.fixture
def db(template: Path, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    path = tmp_path / "storebox.db"
    shutil.copyfile(template, path)
    conn = connect(path)
    yield conn
    conn.close()


def set_supplier(conn: sqlite3.Connection, sku: str, **values: object) -> None:
    spec = ItemSupplierIn(sku=sku, supplier="sup-1", **values)  # type: ignore[arg-type]
    conn.execute("BEGIN")
    set_item_supplier(conn, spec, "tester", NOW)
    conn.execute("COMMIT")


def sell_daily(
    conn: sqlite3.Connection, sku: str, qty: int, days: int, location: str | None = None, today: date = TODAY
) -> None:
    """`qty` base units of `sku` sold on each of the `days` days before `today`."""
    conn.execute("BEGIN")
    for k in range(days, 0, -1):
        day = today - timedelta(days=k)
        posted(
            conn,
            PostDocument(
                key=f"sale-{sku}-{day}",
                type=DocType.SALE,
                lines=(Line(sku, qty, location=location),),
                payment="cash",
            ),
            day,
        )
    conn.execute("COMMIT")


def store_with_documents(conn: sqlite3.Connection, today: date = TODAY) -> dict[str, int]:
    """COLA: sold 60 a day for 28 days, stock on the floor and in the back room, a PO part received, an ASN
    shipped. MILK: two lots in the cold room, one expiring tomorrow, the other under a cold-room alarm."""
    start = today - timedelta(days=30)
    set_supplier(conn, "COLA", unit="case", moq=1, lead_time_days=2.0)
    set_supplier(conn, "MILK", unit="bottle", moq=0, lead_time_days=1.0)
    conn.execute("BEGIN")
    posted(
        conn,
        PostDocument(
            key="rc-cola", type=DocType.RECEIPT, lines=(Line("COLA", 1700, price_fen=200),), counterparty="sup-1"
        ),
        start,
    )
    posted(
        conn,
        PostDocument(
            key="rc-cola-back",
            type=DocType.RECEIPT,
            lines=(Line("COLA", 1, unit="case", price_fen=4800),),
            location="backroom",
            counterparty="sup-1",
        ),
        start,
    )
    posted(
        conn,
        PostDocument(
            key="rc-milk",
            type=DocType.RECEIPT,
            lines=(
                Line("MILK", 200, price_fen=900, lot="A", expiry=today + timedelta(days=1)),
                Line("MILK", 30, price_fen=900, lot="B", expiry=today + timedelta(days=6)),
            ),
            location="cold",
            counterparty="sup-1",
        ),
        start,
    )
    conn.execute("COMMIT")
    sell_daily(conn, "COLA", 60, 28, today=today)
    sell_daily(conn, "MILK", 5, 28, location="cold", today=today)
    conn.execute("BEGIN")
    yesterday = today - timedelta(days=1)
    po_partly = posted(
        conn,
        PostDocument(
            key="po-1", type=DocType.PURCHASE_ORDER, lines=(Line("COLA", 2, unit="case"),), counterparty="sup-1"
        ),
        yesterday,
    )
    posted(
        conn,
        PostDocument(
            key="rc-po-1",
            type=DocType.RECEIPT,
            lines=(Line("COLA", 1, unit="case", price_fen=4800),),
            counterparty="sup-1",
            ref_id=po_partly,
        ),
        today,
    )
    po_shipped = posted(
        conn,
        PostDocument(
            key="po-2", type=DocType.PURCHASE_ORDER, lines=(Line("COLA", 1, unit="case"),), counterparty="sup-1"
        ),
        yesterday,
    )
    conn.execute(
        "INSERT INTO asns (supplier, asn_id, revision, po_id, ship_date, state, fingerprint, created_at, recorded_at)"
        " VALUES ('sup-1', 'ASN-1', 1, ?, ?, 'open', 'x', ?, ?)",
        (po_shipped, yesterday.isoformat(), NOW.isoformat(), NOW.isoformat()),
    )
    conn.execute(
        "INSERT INTO asn_lines (supplier, asn_id, line_no, code, sku, unit, qty, qty_base)"
        " VALUES ('sup-1', 'ASN-1', 1, 'COLA', 'COLA', 'case', 1, 24)"
    )
    cursor = conn.execute(
        "INSERT INTO cold_excursions (location, device, storage_class, direction, started_at, alarmed_at, peak_mc,"
        " last_mc, last_at, readings) VALUES ('cold', 'cold-1', 'chilled', 'above', ?, ?, 9000, 9000, ?, 5)",
        (NOW.isoformat(), NOW.isoformat(), NOW.isoformat()),
    )
    conn.execute(
        "INSERT INTO cold_excursion_lots (excursion_id, sku, lot, expiry, qty) VALUES (?, 'MILK', 'B', ?, 30)",
        (cursor.lastrowid, (today + timedelta(days=6)).isoformat()),
    )
    conn.execute("COMMIT")
    return {"po_partly": po_partly, "po_shipped": po_shipped}


# --- the pure core ------------------------------------------------------------------------------------------


def hand_inputs(n: int = 3, horizon: int = 14) -> PlanInputs:
    history = np.tile(np.array([10.0, 0.0, 4.0], dtype=np.float32)[:n, None], (1, 91))
    return PlanInputs(
        keys=SeriesKeys(
            sku=np.array(["A", "B", "C"][:n], dtype=object),
            location=np.array(["floor"] * n, dtype=object),
            category=np.array([""] * n, dtype=object),
            supplier=np.array(["sup-1"] * n, dtype=object),
        ),
        history=history,
        groups=np.zeros(n, dtype=np.int8),
        on_hand=np.array([15.0, 5.0, 100.0])[:n],
        in_transit=np.array([5.0, 0.0, 0.0])[:n],
        on_order=np.zeros(n),
        lots_days_left=np.array([0.0, 3.0]),
        lots_qty=np.array([6.0, 2.0]),
        lots_row=np.array([0, 0], dtype=np.int64),
        pack=np.array([6, 1, 12], dtype=np.int64)[:n],
        moq_packs=np.array([1, 0, 0], dtype=np.int64)[:n],
        shelf_life_days=np.zeros(n),
        lt_mean=np.array([2.0, 2.0, 2.0])[:n],
        lt_std=np.array([0.5, 0.5, 0.5])[:n],
        review_days=np.ones(n),
        service_level=np.full(n, 0.95),
        start=TODAY,
        horizon=horizon,
    )


def test_compute_plan_feeds_the_forecast_and_expiring_stock_into_plan_orders() -> None:
    inputs = hand_inputs()
    out = compute_plan(inputs, None, None)
    assert out.demand.shape == (3, 14)
    # A steady 10 a day forecasts about 10 a day; a series that never sold forecasts nothing.
    assert out.demand[0].mean() == pytest.approx(10.0, rel=0.2)
    assert out.demand[1].sum() == 0.0
    # Lot of 6 expiring today: day 0 sells 10 of it, nothing expires; the lot of 2 after 3 days sells too.
    assert out.expiring[0] == pytest.approx(0.0)
    expected = plan_orders(
        out.demand,
        out.forecast.std,
        inputs.lt_mean,
        inputs.lt_std,
        inputs.review_days,
        service_factor(inputs.service_level),
        inputs.on_hand,
        inputs.in_transit,
        inputs.on_order,
        out.expiring,
        inputs.pack,
        inputs.moq_packs,
        inputs.shelf_life_days,
    )
    assert out.order_packs.tolist() == expected[5].tolist()
    assert out.order_packs[0] > 0  # 20 in position against about 30 over the protection period
    assert out.order_packs[1] == 0 and out.order_packs[2] == 0


def test_expired_lot_counts_as_expiring_whole() -> None:
    demand = np.full((1, 5), 1.0)
    out = expiring_quantity(demand, np.array([-1.0, 2.0]), np.array([4.0, 10.0]), np.array([0, 0], dtype=np.int64))
    # The expired 4 are lost; of 10 sellable for 3 days at 1 a day, 7 expire.
    assert out[0] == pytest.approx(4.0 + 7.0)


def test_a_lot_without_a_finite_expiry_is_taken_as_sold() -> None:
    demand = np.full((1, 5), 1.0)
    left = np.array([np.inf, np.nan])
    out = expiring_quantity(demand, left, np.array([4.0, 3.0]), np.array([0, 0], dtype=np.int64))
    assert (
        out.tolist() == expiring_quantity_reference(demand, left, np.array([4.0, 3.0]), np.zeros(2, np.int64)).tolist()
    )
    assert out[0] == 0.0


lots_strategy = st.integers(min_value=1, max_value=5).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.lists(st.floats(0, 50, allow_nan=False), min_size=n * 6, max_size=n * 6),
        st.lists(
            st.tuples(st.integers(0, n - 1), st.floats(-3, 10, allow_nan=False), st.floats(0, 100, allow_nan=False)),
            max_size=12,
        ),
    )
)


@given(lots_strategy)
@settings(max_examples=150, deadline=None)
def test_expiring_kernel_matches_its_reference(case: tuple[int, list[float], list[tuple[int, float, float]]]) -> None:
    n, flat, lots = case
    demand = np.array(flat, dtype=np.float64).reshape(n, 6)
    lots = sorted(lots, key=lambda x: (x[0], x[1]))
    rows = np.array([r for r, _, _ in lots], dtype=np.int64)
    left = np.array([d for _, d, _ in lots], dtype=np.float64)
    qty = np.array([q for _, _, q in lots], dtype=np.float64)
    fast = expiring_quantity(demand, left, qty, rows)
    slow = expiring_quantity_reference(demand, left, qty, rows)
    assert fast == pytest.approx(slow, abs=1e-6)
    assert (fast >= -1e-9).all()
    assert fast.sum() <= qty.sum() + 1e-6


# --- run_plan on a real database ----------------------------------------------------------------------------


def test_sales_are_aggregated_per_series_and_day_net_of_returns_and_reversals(db: sqlite3.Connection) -> None:
    set_supplier(db, "COLA", unit="case")
    db.execute("BEGIN")
    posted(db, PostDocument(key="rc", type=DocType.RECEIPT, lines=(Line("COLA", 100, price_fen=200),)))
    sale = posted(db, PostDocument(key="s1", type=DocType.SALE, lines=(Line("COLA", 10),), payment="cash"))
    other = posted(db, PostDocument(key="s2", type=DocType.SALE, lines=(Line("COLA", 5),), payment="cash"))
    posted(
        db,
        PostDocument(key="cr", type=DocType.CUSTOMER_RETURN, lines=(Line("COLA", 3),), ref_id=sale, reason="taste"),
    )
    posted(db, ReverseDocument(key="rv", document_id=other))
    db.execute("COMMIT")
    rows = db.execute(
        "SELECT ps.sku, ps.location, d.day, d.qty FROM sales_daily d JOIN plan_series ps ON ps.id = d.series"
    ).fetchall()
    assert [tuple(r) for r in rows] == [("COLA", "floor", epoch_day(TODAY), 10 - 3)]


def test_run_plan_reads_every_quantity_and_writes_the_suggestion(db: sqlite3.Connection) -> None:
    store_with_documents(db)
    prepared = prepare_plan(db, plan_ctx())
    u = prepared.universe
    rows = {(str(s), str(loc)): i for i, (s, loc) in enumerate(zip(u.sku, u.location, strict=True))}
    # The back room is pooled into the floor; the transit location is never a row.
    assert set(rows) == {("COLA", "floor"), ("MILK", "cold")}
    cola, milk = rows[("COLA", "floor")], rows[("MILK", "cold")]
    inputs = prepared.inputs
    # 1700 received - 28 x 60 sold + 24 in the back room + 24 received against PO 1.
    assert inputs.on_hand[cola] == 1700 - 1680 + 24 + 24
    assert inputs.in_transit[cola] == 24  # ASN-1, shipped yesterday
    assert inputs.on_order[cola] == 24  # PO 1: 48 ordered, 24 received; PO 2 is all on the ASN
    assert inputs.history[cola, -28:].tolist() == [60.0] * 28
    assert inputs.history[cola, :-28].sum() == 0
    # MILK: lot A 200 - 140 sold = 60 (expires tomorrow), lot B 30 under the cold-room alarm.
    assert prepared.blocked[milk] == 30
    assert inputs.on_hand[milk] == 60
    assert inputs.lots_qty.tolist() == [60.0] and inputs.lots_row.tolist() == [milk]
    assert inputs.lots_days_left.tolist() == [1.0]
    out = prepared.outputs
    # Two days to sell lot A at about 5 a day: the rest expires.
    assert out.expiring[milk] == pytest.approx(60 - out.demand[milk, :2].sum())
    assert inputs.pack[cola] == 24 and inputs.moq_packs[cola] == 1
    # One PO received a day after it was placed: the supplier's learned lead time, shrunk towards its default.
    assert prepared.lead_source[cola] and 1.0 < inputs.lt_mean[cola] < 2.0

    run = run_plan(db, plan_ctx())
    assert run.series == 2 and not run.partial
    stored = {r["sku"]: dict(r) for r in db.execute("SELECT * FROM suggestions WHERE state = 'open'").fetchall()}
    assert set(stored) == {"COLA", "MILK"}
    s = stored["COLA"]
    assert s["qty"] == int(out.order_packs[cola]) and s["qty"] > 0
    assert (s["supplier"], s["unit"], s["pack"], s["base_qty"]) == ("sup-1", "case", 24, s["qty"] * 24)
    assert s["order_by"] == TODAY.isoformat()
    numbers = json.loads(s["inputs"])
    assert numbers["on_hand"] == 68 and numbers["in_transit"] == 24 and numbers["on_order"] == 24
    assert "在途 24" in s["explanation"] and f"建议订 {s['qty']} case" in s["explanation"]
    assert "in transit 24" in s["explanation_en"]
    milk_text = stored["MILK"]["explanation"]
    assert "冷库温度异常" in milk_text and "过期" in milk_text
    assert "cold-room alarm" in stored["MILK"]["explanation_en"]


def test_a_new_run_keeps_an_unchanged_suggestion_supersedes_a_changed_one_and_keeps_decided_ones(
    db: sqlite3.Connection,
) -> None:
    store_with_documents(db)
    first = run_plan(db, plan_ctx())
    assert first.rows == 2
    db.execute(
        "UPDATE suggestions SET state = 'rejected', decided_by = 'm', decided_at = ?, reject_reason = 'no'"
        " WHERE sku = 'MILK'",
        ((NOW - timedelta(hours=1)).isoformat(),),
    )
    second = run_plan(db, plan_ctx(now=NOW + timedelta(minutes=15)))
    assert second.superseded == 0 and second.rows == 2
    states = db.execute("SELECT id, sku, state, run_id FROM suggestions ORDER BY id").fetchall()
    # COLA is suggested again unchanged: the same suggestion (same id), refreshed by the second run.
    assert [tuple(r) for r in states] == [
        (1, "COLA", "open", second.id),
        (2, "MILK", "rejected", first.id),
        (3, "MILK", "open", second.id),
    ]
    set_supplier(db, "COLA", unit="case", moq=40, lead_time_days=2.0)
    third = run_plan(db, plan_ctx(now=NOW + timedelta(minutes=30)))
    assert third.superseded == 1
    cola = db.execute("SELECT id, state, qty, run_id FROM suggestions WHERE sku = 'COLA' ORDER BY id").fetchall()
    assert [(r["id"], r["state"]) for r in cola] == [(1, "superseded"), (4, "open")]
    assert cola[1]["qty"] == 40 and cola[1]["run_id"] == third.id


def test_a_partial_run_supersedes_only_its_skus(db: sqlite3.Connection) -> None:
    store_with_documents(db)
    run_plan(db, plan_ctx())
    set_supplier(db, "COLA", unit="case", moq=40, lead_time_days=2.0)  # would change COLA, which is not planned
    set_supplier(db, "MILK", unit="bottle", moq=100, lead_time_days=1.0)
    partial = run_plan(db, plan_ctx(), skus=["MILK"])
    assert partial.partial and partial.series == 1 and partial.superseded == 1
    open_rows = db.execute("SELECT sku, run_id FROM suggestions WHERE state = 'open' ORDER BY sku").fetchall()
    assert [r["sku"] for r in open_rows] == ["COLA", "MILK"]
    assert open_rows[1]["run_id"] == partial.id != open_rows[0]["run_id"]


def test_a_decision_made_while_the_run_computed_is_kept(db: sqlite3.Connection) -> None:
    store_with_documents(db)
    run_plan(db, plan_ctx())
    # Someone approves COLA after the next run started reading: the run writes nothing for COLA.
    db.execute(
        "UPDATE suggestions SET state = 'approved', decided_by = 'm', decided_at = ? WHERE sku = 'COLA'",
        ((NOW + timedelta(minutes=16)).isoformat(),),
    )
    run = run_plan(db, plan_ctx(now=NOW + timedelta(minutes=15)))
    assert run.skipped == ("COLA",)
    assert db.execute("SELECT COUNT(*) FROM suggestions WHERE sku = 'COLA' AND state = 'open'").fetchone()[0] == 0


def test_items_without_a_supplier_are_not_planned(db: sqlite3.Connection) -> None:
    sell_daily_after_receipt(db, "RICE", 3)
    run = run_plan(db, plan_ctx())
    assert run.series == 0 and run.rows == 0


def sell_daily_after_receipt(conn: sqlite3.Connection, sku: str, qty: int) -> None:
    conn.execute("BEGIN")
    posted(
        conn,
        PostDocument(key=f"rc-{sku}", type=DocType.RECEIPT, lines=(Line(sku, 100, price_fen=100),)),
        TODAY - timedelta(days=10),
    )
    conn.execute("COMMIT")
    sell_daily(conn, sku, qty, 5)


def test_imported_history_is_summed_with_ledger_sales(db: sqlite3.Connection) -> None:
    from edge.replenishment.history import import_history_file

    store_with_documents(db)
    day = TODAY - timedelta(days=40)
    csv = f"sku,location,date,qty\nCOLA,floor,{day},30\nCOLA,floor,{TODAY - timedelta(days=1)},8\n".encode()
    db.execute("BEGIN")
    import_history_file(db, csv, "old.csv", "tester", NOW, TODAY)
    db.execute("COMMIT")
    prepared = prepare_plan(db, plan_ctx())
    cola = list(prepared.universe.sku).index("COLA")
    assert prepared.inputs.history[cola, -1] == 60 + 8
    assert prepared.inputs.history[cola, -40] == 30


def test_goods_on_their_way_between_our_locations_count_as_in_transit(db: sqlite3.Connection) -> None:
    store_with_documents(db)

    def cola() -> tuple[float, float]:
        prepared = prepare_plan(db, plan_ctx())
        row = list(prepared.universe.sku).index("COLA")
        return float(prepared.inputs.on_hand[row]), float(prepared.inputs.in_transit[row])

    on_hand, in_transit = cola()
    db.execute("BEGIN")
    moved = posted(
        db,
        PostDocument(
            key="to-1",
            type=DocType.TRANSFER_OUT,
            lines=(Line("COLA", 1, unit="case"),),
            location="backroom",
            to_location="floor",
        ),
    )
    db.execute("COMMIT")
    assert cola() == (on_hand - 24, in_transit + 24)  # the back room's case is on its way to the floor
    db.execute("BEGIN")
    posted(
        db,
        PostDocument(
            key="ti-1", type=DocType.TRANSFER_IN, lines=(Line("COLA", 10),), to_location="floor", ref_id=moved
        ),
    )
    db.execute("COMMIT")
    assert cola() == (on_hand - 14, in_transit + 14)
