"""Feature rows of the demand model: the Numba kernel against its NumPy twin, and what the columns mean."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.forecast.features import (
    FEATURE_NAMES,
    GROUPS,
    HISTORY_DAYS,
    SCHEMA_VERSION,
    Exogenous,
    build_features,
    build_features_reference,
    group_of,
)

COL = {name: k for k, name in enumerate(FEATURE_NAMES)}


def test_schema_constants() -> None:
    assert SCHEMA_VERSION == "demand-features-1"
    assert HISTORY_DAYS <= 91
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert [f"group_{g}" for g in GROUPS] == [n for n in FEATURE_NAMES if n.startswith("group_")]


@pytest.mark.parametrize(
    ("category", "storage", "group"),
    [
        ("饮料", "ambient", "drinks"),
        ("冰淇淋", "frozen", "frozen"),
        ("速冻水饺", "frozen", "frozen"),
        ("熟食", "chilled", "hot_food"),
        ("Dairy", "chilled", "chilled_fresh"),
        ("休闲零食", "ambient", "snacks"),
        ("日用百货", "ambient", "household"),
        (None, "frozen", "frozen"),
        ("", "chilled", "chilled_fresh"),
        ("杂项", "ambient", "ambient_food"),
    ],
)
def test_group_of_maps_category_then_storage_class(category: str | None, storage: str, group: str) -> None:
    assert GROUPS[group_of(category, storage)] == group


def _inputs(seed: int, n: int, horizon: int) -> tuple[np.ndarray, Exogenous, np.ndarray]:
    rng = np.random.default_rng(seed)
    level = rng.gamma(0.5, 5.0, (n, 1))
    history = rng.poisson(level, (n, HISTORY_DAYS)).astype(np.float32)
    promo = np.where(rng.random((n, horizon)) < 0.2, rng.choice([0.1, 0.3], (n, horizon)), 0.0).astype(np.float32)
    temp = np.where(rng.random((n, horizon)) < 0.3, np.nan, rng.normal(20, 10, (n, horizon))).astype(np.float32)
    rain = np.where(rng.random((n, horizon)) < 0.3, np.nan, rng.exponential(5, (n, horizon))).astype(np.float32)
    groups = rng.integers(0, len(GROUPS), n).astype(np.int8)
    return history, Exogenous(promo, temp, rain), groups


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 10_000),
    st.integers(1, 12),
    st.integers(1, 28),
    st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 12, 31)),
    st.booleans(),
)
def test_kernel_matches_numpy_reference(seed: int, n: int, horizon: int, start: date, dirty: bool) -> None:
    history, exog, groups = _inputs(seed, n, horizon)
    if dirty:  # returns (negative net sales) and gaps count as no sale in both
        history[0, ::5] = -2.0
        history[-1, ::7] = np.nan
        exog.promo[0, 0] = np.nan
    got = build_features(history, start, horizon, exog, groups)
    want = build_features_reference(history, start, horizon, exog, groups)
    assert got.shape == (n * horizon, len(FEATURE_NAMES)) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_rows_are_series_major_and_carry_promo_weather_and_day() -> None:
    n, horizon = 3, 14
    history = np.ones((n, HISTORY_DAYS), np.float32)
    exog = Exogenous.none(n, horizon)
    exog.promo[1, 3] = 0.3
    exog.temp_c[2, 5] = 35.0
    x = build_features(history, date(2026, 12, 5), horizon, exog, np.array([0, 2, 6], np.int8))
    assert x[1 * horizon + 3, COL["promo"]] == pytest.approx(0.3)
    assert x[1 * horizon + 4, COL["promo_after"]] == pytest.approx(0.3)
    assert x[1 * horizon + 2, COL["promo_after"]] == 0.0
    assert x[2 * horizon + 5, COL["temp_hot"]] == pytest.approx(1.0)
    assert x[2 * horizon + 5, COL["temp_known"]] == 1.0 and x[2 * horizon + 4, COL["temp_known"]] == 0.0
    assert x[1 * horizon, COL["group_drinks"]] == 1.0 and x[2 * horizon, COL["group_hot_food"]] == 1.0
    # 2026-12-05 is a Saturday: dow_5 on day 0, dow_0 (Monday) on day 2.
    assert x[0, COL["dow_5"]] == 1.0 and x[2, COL["dow_0"]] == 1.0
    assert x[horizon - 1, COL["horizon"]] == pytest.approx(13 / 28)
    # Day 27 of December 2026 onwards reaches the estimated 2027 New Year holiday (day 27 = 2027-01-01 not in 14).
    assert x[:horizon, COL["holiday"]].sum() == 0


def test_scale_and_weekday_mean_follow_the_history() -> None:
    # Sells 10 on Saturdays and 1 on other days; the day before 2026-12-05 (a Saturday) is the last column.
    days = np.arange(HISTORY_DAYS)
    weekday = (date(2026, 12, 5).toordinal() - HISTORY_DAYS + days) % 7  # date.toordinal() % 7: Monday = 1
    saturday = weekday == 6
    history = np.where(saturday, 10.0, 1.0).astype(np.float32)[None, :]
    x = build_features(history, date(2026, 12, 5), 7, Exogenous.none(1, 7), np.zeros(1, np.int8))
    scale = x[0, COL["scale"]]
    assert scale == pytest.approx((4 * 10 + 24) / 28, rel=1e-5)
    assert x[0, COL["same_weekday_mean"]] * scale == pytest.approx(10.0)  # the start is a Saturday
    assert x[1, COL["same_weekday_mean"]] * scale == pytest.approx(1.0)
    assert x[0, COL["same_weekday_last"]] * scale == pytest.approx(10.0)


def test_series_without_sales_has_the_floor_scale() -> None:
    x = build_features(
        np.zeros((1, HISTORY_DAYS), np.float32), date(2026, 1, 1), 2, Exogenous.none(1, 2), np.zeros(1, np.int8)
    )
    assert x[0, COL["scale"]] == pytest.approx(0.05)
    assert x[0, COL["days_since_sale"]] == 1.0
    assert np.isfinite(x).all()


def test_bad_shapes_are_refused() -> None:
    exog = Exogenous.none(2, 7)
    groups = np.zeros(2, np.int8)
    with pytest.raises(ValueError, match="history"):
        build_features(np.zeros((2, 30), np.float32), date(2026, 1, 1), 7, exog, groups)
    with pytest.raises(ValueError, match="exog"):
        build_features(np.zeros((2, HISTORY_DAYS), np.float32), date(2026, 1, 1), 5, exog, groups)
    with pytest.raises(ValueError, match="horizon"):
        build_features(np.zeros((2, HISTORY_DAYS), np.float32), date(2026, 1, 1), 0, Exogenous.none(2, 0), groups)
