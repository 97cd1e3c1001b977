"""Statistical forecasts: known answers worked by hand, and every Numba kernel against its plain Python twin."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edge.forecast import statistical as stat

# Hand-worked Croston series: sales on days 1, 4 and 6.
HAND = np.array([[0, 3, 0, 0, 6, 0, 2]], np.float32)


def test_croston_on_a_hand_computed_series() -> None:
    # alpha = beta = 0.5. Start at the window's means: z = 11/3 (three sales), p = (7 - 1) / 3 = 2 (days from the
    # first sale to the end of the window per sale). Day 4 (interval 3): z = 29/6, p = 2.5. Day 6 (interval 2):
    # z = 41/12, p = 2.25. Forecast 41/12 / 2.25 = 41/27.
    forecast, rmse = stat.croston(HAND, 0.5, 0.5)
    assert forecast[0] == pytest.approx(41 / 27)
    # One-step errors from day 2: forecast 11/6 on days 2..4, then 29/15 on days 5 and 6.
    a, b = 11 / 6, 29 / 15
    assert rmse[0] == pytest.approx(np.sqrt((a**2 + a**2 + (6 - a) ** 2 + b**2 + (2 - b) ** 2) / 5))


def test_croston_starts_from_the_mean_interval_not_the_first_sale() -> None:
    # Two sales on the window's first days, then nothing for 100 days: the first sale's position would make the
    # interval one day and the forecast about one a day; the window says 2 sales in 111 days.
    history = np.zeros((1, 111), np.float32)
    history[0, 0] = 2.0
    history[0, 3] = 1.0
    forecast, _ = stat.sba(history)
    assert forecast[0] < 3.0 / 111 * 1.5


def test_sba_is_croston_times_one_minus_half_beta() -> None:
    forecast, _ = stat.sba(HAND, 0.5, 0.5)
    assert forecast[0] == pytest.approx(0.75 * 41 / 27)
    croston, _ = stat.croston(HAND, 0.1, 0.2)
    assert stat.sba(HAND, 0.1, 0.2)[0][0] == pytest.approx(0.9 * croston[0])


def test_croston_takes_one_smoothing_constant_per_series() -> None:
    two = np.vstack([HAND, HAND])
    forecast, _ = stat.croston(two, np.array([0.5, 0.1]), np.array([0.5, 0.1]))
    assert forecast[0] == pytest.approx(41 / 27)
    assert forecast[1] == pytest.approx(stat.croston(HAND, 0.1, 0.1)[0][0])
    with pytest.raises(ValueError):
        stat.croston(HAND, 0.0, 0.1)


def test_tsb_on_a_hand_computed_series() -> None:
    # First sale day 0: d = 1/3 (one day with a sale out of three), z = 2. Day 0 (sale): d = 1/3 + 0.1 * 2/3 = 0.4.
    # Days 1 and 2 (no sale): d = 0.36, then 0.324. Forecast 0.324 * 2.
    forecast, _ = stat.tsb(np.array([[2, 0, 0]], np.float32))
    assert forecast[0] == pytest.approx(0.648)


def test_tsb_decays_after_demand_stops_while_sba_barely_moves() -> None:
    sold = np.tile(np.array([4, 0, 0], np.float32), 20)  # 60 days, a sale of 4 every third day
    forecasts = []
    sba_forecasts = []
    for quiet in range(0, 31, 5):
        history = np.concatenate([sold, np.zeros(quiet, np.float32)])[None, :]
        forecasts.append(stat.tsb(history)[0][0])
        sba_forecasts.append(stat.sba(history)[0][0])
    # Every quiet day multiplies the TSB forecast by 1 - alpha_d = 0.9.
    for before, after in itertools.pairwise(forecasts):
        assert after == pytest.approx(before * 0.9**5, rel=0.01)
    assert forecasts[-1] < 0.05 * forecasts[0]
    # SBA only updates on sales: quiet days move it through its start (the mean interval) alone, slowly.
    assert sba_forecasts[-1] > 0.8 * sba_forecasts[0]


def test_series_without_a_sale_forecasts_zero() -> None:
    empty = np.zeros((2, 30), np.float32)
    for method in (stat.croston, stat.sba, stat.tsb):
        forecast, rmse = method(empty)
        assert np.all(forecast == 0.0)
        assert np.all(rmse == 0.0)
    forecast, rmse, _ = stat.ets(empty, 7)
    assert np.all(forecast == 0.0)


def test_seasonal_naive_repeats_the_last_week() -> None:
    history = np.arange(21, dtype=np.float32)[None, :]
    forecast, rmse = stat.seasonal_naive(history, 10)
    assert forecast[0].tolist() == [14, 15, 16, 17, 18, 19, 20, 14, 15, 16]
    assert rmse[0] == pytest.approx(7.0)  # every day is 7 more than a week before
    with pytest.raises(ValueError):
        stat.seasonal_naive(history[:, :5], 3)


def test_ets_reproduces_a_pure_weekly_pattern() -> None:
    pattern = np.array([10, 20, 30, 40, 50, 80, 0], np.float32)
    history = np.tile(pattern, 13)[None, :]  # 91 days, whole weeks: the next day is the pattern's first day
    forecast, rmse, _ = stat.ets(history, 14, prior_units=0.0)
    np.testing.assert_allclose(forecast[0], np.tile(pattern, 2), atol=1e-9)
    assert rmse[0] == pytest.approx(0.0, abs=1e-9)
    # The default prior shrinks the weekday offsets of a series by units / (units + 50): 2990 units, about 2 %.
    forecast, _, _ = stat.ets(history, 7)
    np.testing.assert_allclose(forecast[0], pattern, rtol=0.05, atol=1.0)


def test_ets_follows_a_level_shift() -> None:
    history = np.concatenate([np.full(60, 10.0), np.full(31, 20.0)]).astype(np.float32)[None, :]
    forecast, _, alpha = stat.ets(history, 7)
    assert forecast[0] == pytest.approx(np.full(7, 20.0), rel=0.05)
    assert alpha[0] == max(stat.ETS_ALPHAS)  # a step is followed fastest by the largest alpha


def test_ets_calendar_factors_lift_a_holiday_and_leave_history_holidays_out() -> None:
    history = np.full((1, 28), 10.0, np.float32)
    history[0, 20] = 30.0  # a holiday in the history sold three times as much ...
    hist_factors = np.ones(28)
    hist_factors[20] = 3.0  # ... which its calendar factor explains, so it does not move the level
    fut_factors = np.array([1.0, 1.5, 1.0])
    slots = np.arange(28) % 7
    forecast, rmse, _ = stat.ets(
        history,
        3,
        hist_slots=slots,
        hist_factors=hist_factors,
        fut_slots=np.array([0, stat.REST_SLOT, stat.WORK_SLOT]),
        fut_factors=fut_factors,
    )
    np.testing.assert_allclose(forecast[0], [10.0, 15.0, 10.0])
    assert rmse[0] == pytest.approx(0.0)
    with pytest.raises(ValueError):
        stat.ets(history, 3, hist_factors=np.zeros(28))


def test_demand_classes_by_adi_and_cv2() -> None:
    history = np.array(
        [
            [5, 5, 5, 5, 5, 5, 5, 5],  # a sale every day, same size: smooth
            [1, 9, 1, 9, 1, 9, 1, 9],  # every day, sizes vary a lot: erratic
            [0, 4, 0, 4, 0, 4, 0, 4],  # every other day, same size: intermittent
            [0, 1, 0, 9, 0, 1, 0, 9],  # every other day, sizes vary: lumpy
            [0, 0, 0, 0, 0, 0, 0, 0],  # no sale: none
            [0, 0, 0, 0, 0, 0, 3, 3],  # new item selling every day since day 6: smooth
        ],
        np.float32,
    )
    adi, cv2, count, first, last = stat.demand_profile(history)
    assert adi.tolist()[:4] == [1.0, 1.0, 1.75, 1.75]  # from the first sale: 7 days, 4 sales
    assert adi[5] == 1.0
    assert np.isinf(adi[4])
    assert cv2[1] == pytest.approx(16 / 25)
    assert count.tolist() == [8, 8, 4, 4, 0, 2]
    assert first.tolist() == [0, 0, 1, 1, -1, 6]
    assert last.tolist() == [7, 7, 7, 7, -1, 7]
    names = [stat.DEMAND_CLASSES[c] for c in stat.classify(adi, cv2)]
    assert names == ["smooth", "erratic", "intermittent", "lumpy", "none", "smooth"]


def test_residual_std_has_a_poisson_floor() -> None:
    std = stat.residual_std(np.array([0.0, 5.0, 0.0, np.nan]), np.array([4.0, 4.0, 0.0, 1.0]))
    assert std.tolist() == [2.0, 5.0, 0.0, 1.0]


# --- kernels against their references ------------------------------------------------------------------------

sales = st.one_of(st.just(0.0), st.just(0.0), st.integers(1, 20).map(float), st.floats(0.0, 500.0, width=32))


def histories(min_days: int = 1, max_days: int = 40) -> st.SearchStrategy[np.ndarray]:
    shape = st.tuples(st.integers(1, 4), st.integers(min_days, max_days))
    return arrays(np.float32, shape, elements=sales)


alphas = st.floats(0.01, 1.0)


@settings(max_examples=150)
@given(histories(), alphas, alphas)
def test_croston_and_sba_kernels_match_their_references(history: np.ndarray, alpha: float, beta: float) -> None:
    for kernel, reference in ((stat.croston, stat.croston_reference), (stat.sba, stat.sba_reference)):
        got = kernel(history, alpha, beta)
        want = reference(history, alpha, beta)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


@settings(max_examples=150)
@given(histories(), alphas, alphas)
def test_tsb_kernel_matches_its_reference(history: np.ndarray, alpha_d: float, alpha_z: float) -> None:
    got = stat.tsb(history, alpha_d, alpha_z)
    want = stat.tsb_reference(history, alpha_d, alpha_z)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


@settings(max_examples=100)
@given(histories(7, 40), st.integers(1, 20))
def test_seasonal_naive_kernel_matches_its_reference(history: np.ndarray, horizon: int) -> None:
    got = stat.seasonal_naive(history, horizon)
    want = stat.seasonal_naive_reference(history, horizon)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-9)  # NumPy sums pairwise, the kernel in order


@settings(max_examples=100)
@given(histories(1, 40), st.data())
def test_demand_profile_kernel_matches_its_reference(history: np.ndarray, data: st.DataObject) -> None:
    got = stat.demand_profile(history)
    want = stat.demand_profile_reference(history)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)


@settings(max_examples=150)
@given(histories(1, 40), st.integers(1, 15), st.data())
def test_ets_kernel_matches_its_reference(history: np.ndarray, horizon: int, data: st.DataObject) -> None:
    d = history.shape[1]
    kwargs: dict[str, object] = {}
    if data.draw(st.booleans(), label="with calendar"):
        slot = st.integers(0, stat.REST_SLOT)
        factor = st.sampled_from([1.0, 1.0, 1.0, 0.9, 1.1, 1.25])
        kwargs = {
            "hist_slots": np.array(data.draw(st.lists(slot, min_size=d, max_size=d))),
            "hist_factors": np.array(data.draw(st.lists(factor, min_size=d, max_size=d))),
            "fut_slots": np.array(data.draw(st.lists(slot, min_size=horizon, max_size=horizon))),
            "fut_factors": np.array(data.draw(st.lists(factor, min_size=horizon, max_size=horizon))),
        }
    grid = tuple(data.draw(st.lists(alphas, min_size=1, max_size=4), label="alphas"))
    prior = data.draw(st.sampled_from([0.0, 5.0, stat.ETS_PRIOR_UNITS]), label="prior")
    got = stat.ets(history, horizon, alphas=grid, prior_units=prior, **kwargs)  # type: ignore[arg-type]
    want = stat.ets_reference(history, horizon, alphas=grid, prior_units=prior, **kwargs)  # type: ignore[arg-type]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-9)
