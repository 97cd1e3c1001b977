"""signal_effects (vectorised over series) against a plain per-row, per-day reference on random signals."""

from __future__ import annotations

import itertools
import sqlite3
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.replenishment.signals import SeriesKeys, SignalPolicy, signal_effects
from tests.edge.replenishment.test_signals import TODAY, open_store, push

SKUS = {"S1": "drinks", "S2": "drinks", "Y1": "dairy", "P1": "snacks", "P2": "snacks", "A1": ""}
SUPPLIERS = ("sup1", "sup2", "")
TABLES = ("signal_promotions", "signal_supplier_delays", "signal_indicators", "signal_batches")
H = 6
_keys = itertools.count()


@pytest.fixture(scope="module")
def conn() -> Iterator[sqlite3.Connection]:
    with tempfile.TemporaryDirectory() as folder:
        c = open_store(Path(folder) / "ref.db")
        try:
            yield c
        finally:
            c.close()


def day(offset: int) -> str:
    return (TODAY + timedelta(days=offset)).isoformat()


target = st.one_of(
    st.sampled_from(sorted(SKUS)).map(lambda s: {"sku": s}),
    st.sampled_from(["drinks", "dairy", "snacks"]).map(lambda c: {"category": c}),
)
promotions = st.lists(
    st.tuples(target, st.integers(-3, 6), st.integers(0, 5), st.sampled_from([0.1, 0.2, 0.5]), st.booleans()),
    max_size=6,
)
delays = st.lists(
    st.tuples(
        st.sampled_from(["sup1", "sup2"]), st.integers(0, 9), st.integers(-5, 8), st.none() | st.integers(0, 6)
    ).map(lambda d: d if d[3] is None else (d[0], d[1], d[2], max(d[2] + d[3], -1) - d[2])),  # until >= yesterday
    max_size=4,
)
trends = st.lists(st.tuples(target, st.integers(-9, 0), st.integers(0, 100)), max_size=6)
rows = st.lists(
    st.tuples(st.sampled_from(sorted(SKUS)), st.sampled_from(["floor", "backroom"]), st.sampled_from(SUPPLIERS)),
    min_size=1,
    max_size=12,
)


def reference(
    keys: list[tuple[str, str, str]],
    promos: list[tuple[dict[str, str], int, int, float, bool]],
    delay_list: list[tuple[str, int, int, int | None]],
    trend_list: list[tuple[dict[str, str], int, int]],
    policy: SignalPolicy,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(keys)
    promo = np.zeros((n, H))
    newest: dict[tuple[str, str, int], tuple[int, float, bool]] = {}
    for t, start, length, discount, cancelled in promos:  # pushed in this order: a later one wins per target+start
        newest[(t.get("sku", ""), t.get("category", ""), start)] = (start + length, discount, cancelled)
    lead = np.zeros(n)
    current_delay: dict[tuple[str, int], tuple[int, int | None]] = {}
    for supplier, days, start, until in delay_list:
        current_delay[(supplier, start)] = (days, None if until is None else start + until)
    latest: dict[tuple[str, str], tuple[int, int]] = {}
    for t, offset, score in trend_list:
        if offset >= -policy.stale_days:
            k = (t.get("sku", ""), t.get("category", ""))
            if k not in latest or latest[k][0] <= offset:
                latest[k] = (offset, score)
    factor = np.ones((n, H))
    for i, (sku, _, supplier) in enumerate(keys):
        category = SKUS[sku]
        for h in range(H):
            for (p_sku, p_cat, start), (end, discount, cancelled) in newest.items():
                if cancelled or not start <= h <= end:
                    continue
                if (p_sku and p_sku == sku) or (p_cat and p_cat == category):
                    promo[i, h] = max(promo[i, h], discount)
        for (d_supplier, start), (days, until) in current_delay.items():
            if d_supplier == supplier and days > 0 and start <= H - 1 and (until is None or until >= 0):
                lead[i] = max(lead[i], days)
        found = latest.get((sku, "")) or (latest.get(("", category)) if category else None)
        if found is not None:
            offset, score = found
            f = 1 + policy.trend_max_lift * min(max((score - 50) / 50, 0), 1)
            for h in range(H):
                if h <= offset + policy.stale_days:
                    factor[i, h] = min(max(f, policy.lead_factor_min), policy.lead_factor_max)
    return promo, lead, factor


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=rows, promos=promotions, delay_list=delays, trend_list=trends)
def test_effects_match_the_per_row_reference(
    conn: sqlite3.Connection,
    keys: list[tuple[str, str, str]],
    promos: list[tuple[dict[str, str], int, int, float, bool]],
    delay_list: list[tuple[str, int, int, int | None]],
    trend_list: list[tuple[dict[str, str], int, int]],
) -> None:
    for table in TABLES:
        conn.execute(f"DELETE FROM {table}")
    for t, start, length, discount, cancelled in promos:
        record: dict[str, Any] = {**t, "start": day(start), "end": day(start + length), "kind": "折扣"}
        record.update({"cancelled": True} if cancelled else {"discount": discount})
        push(conn, "promotion", [record], key=f"p{next(_keys)}")
    for supplier, days, start, until in delay_list:
        delay: dict[str, Any] = {"supplier": supplier, "delay_days": days, "from": day(start)}
        if until is not None:
            delay["until"] = day(start + until)
        push(conn, "supplier_delay", [delay], key=f"d{next(_keys)}")
    for t, offset, score in trend_list:
        push(conn, "trend", [{**t, "date": day(offset), "score": score, "baseline": 50}], key=f"t{next(_keys)}")
    series = SeriesKeys(
        np.array([k[0] for k in keys], dtype=object),
        np.array([k[1] for k in keys], dtype=object),
        np.array([SKUS[k[0]] for k in keys], dtype=object),
        np.array([k[2] for k in keys], dtype=object),
    )
    policy = SignalPolicy()
    effects = signal_effects(conn, series, TODAY, H, policy)
    promo, lead, factor = reference(keys, promos, delay_list, trend_list, policy)
    np.testing.assert_allclose(effects.exog.promo, promo, atol=1e-6)
    np.testing.assert_allclose(effects.lead_time_extra_days, lead)
    np.testing.assert_allclose(effects.demand_factor, factor, atol=1e-9)
    touched = {i for i in range(len(keys)) if promo[i].any() or lead[i] or (factor[i] != 1).any()}
    assert {i for i, notes in effects.notes.items() if notes} == touched
