"""Outside signals on a real SQLite store: validation, storage, the effects on the plan and the notes."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.db import connect, migrate
from edge.ledger import masterdata as md
from edge.ledger.errors import IdempotencyKeyReused
from edge.replenishment.errors import InvalidSignal, UnknownSignalKind
from edge.replenishment.signal_formats import kind_of, parse_signal_file, validate_records
from edge.replenishment.signals import (
    SeriesKeys,
    SignalEffects,
    SignalPolicy,
    list_signals,
    record_signals,
    signal_effects,
    to_domain,
    touched_since,
)
from tests.edge.ledger.sample_store import seed

TODAY = date(2026, 12, 5)
NOW = datetime(2026, 12, 5, 2, 0, tzinfo=UTC)


def add_signal_items(conn: sqlite3.Connection) -> None:
    """Items with categories and suppliers on top of the sample store (A1 cola, M1 milk, F1 dumplings ...)."""
    conn.execute("BEGIN")
    md.add_category(conn, "snacks", "零食", "Snacks", "ambient")
    md.add_item(conn, "S1", "雪碧 330ml", base_unit="听", category="drinks", price_fen=300, cost_fen=200)
    md.add_item(conn, "S2", "芬达 330ml", base_unit="听", category="drinks", price_fen=300, cost_fen=200)
    md.add_item(conn, "Y1", "原味酸奶", base_unit="杯", category="dairy", storage_class="chilled", price_fen=500)
    md.add_item(conn, "P1", "薯片 烧烤味", name_en="Potato chips BBQ", base_unit="袋", category="snacks", price_fen=800)
    md.add_item(conn, "P2", "薯片 原味", name_en="Potato chips", base_unit="袋", category="snacks", price_fen=800)
    for sku, supplier in (("S1", "sup1"), ("S2", "sup1"), ("Y1", "sup2"), ("P1", "sup2")):
        conn.execute(
            "INSERT INTO item_suppliers (sku, supplier, unit, pack, lead_time_days, updated_at, updated_by)"
            " VALUES (?, ?, ?, 24, 2, ?, 'test')",
            (sku, supplier, "听" if sku.startswith("S") else ("杯" if sku == "Y1" else "袋"), NOW.isoformat()),
        )
    conn.execute("COMMIT")


def open_store(path: Path) -> sqlite3.Connection:
    conn = connect(path, synchronous="NORMAL")
    migrate(conn)
    seed(conn)
    add_signal_items(conn)
    return conn


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = open_store(tmp_path / "signals.db")
    try:
        yield c
    finally:
        c.close()


_KEYS = itertools.count()


def push(
    conn: sqlite3.Connection,
    kind: str,
    raw: list[dict[str, Any]],
    *,
    key: str | None = None,
    today: date = TODAY,
    lines: list[int] | None = None,
) -> dict[str, Any]:
    records = to_domain(kind, validate_records(kind, raw))
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = record_signals(conn, kind, records, key or f"{kind}-{next(_KEYS)}", "tester", NOW, today, lines=lines)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def keys_of(rows: list[tuple[str, str, str, str]]) -> SeriesKeys:
    def col(i: int) -> np.ndarray:
        return np.array([r[i] for r in rows], dtype=object)

    return SeriesKeys(col(0), col(1), col(2), col(3))


KEYS = keys_of(
    [
        ("S1", "floor", "drinks", "sup1"),
        ("S1", "backroom", "drinks", "sup1"),
        ("S2", "floor", "drinks", "sup1"),
        ("Y1", "cold", "dairy", "sup2"),
        ("P1", "floor", "snacks", "sup2"),
        ("A1", "floor", "", ""),
    ]
)


def notes_of(effects: SignalEffects, row: int, code: str | None = None) -> list[str]:
    return [n.message for n in effects.notes.get(row, []) if code is None or n.code == code]


def test_no_signals_leave_the_forecast_alone(conn: sqlite3.Connection) -> None:
    effects = signal_effects(conn, KEYS, TODAY, 7)
    assert effects.demand_factor.shape == (6, 7) and np.all(effects.demand_factor == 1.0)
    assert np.all(effects.extra_demand == 0.0) and np.all(effects.lead_time_extra_days == 0.0)
    assert np.all(effects.exog.promo == 0) and np.all(np.isnan(effects.exog.temp_c))
    assert effects.notes == {}


def test_weather_feeds_the_model_and_the_newest_push_wins_per_day(conn: sqlite3.Connection) -> None:
    push(conn, "weather", [{"date": "2026-12-06", "temp_max_c": 12, "temp_min_c": 3, "rain_mm": 0}], key="w1")
    push(
        conn,
        "weather",
        [
            {"date": "2026-12-06", "temp_max_c": 9.5, "temp_min_c": 1, "rain_mm": 30},
            {"date": "2026-12-07", "temp_max_c": 8, "temp_min_c": -2, "rain_mm": 0},
            {"date": "2026-12-07", "temp_max_c": 2, "temp_min_c": -1, "rain_mm": 0, "location": "cold"},
        ],
        key="w2",
    )
    effects = signal_effects(conn, KEYS, TODAY, 3)
    assert np.isnan(effects.exog.temp_c[0, 0])  # nothing pushed for today
    assert effects.exog.temp_c[0, 1] == pytest.approx(9.5) and effects.exog.rain_mm[0, 1] == pytest.approx(30)
    assert effects.exog.temp_c[0, 2] == pytest.approx(8)
    assert effects.exog.temp_c[3, 2] == pytest.approx(2)  # the cold room's own forecast
    assert effects.exog.temp_c.dtype == np.float32
    assert "天气预报: 12/06 降雨 30 mm" in notes_of(effects, 0, "weather")
    current = [r for r in list_signals(conn, "weather") if r["current"]]
    assert sorted((r["date"], r["location"], r["temp_max_c"]) for r in current) == [
        ("2026-12-06", "", 9.5),
        ("2026-12-07", "", 8.0),
        ("2026-12-07", "cold", 2.0),
    ]


def test_a_promotion_sets_the_discount_for_the_model_and_reads_in_the_explanation(conn: sqlite3.Connection) -> None:
    push(
        conn,
        "promotion",
        [
            {"sku": "S1", "start": "2026-12-08", "end": "2026-12-14", "discount": 0.2, "kind": "折扣"},
            {"category": "snacks", "start": "2026-12-01", "end": "2026-12-06", "discount": 0.1, "kind": "满减"},
            {"sku": "Y1", "start": "2026-12-05", "end": "2026-12-05", "promo_price_fen": 400, "kind": "special"},
        ],
    )
    effects = signal_effects(conn, KEYS, TODAY, 7)
    assert effects.exog.promo[0].tolist() == pytest.approx([0, 0, 0, 0.2, 0.2, 0.2, 0.2])
    assert effects.exog.promo[1].tolist() == effects.exog.promo[0].tolist()  # every location of S1
    assert effects.exog.promo[2].tolist() == [0.0] * 7  # S2 has no promotion
    assert effects.exog.promo[4].tolist() == pytest.approx([0.1, 0.1, 0, 0, 0, 0, 0])  # snacks, to 12-06
    assert effects.exog.promo[3, 0] == pytest.approx(0.2)  # 4.00 instead of 5.00
    assert notes_of(effects, 0, "promotion") == ["促销 8 折（12/08–12/14），预计销量 ×1.6"]
    assert [n.message_en for n in effects.notes[0]] == ["promotion 20 % off (12-08..12-14), expected sales ×1.6"]
    assert notes_of(effects, 3) == ["特价 ¥4.00 (约 8 折)（12/05–12/05），预计销量 ×1.6"]
    assert effects.promo_lift is not None and effects.promo_lift[0, 3] == pytest.approx(1.6)
    assert 5 not in effects.notes  # A1 untouched


@pytest.mark.parametrize(
    ("record", "field", "index"),
    [
        ({"sku": "NOPE", "start": "2026-12-08", "end": "2026-12-14", "discount": 0.2, "kind": "折扣"}, "sku", 1),
        (
            {"category": "nope", "start": "2026-12-08", "end": "2026-12-14", "discount": 0.2, "kind": "折扣"},
            "category",
            1,
        ),
        (
            {"sku": "S1", "start": "2026-12-08", "end": "2026-12-14", "promo_price_fen": 300, "kind": "特价"},
            "promo_price_fen",
            1,
        ),
        ({"sku": "S1", "start": "2020-12-08", "end": "2020-12-14", "discount": 0.2, "kind": "折扣"}, "end", 1),
    ],
)
def test_a_bad_record_refuses_the_whole_push_naming_its_index(
    conn: sqlite3.Connection, record: dict[str, Any], field: str, index: int
) -> None:
    good = {"sku": "S2", "start": "2026-12-08", "end": "2026-12-14", "discount": 0.2, "kind": "折扣"}
    with pytest.raises(InvalidSignal) as caught:
        push(conn, "promotion", [good, record])
    assert caught.value.detail["field"] == field and caught.value.detail["index"] == index
    assert conn.execute("SELECT COUNT(*) FROM signal_promotions").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM signal_batches").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("kind", "record", "field"),
    [
        ("weather", {"date": "2026-12-06", "temp_max_c": 1, "temp_min_c": 3, "rain_mm": 0}, "record"),
        ("weather", {"date": "2026-12-06", "temp_max_c": 99, "temp_min_c": 3, "rain_mm": 0}, "temp_max_c"),
        ("weather", {"date": "06/12/2026", "temp_max_c": 9, "temp_min_c": 3, "rain_mm": 0}, "date"),
        (
            "promotion",
            {"sku": "S1", "start": "2026-12-08", "end": "2026-12-07", "discount": 0.2, "kind": "折扣"},
            "record",
        ),
        (
            "promotion",
            {"sku": "S1", "start": "2026-12-08", "end": "2026-12-09", "discount": 1.5, "kind": "折扣"},
            "discount",
        ),
        (
            "promotion",
            {"sku": "S1", "start": "2026-12-08", "end": "2026-12-09", "discount": 0.5, "kind": "秒杀"},
            "record",
        ),
        ("search_bounce", {"sku": "S1", "date": "2026-12-05", "rate": 1.2}, "rate"),
        ("trend", {"sku": "S1", "category": "drinks", "date": "2026-12-05", "score": 50}, "record"),
        (
            "online_sales",
            {"channel": "meituan", "order_id": "1", "ts": "2026-12-05T10:00:00", "lines": [{"sku": "S1", "qty": 1}]},
            "ts",
        ),
        (
            "supplier_delay",
            {"supplier": "sup1", "delay_days": 3, "from": "2026-12-05", "until": "2026-12-01"},
            "record",
        ),
    ],
)
def test_the_formats_refuse_bad_values_naming_the_field(kind: str, record: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSignal) as caught:
        validate_records(kind, [record])
    assert caught.value.detail["field"] == field and caught.value.detail["index"] == 0
    assert caught.value.message and caught.value.message_en


def test_unknown_kind_is_refused() -> None:
    assert kind_of("online-sales") == "online_sales"
    with pytest.raises(UnknownSignalKind):
        kind_of("horoscope")


def test_online_orders_count_once_and_only_when_not_rung_up_at_this_box(conn: sqlite3.Connection) -> None:
    def order(
        order_id: str, day: int, qty: int, fulfilment: str = "channel", channel: str = "meituan"
    ) -> dict[str, Any]:
        return {
            "channel": channel,
            "order_id": order_id,
            "ts": f"2026-12-{day:02d}T11:00:00+08:00",
            "lines": [{"sku": "S1", "qty": qty}, {"sku": "S1", "qty": 1}],
            "fulfilment": fulfilment,
        }

    first = push(conn, "online_sales", [order("A", 1, 13), order("B", 3, 6, channel="eleme")], key="o1")
    assert (first["accepted"], first["duplicates"]) == (2, 0)
    again = push(conn, "online_sales", [order("A", 1, 13), order("C", 4, 99, "pos")], key="o2")
    assert (again["accepted"], again["duplicates"]) == (1, 1)
    effects = signal_effects(conn, KEYS, TODAY, 3)
    rate = (14 + 7) / 14  # the pos order is in the ledger's sales already
    assert effects.extra_demand[0].tolist() == pytest.approx([rate] * 3)
    assert np.all(effects.extra_demand[1] == 0)  # on the floor series only, not the back room's too
    assert notes_of(effects, 0, "online_sales") == ["线上渠道近 14 天日均 1.5 件 (eleme, meituan)"]
    stored = list_signals(conn, "online_sales")
    assert {o["order_id"]: o["lines"] for o in stored}["A"] == [{"sku": "S1", "qty": 14}]


def test_a_supplier_delay_lifts_lead_time_and_touches_the_suppliers_skus(conn: sqlite3.Connection) -> None:
    cursor, skus = touched_since(conn, 0)
    assert (cursor, skus) == (0, set())
    push(
        conn,
        "supplier_delay",
        [{"supplier": "sup1", "delay_days": 3, "from": "2026-12-04", "reason": "暴雪"}],
        key="d1",
    )
    cursor, skus = touched_since(conn, 0)
    assert skus == {"S1", "S2"} and cursor > 0
    effects = signal_effects(conn, KEYS, TODAY, 7)
    assert effects.lead_time_extra_days.tolist() == [3, 3, 3, 0, 0, 0]
    assert notes_of(effects, 2) == ["供应商延误 +3 天（暴雪）"]
    assert effects.notes[2][0].message_en == "supplier delay +3 days (暴雪)"
    # A later notice with the same start lifts it; a notice ending before the plan starts does nothing.
    push(conn, "supplier_delay", [{"supplier": "sup1", "delay_days": 0, "from": "2026-12-04"}], key="d2")
    push(
        conn,
        "supplier_delay",
        [{"supplier": "sup2", "delay_days": 5, "from": "2026-12-01", "until": "2026-12-04"}],
        key="d3",
    )
    assert np.all(signal_effects(conn, KEYS, TODAY, 7).lead_time_extra_days == 0)
    later, touched = touched_since(conn, cursor)
    assert later > cursor and touched == {"S1", "S2", "Y1", "P1"}
    assert touched_since(conn, later) == (later, set())


def test_lead_indicators_make_a_bounded_factor_that_expires(conn: sqlite3.Connection) -> None:
    push(
        conn,
        "trend",
        [
            {"sku": "S1", "date": "2026-12-04", "score": 92, "baseline": 40},
            {"keyword": "薯片", "date": "2026-12-05", "score": 100, "baseline": 50},
        ],
    )
    push(conn, "search_bounce", [{"category": "drinks", "date": "2026-12-05", "rate": 0.35}])
    push(conn, "cart_abandonment", [{"sku": "S2", "date": "2026-11-20", "rate": 0.99}])  # stale: 15 days old
    push(conn, "cart_abandonment", [{"sku": "Y1", "date": "2026-12-03", "rate": 0.9}])
    effects = signal_effects(conn, KEYS, TODAY, 10)
    trend = 1 + 0.3 * (52 / 60)
    assert trend * 1.15 > 1.4
    assert effects.demand_factor[0, 0] == pytest.approx(1.4)  # bounded
    assert effects.demand_factor[0, 6] == pytest.approx(1.4)  # trend dated 12-04 counts to 12-11
    assert effects.demand_factor[0, 7] == pytest.approx(1.15)
    assert effects.demand_factor[2, 0] == pytest.approx(1.15)  # S2: only its category's search bounce
    assert effects.demand_factor[3, 0] == pytest.approx(0.9)  # Y1: abandonment 0.9 vs 0.7 -> -10 %
    assert effects.demand_factor[4, 0] == pytest.approx(1.3)  # P1 named by the keyword
    assert np.all(effects.demand_factor <= 1.4) and np.all(effects.demand_factor >= 0.8)
    assert "热搜指数 92（基线 40），需求 ×1.26" in notes_of(effects, 0)
    assert "搜索未找到率 35%（基线 20%），需求 ×1.15" in notes_of(effects, 2)
    assert notes_of(effects, 5) == []
    tight = signal_effects(conn, KEYS, TODAY, 3, SignalPolicy(lead_factor_max=1.2))
    assert tight.demand_factor[0, 0] == pytest.approx(1.2)


def test_a_learned_baseline_is_the_mean_of_earlier_scores(conn: sqlite3.Connection) -> None:
    push(conn, "trend", [{"sku": "S1", "date": f"2026-11-{d:02d}", "score": 20} for d in range(20, 30)])
    push(conn, "trend", [{"sku": "S1", "date": "2026-12-05", "score": 60}])
    effects = signal_effects(conn, KEYS, TODAY, 1)
    assert effects.demand_factor[0, 0] == pytest.approx(1 + 0.3 * 40 / 80)


def test_the_same_key_replays_and_a_different_push_under_it_is_refused(conn: sqlite3.Connection) -> None:
    raw = [{"sku": "S1", "date": "2026-12-05", "rate": 0.5}]
    first = push(conn, "search_bounce", raw, key="k")
    again = push(conn, "search_bounce", raw, key="k")
    assert again == {**first, "replayed": True}
    with pytest.raises(IdempotencyKeyReused):
        push(conn, "search_bounce", [{"sku": "S1", "date": "2026-12-05", "rate": 0.6}], key="k")
    assert conn.execute("SELECT COUNT(*) FROM signal_indicators").fetchone()[0] == 1


def test_a_csv_file_with_a_bad_line_is_refused_whole_naming_line_and_field(conn: sqlite3.Connection) -> None:
    text = "\ufeffsku,category,start,end,discount,promo_price_fen,kind,note\n"
    text += "S1,,2026-12-08,2026-12-14,0.2,,折扣,双十二\n"
    text += "\n"
    text += ",snacks,2026-12-08,2026-12-14,0.1,,满减,\n"
    text += "S2,,2026-12-08,2026-12-14,,,折扣,\n"
    with pytest.raises(InvalidSignal) as caught:
        parse_signal_file("promotion", text.encode())
    assert caught.value.detail["line"] == 5 and caught.value.detail["field"] == "record"
    records, lines = parse_signal_file("promotion", text.rsplit("S2", 1)[0].encode())
    assert lines == [2, 4] and len(records) == 2
    unknown = text.rsplit("S2", 1)[0] + "NOPE,,2026-12-08,2026-12-14,0.2,,折扣,\n"
    parsed, at = parse_signal_file("promotion", unknown.encode(), "promos.csv")
    with pytest.raises(InvalidSignal) as refused:
        conn.execute("BEGIN IMMEDIATE")
        try:
            record_signals(conn, "promotion", to_domain("promotion", parsed), "f", "t", NOW, TODAY, lines=at)
        finally:
            conn.execute("ROLLBACK")
    assert refused.value.detail["line"] == 5 and refused.value.detail["field"] == "sku"
    assert "第 5 行" in refused.value.message


def test_online_orders_from_csv_group_lines_by_order(conn: sqlite3.Connection) -> None:
    text = (
        "channel,order_id,ts,sku,qty\n"
        "meituan,A1,2026-12-04T10:00:00+08:00,S1,2\n"
        "meituan,A1,2026-12-04T10:00:00+08:00,Y1,1\n"
        "jddj,B7,2026-12-04T12:00:00+08:00,S1,1\n"
    )
    records, lines = parse_signal_file("online_sales", text.encode())
    assert lines == [2, 4] and [len(r.lines) for r in records] == [2, 1]  # type: ignore[attr-defined]


def test_json_file_errors_name_the_line_of_the_record() -> None:
    text = '[\n  {"date": "2026-12-06", "temp_max_c": 5, "temp_min_c": 1, "rain_mm": 0},\n  {"date": "2026-12-07"}\n]'
    with pytest.raises(InvalidSignal) as caught:
        parse_signal_file("weather", text.encode(), "w.json")
    assert caught.value.detail["line"] == 3 and caught.value.detail["index"] == 1


def test_effects_over_many_series_touch_only_the_rows_signals_name(conn: sqlite3.Connection) -> None:
    n = 50_000
    rng = np.random.default_rng(1)
    skus = np.array([f"X{i}" for i in range(n)], dtype=object)
    skus[rng.choice(n, 50, replace=False)] = "S1"
    categories = np.where(skus == "S1", "drinks", "other").astype(object)
    keys = SeriesKeys(skus, np.full(n, "floor", dtype=object), categories, np.full(n, "supx", dtype=object))
    push(
        conn, "promotion", [{"sku": "S1", "start": "2026-12-05", "end": "2026-12-06", "discount": 0.3, "kind": "折扣"}]
    )
    push(conn, "search_bounce", [{"category": "drinks", "date": "2026-12-05", "rate": 0.5}])
    effects = signal_effects(conn, keys, TODAY, 14)
    assert effects.exog.promo.shape == (n, 14)
    assert set(np.flatnonzero(effects.exog.promo[:, 0])) == set(np.flatnonzero(skus == "S1"))
    assert len(effects.notes) == 50
    assert int((effects.demand_factor[:, 0] > 1).sum()) == 50


def test_policy_reads_the_settings_block() -> None:
    from edge.config import Settings

    policy = SignalPolicy.from_settings(Settings(signals_trend_max_lift=0.5, signals_online_window_days=7))
    assert policy.trend_max_lift == 0.5 and policy.online_window_days == 7 and policy.stale_days == 7


def test_signal_dates_far_from_today_are_refused(conn: sqlite3.Connection) -> None:
    later = TODAY + timedelta(days=60)
    with pytest.raises(InvalidSignal) as caught:
        push(conn, "weather", [{"date": later.isoformat(), "temp_max_c": 5, "temp_min_c": 1, "rain_mm": 0}])
    assert caught.value.detail["field"] == "date"


def test_a_later_push_replaces_or_withdraws_a_promotion(conn: sqlite3.Connection) -> None:
    promo = {"sku": "S1", "start": "2026-12-06", "end": "2026-12-08", "discount": 0.2, "kind": "折扣"}
    push(conn, "promotion", [promo, {**promo, "sku": "S2"}])
    push(conn, "promotion", [{**promo, "discount": 0.3, "end": "2026-12-07"}])  # corrected
    push(conn, "promotion", [{"sku": "S2", "start": "2026-12-06", "end": "2026-12-08", "cancelled": True}])
    effects = signal_effects(conn, KEYS, TODAY, 5)
    assert effects.exog.promo[0].tolist() == pytest.approx([0, 0.3, 0.3, 0, 0])
    assert np.all(effects.exog.promo[2] == 0) and 2 not in effects.notes
    current = {(r["sku"], r["discount"], r["cancelled"]) for r in list_signals(conn, "promotion") if r["current"]}
    assert current == {("S1", 0.3, False), ("S2", 0.0, True)}
