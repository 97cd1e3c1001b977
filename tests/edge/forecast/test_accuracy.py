"""WAPE and MASE on hand-computed values, and the accuracy report per forecast method."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge.forecast.accuracy import accuracy_by_method, mase, mase_per_series, method_names, wape
from edge.forecast.forecaster import METHODS, method_code


def test_wape_is_the_share_of_units_sold_the_forecast_missed() -> None:
    # |1-2| + |2-2| + |3-1| = 3 missed of 6 sold.
    assert wape(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 1.0])) == pytest.approx(0.5)
    # Over all elements of a 2-D array: 4 missed of 20 sold.
    assert wape(np.array([[10, 0], [5, 5]]), np.array([[8, 1], [5, 4]])) == pytest.approx(4 / 20)
    assert wape(np.array([5.0]), np.array([5.0])) == 0.0


def test_wape_of_nothing_sold_is_nan() -> None:
    assert math.isnan(wape(np.zeros(3), np.ones(3)))


def test_mase_divides_by_the_seasonal_naive_error_in_the_history() -> None:
    # Every day is 1 more than a week before: seasonal naive in-sample error 1. Forecast errors 2 and 2.
    insample = np.array([1, 2, 3, 4, 5, 6, 7, 2, 3, 4, 5, 6, 7, 8], float)
    assert mase(np.array([3.0, 3.0]), np.array([1.0, 5.0]), insample) == pytest.approx(2.0)
    # Season 1: |3-1| and |2-3| average 1.5; error 3.
    assert mase(np.array([4.0]), np.array([1.0]), np.array([1.0, 3.0, 2.0]), season=1) == pytest.approx(2.0)


def test_mase_per_series_and_its_mean_skip_series_without_a_scale() -> None:
    insample = np.array([[1, 3, 2], [0, 0, 0], [2, 2, 4]], float)  # scales 1.5, 0 and 1
    actual = np.array([[4.0], [1.0], [3.0]])
    forecast = np.array([[1.0], [0.0], [2.0]])
    per = mase_per_series(actual, forecast, insample, season=1)
    assert per[0] == pytest.approx(2.0)
    assert math.isnan(per[1])
    assert per[2] == pytest.approx(1.0)
    assert mase(actual, forecast, insample, season=1) == pytest.approx(1.5)
    assert math.isnan(mase(actual[1:2], forecast[1:2], insample[1:2], season=1))
    assert np.isnan(mase_per_series(actual, forecast, insample, season=3)).all()  # history not longer than a season


def test_shapes_that_do_not_fit_are_refused() -> None:
    with pytest.raises(ValueError):
        wape(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError):
        mase_per_series(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((3, 10)))
    with pytest.raises(ValueError):
        mase(np.zeros(3), np.zeros(3), np.zeros(10), season=0)


def test_method_names_of_codes() -> None:
    codes = np.array([method_code("sba"), method_code("model"), method_code("none")], np.int8)
    assert method_names(codes).tolist() == ["sba", "model", "none"]
    assert len(METHODS) == 8


def test_accuracy_by_method_reports_each_method_used_and_all() -> None:
    insample = np.array([[1, 3, 2], [2, 2, 4], [0, 0, 1]], float)
    actual = np.array([[4.0, 0.0], [3.0, 3.0], [1.0, 1.0]])
    forecast = np.array([[1.0, 0.0], [2.0, 3.0], [1.0, 0.0]])
    codes = np.array([method_code("ets"), method_code("ets"), method_code("sba")])
    report = accuracy_by_method(actual, forecast, insample, codes, season=1)
    assert [(r.method, r.series) for r in report] == [("sba", 1), ("ets", 2), ("all", 3)]
    ets = report[1]
    assert ets.wape == pytest.approx((3 + 1) / 10)
    assert ets.mase == pytest.approx((1.5 / 1.5 + 0.5 / 1.0) / 2)
    assert report[2].wape == pytest.approx(5 / 12)
