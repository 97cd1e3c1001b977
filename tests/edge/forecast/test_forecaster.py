"""The forecaster: one method per series by its demand pattern, calendar effects on the statistical path, the learned
model for regular series when one is given (falling back when it fails), and hourly profiles."""

from __future__ import annotations

import logging
import re
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edge.forecast import statistical as stat
from edge.forecast.features import FEATURE_NAMES, HISTORY_DAYS, SCALE_FEATURE, SCHEMA_VERSION, Exogenous
from edge.forecast.forecaster import (
    CALENDAR_REASONS,
    METHODS,
    Forecast,
    ForecastInputError,
    ForecastParams,
    calendar_effects,
    forecast,
    hourly_shares,
    method_code,
)
from edge.forecast.runtime import load_demand_model, shipped_models_dir

D = HISTORY_DAYS
H = 14
START = date(2026, 11, 16)  # a Monday; the 14 days after it hold no holiday or festival season


def run(history: np.ndarray, model: object = None, start: date = START, horizon: int = H, **params: object) -> Forecast:
    n = history.shape[0]
    return forecast(
        history,
        start,
        horizon,
        Exogenous.none(n, horizon),
        np.zeros(n, np.int8),
        model,  # type: ignore[arg-type]
        params=ForecastParams(**params),  # type: ignore[arg-type]
    )


def weekly(pattern: list[float], days: int = D) -> np.ndarray:
    """A history whose column D-1 (the day before START, a Sunday) is pattern[6]: pattern is Monday..Sunday."""
    return np.resize(np.asarray(pattern, np.float32), days)[None, :]


def mixed_histories() -> np.ndarray:
    rows = np.zeros((5, D), np.float32)
    rows[1, ::5] = 3.0  # a sale every fifth day: intermittent -> SBA
    rows[2, :40:3] = 4.0  # a sale every third day, none for the last 51 days: stopped -> TSB
    rows[3] = weekly([10, 10, 10, 10, 10, 20, 20])[0]  # every day: regular -> ETS
    rows[4, -5:] = 6.0  # new item, sold every day since five days ago: regular but young -> mean
    return rows  # row 0: never sold -> none


def test_each_series_gets_the_method_its_demand_pattern_calls_for() -> None:
    rows = mixed_histories()
    f = run(rows)
    assert [METHODS[m] for m in f.method] == ["none", "sba", "tsb", "ets", "mean"]
    assert f.intermittent.tolist() == [False, True, True, False, False]
    assert f.mean.shape == (5, H) and f.mean.dtype == np.float64
    assert f.std.shape == (5,) and f.method.dtype == np.int8


def test_intermittent_forecasts_are_flat_and_equal_the_kernels() -> None:
    rows = mixed_histories()
    f = run(rows)
    sba, _ = stat.sba(rows[1:2])
    tsb, _ = stat.tsb(rows[2:3])
    np.testing.assert_allclose(f.mean[1], np.full(H, sba[0]))
    np.testing.assert_allclose(f.mean[2], np.full(H, tsb[0]))
    assert f.mean[2, 0] < 0.02 * f.mean[1, 0]  # 51 quiet days have all but extinguished the stopped series


def test_a_series_without_sales_forecasts_zero_with_no_spread() -> None:
    f = run(np.zeros((3, D), np.float32))
    assert np.all(f.mean == 0.0)
    assert np.all(f.std == 0.0)
    assert set(f.method.tolist()) == {method_code("none")}


def test_a_series_with_little_history_still_gets_a_spread() -> None:
    one_sale = np.zeros((1, D), np.float32)
    one_sale[0, -1] = 5.0
    f = run(one_sale)
    assert f.mean[0, 0] > 0.0
    assert f.std[0] >= np.sqrt(f.mean[0, 0]) > 0.0


def test_young_regular_series_forecast_their_mean_since_the_first_sale() -> None:
    rows = np.zeros((1, D), np.float32)
    rows[0, -4:] = [2, 4, 6, 8]
    f = run(rows)
    assert METHODS[f.method[0]] == "mean"
    np.testing.assert_allclose(f.mean[0], np.full(H, 5.0))
    assert f.std[0] == pytest.approx(np.sqrt(5.0))  # the spread of 2, 4, 6, 8 around 5 is sqrt(5)


def test_regular_series_follow_their_weekly_pattern() -> None:
    history = weekly([10, 10, 10, 10, 10, 30, 30])
    # START is a Monday: days 5, 6, 12, 13 are weekends.
    expected = np.array([10, 10, 10, 10, 10, 30, 30] * 2, float)
    exact = run(history, ets_prior_units=0.0, calendar=False)
    assert METHODS[exact.method[0]] == "ets"
    np.testing.assert_allclose(exact.mean[0], expected, rtol=1e-6)
    # By default the weekday offsets shrink a little towards none (units / (units + 50)), and the history's
    # holidays (Mid-Autumn, National Day) count as rest days that sold like weekdays.
    f = run(history)
    np.testing.assert_allclose(f.mean[0], expected, rtol=0.06)


def test_seasonal_naive_can_stand_in_for_ets() -> None:
    history = weekly([1, 2, 3, 4, 5, 6, 7])
    f = run(history, regular_method="seasonal_naive")
    assert METHODS[f.method[0]] == "seasonal_naive"
    assert f.mean[0, :7].tolist() == [1, 2, 3, 4, 5, 6, 7]


def test_negative_and_missing_days_count_as_no_sale() -> None:
    history = weekly([10, 10, 10, 10, 10, 10, 10])
    dirty = history.copy()
    dirty[0, 3] = np.nan
    dirty[0, 10] = -4.0
    clean = history.copy()
    clean[0, 3] = 0.0
    clean[0, 10] = 0.0
    np.testing.assert_array_equal(run(dirty).mean, run(clean).mean)


# --- calendar ------------------------------------------------------------------------------------------------


def test_calendar_effects_name_holidays_and_festival_seasons() -> None:
    days = [date(2026, 9, 18), date(2026, 10, 1), date(2026, 10, 10), date(2027, 2, 1), date(2027, 2, 8)]
    cal = calendar_effects(days)
    reasons = [CALENDAR_REASONS[r][1] for r in cal.reasons]
    assert reasons == [
        "gift season before the festival",  # Mid-Autumn 2026 is on 25 September
        "public holiday",  # National Day
        "",  # a Saturday worked in exchange for the National Day holiday
        "the week before the Spring Festival",  # 2027's is on 6 February (estimated: no published plan yet)
        "Spring Festival holiday",
    ]
    assert cal.factors.tolist() == [1.10, 1.05, 1.0, 1.20, 0.85]
    assert cal.slots.tolist() == [4, stat.REST_SLOT, stat.WORK_SLOT, 0, stat.REST_SLOT]
    assert bool(cal.facts.estimated[3])


def test_the_statistical_path_lifts_a_holiday_week_and_not_without_the_calendar() -> None:
    history = weekly([10] * 7)
    start = date(2026, 12, 28)  # New Year's Day 2027 is day 4, the two days before it are stocking-up days
    with_calendar = run(history, start=start)
    without = run(history, start=start, calendar=False)
    np.testing.assert_allclose(without.mean[0], np.full(H, 10.0), rtol=1e-6)
    lifted = with_calendar.mean[0] / without.mean[0]
    np.testing.assert_allclose(lifted[2:5], 1.05, rtol=1e-3)
    np.testing.assert_allclose(lifted[:2], 1.0, rtol=1e-3)
    np.testing.assert_allclose(lifted[5:], 1.0, rtol=1e-3)


def test_a_holiday_in_the_history_does_not_shape_the_weekday_pattern() -> None:
    # Sales are 10 a day, twice that on the Mid-Autumn / National Day holidays of 2026. With the calendar the
    # holiday days are left out of the weekday offsets and scaled back for the level.
    start = date(2026, 11, 2)
    days = [start - timedelta(days=D - k) for k in range(D)]
    holiday = calendar_effects(days).facts.is_holiday
    history = np.where(holiday, 20.0, 10.0).astype(np.float32)[None, :]
    f = run(history, start=start)
    plain = run(history, start=start, calendar=False)
    assert np.abs(f.mean[0] - 10.0).max() < np.abs(plain.mean[0] - 10.0).max()


# --- the learned model ---------------------------------------------------------------------------------------


class ScaleModel:
    """A demand model (the DemandModel protocol) that predicts twice the series' recent level."""

    name = "scale-x2"
    kind = "onnx"
    schema_version = SCHEMA_VERSION

    def __init__(self, fail: bool = False, nan_rows: int = 0) -> None:
        self.calls: list[int] = []
        self.fail = fail
        self.nan_rows = nan_rows

    def predict(self, features: np.ndarray) -> np.ndarray:
        self.calls.append(features.shape[0])
        if self.fail:
            raise RuntimeError("model file is corrupt")
        assert features.shape[1] == len(FEATURE_NAMES)
        out = 2.0 * features[:, FEATURE_NAMES.index(SCALE_FEATURE)]
        out[: self.nan_rows] = np.nan
        return out.astype(np.float32)


def test_regular_series_use_the_model_in_one_batch_and_intermittent_ones_keep_sba() -> None:
    rows = mixed_histories()
    model = ScaleModel()
    f = run(rows, model=model)
    assert [METHODS[m] for m in f.method] == ["none", "sba", "tsb", "model", "model"]
    assert model.calls == [2 * H]  # the two regular series, one call
    recent = rows[3, -28:].mean()
    np.testing.assert_allclose(f.mean[3], np.full(H, 2 * recent), rtol=1e-6)
    assert f.std[3] >= np.sqrt(f.mean[3].mean())


@pytest.mark.parametrize("kind", ["onnx", "tflite"])
def test_the_shipped_model_forecasts_the_regular_series(kind: str) -> None:
    model = load_demand_model(shipped_models_dir(), kind)
    assert model is not None
    rows = mixed_histories()
    f = run(rows, model=model)
    assert [METHODS[m] for m in f.method] == ["none", "sba", "tsb", "model", "model"]
    assert np.isfinite(f.mean).all() and (f.mean >= 0).all()
    # A steady 10 on weekdays and 20 at weekends: the model stays in that range and sees the weekend.
    weekdays, weekend = f.mean[3, :5], f.mean[3, 5:7]  # START is a Monday
    assert 5.0 < weekdays.mean() < 20.0 and 10.0 < weekend.mean() < 40.0
    assert weekend.mean() > weekdays.mean()
    np.testing.assert_array_equal(f.mean[:3], run(rows).mean[:3])  # the others do not change


def test_a_failing_model_falls_back_to_the_statistical_methods(caplog: pytest.LogCaptureFixture) -> None:
    rows = mixed_histories()
    with caplog.at_level(logging.WARNING, logger="storebox.forecast"):
        f = run(rows, model=ScaleModel(fail=True))
    assert [METHODS[m] for m in f.method] == ["none", "sba", "tsb", "ets", "mean"]
    np.testing.assert_array_equal(f.mean, run(rows).mean)
    assert "改用统计方法" in caplog.text and "using the statistical methods" in caplog.text


def test_a_model_of_another_feature_schema_is_not_used(caplog: pytest.LogCaptureFixture) -> None:
    model = ScaleModel()
    model.schema_version = "demand-features-0"
    with caplog.at_level(logging.WARNING, logger="storebox.forecast"):
        f = run(mixed_histories(), model=model)
    assert model.calls == []
    assert METHODS[f.method[3]] == "ets"
    assert "demand-features-0" in caplog.text


def test_rows_the_model_cannot_forecast_keep_the_statistical_forecast() -> None:
    f = run(mixed_histories(), model=ScaleModel(nan_rows=1))  # the first row of series 3 is NaN
    assert [METHODS[m] for m in f.method[3:]] == ["ets", "model"]
    assert np.isfinite(f.mean).all()


def test_the_model_needs_its_history_length() -> None:
    short = mixed_histories()[:, -60:]
    model = ScaleModel()
    f = run(short, model=model)
    assert model.calls == []
    assert METHODS[f.method[3]] == "ets"


# --- inputs --------------------------------------------------------------------------------------------------


def with_mask(history: np.ndarray, stockout: np.ndarray) -> Forecast:
    n = history.shape[0]
    return forecast(history, START, H, Exogenous.none(n, H), np.zeros(n, np.int8), None, stockout=stockout)


def test_stockout_days_are_not_read_as_days_without_demand() -> None:
    # A sale of 3 every fifth day until the shelf ran empty 40 days ago: without the mask the empty days look like
    # no demand (TSB fades the forecast out); with it the series is the same as one that never ran out.
    history = np.zeros((1, D), np.float32)
    history[0, : D - 40 : 5] = 3.0
    empty = np.zeros((1, D), bool)
    empty[0, D - 40 :] = True
    plain = run(history)
    masked = with_mask(history, empty)
    assert METHODS[plain.method[0]] == "tsb" and METHODS[masked.method[0]] == "sba"
    assert masked.mean[0, 0] > 5 * plain.mean[0, 0]
    in_stock = np.zeros((1, D), np.float32)
    in_stock[0, 40::5] = history[0, : D - 40 : 5]
    np.testing.assert_allclose(masked.mean, run(in_stock).mean)


def test_stockout_days_of_a_regular_series_are_raised_to_its_mean_in_stock() -> None:
    history = np.full((1, D), 10.0, np.float32)
    history[0, -7:] = 0.0
    history[0, -8] = 4.0  # ran out that day
    empty = np.zeros((1, D), bool)
    empty[0, -8:] = True
    masked = with_mask(history, empty)
    assert METHODS[masked.method[0]] == "ets"
    assert masked.mean[0].mean() == pytest.approx(10.0, rel=0.05)
    assert run(history).mean[0].mean() < 6.0
    # No stockout day: the same forecast as without a mask.
    np.testing.assert_allclose(with_mask(history, np.zeros((1, D), bool)).mean, run(history).mean)
    with pytest.raises(ForecastInputError):
        with_mask(history, np.zeros((1, D - 1), bool))


def test_inputs_that_do_not_fit_are_refused() -> None:
    rows = mixed_histories()
    with pytest.raises(ForecastInputError):
        forecast(rows[0], START, H, Exogenous.none(1, H), np.zeros(1, np.int8), None)
    with pytest.raises(ForecastInputError):
        forecast(rows, START, 0, Exogenous.none(5, 0), np.zeros(5, np.int8), None)
    with pytest.raises(ForecastInputError):
        forecast(rows, START, H, Exogenous.none(4, H), np.zeros(5, np.int8), None)
    with pytest.raises(ForecastInputError) as refused:
        forecast(rows, START, H, Exogenous.none(5, H), np.zeros(4, np.int8), None)
    assert refused.value.message and refused.value.message_en
    with pytest.raises(ForecastInputError):
        run(rows, regular_method="holt")


def test_no_series_gives_an_empty_forecast() -> None:
    f = run(np.zeros((0, D), np.float32))
    assert f.mean.shape == (0, H) and f.std.shape == (0,) and f.method.shape == (0,)


sales = st.one_of(st.just(0.0), st.just(0.0), st.integers(1, 30).map(float), st.floats(0.0, 1e4, width=32))


@settings(max_examples=60)
@given(arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(7, 120)), elements=sales), st.integers(1, 28))
def test_any_history_gives_a_usable_forecast(history: np.ndarray, horizon: int) -> None:
    f = run(history, horizon=horizon)
    assert np.isfinite(f.mean).all() and (f.mean >= 0).all()
    assert np.isfinite(f.std).all() and (f.std >= 0).all()
    names = [METHODS[m] for m in f.method]
    sold: list[bool] = np.any(history > 0, axis=1).tolist()
    for name, flag, any_sale in zip(names, f.intermittent.tolist(), sold, strict=True):
        if not any_sale:
            assert name == "none"
        elif flag:
            assert name in ("sba", "tsb")
        else:
            assert name in ("ets", "mean")


# --- hourly profile ------------------------------------------------------------------------------------------


def test_hourly_shares_follow_the_counts_and_sum_to_one() -> None:
    counts = np.zeros((2, 24))
    counts[0, 8] = 1000.0
    counts[0, 18] = 3000.0
    shares = hourly_shares(counts, open_hours=(8, 22))
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    assert shares[0, 18] == pytest.approx(3 * shares[0, 8], rel=0.01)
    assert shares[0, 3] == 0.0  # closed and never sold at 3 in the morning
    # No data: even over the 14 opening hours.
    np.testing.assert_allclose(shares[1, 8:22], 1 / 14)
    assert shares[1, :8].sum() == 0.0 and shares[1, 22:].sum() == 0.0


def test_hourly_shares_of_a_store_open_overnight_and_all_day() -> None:
    night = hourly_shares(np.zeros((1, 24)), open_hours=(20, 4))[0]
    assert np.flatnonzero(night).tolist() == [0, 1, 2, 3, 20, 21, 22, 23]
    np.testing.assert_allclose(hourly_shares(np.zeros((1, 24)), open_hours=(0, 24)), 1 / 24)
    with pytest.raises(ForecastInputError):
        hourly_shares(np.zeros((1, 23)))
    with pytest.raises(ForecastInputError):
        hourly_shares(np.zeros((1, 24)), open_hours=(9, 9))


@given(arrays(np.float64, st.tuples(st.integers(0, 5), st.just(24)), elements=st.floats(-5, 1e6)))
def test_hourly_shares_are_a_distribution_for_any_counts(counts: np.ndarray) -> None:
    shares = hourly_shares(counts)
    assert shares.shape == counts.shape
    assert (shares >= 0).all()
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)


def test_the_example_of_the_forecasting_page_runs(capsys: pytest.CaptureFixture[str]) -> None:
    page = (Path(__file__).parents[3] / "docs" / "forecasting.md").read_text("utf-8")
    blocks = re.findall(r"```python\n(.*?)```", page, re.DOTALL)
    assert len(blocks) == 1
    exec(compile(blocks[0], "docs/forecasting.md", "exec"), {})
    assert "WAPE" in capsys.readouterr().out
