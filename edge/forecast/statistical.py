"""Statistical demand forecasts of many daily series at once: Croston, SBA, TSB, seasonal naive and ETS, the
Syntetos–Boylan demand classes, and the residual spread that safety stock needs.

Every kernel takes the daily sales of n series as one (n, D) float32 array (column D-1 = the day before the
forecast starts; values are units sold, >= 0) and loops over the rows in Numba. Each has a plain Python twin,
`<name>_reference`, that the tests compare it with. docs/forecasting.md gives the formulas.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = [
    "ADI_CUTOFF",
    "CV2_CUTOFF",
    "DEMAND_CLASSES",
    "ETS_ALPHAS",
    "ETS_PRIOR_UNITS",
    "REST_SLOT",
    "WORK_SLOT",
    "classify",
    "croston",
    "croston_reference",
    "demand_profile",
    "demand_profile_reference",
    "ets",
    "ets_reference",
    "residual_std",
    "sba",
    "sba_reference",
    "seasonal_naive",
    "seasonal_naive_reference",
    "tsb",
    "tsb_reference",
]

# Syntetos, Boylan & Croston (2005): average inter-demand interval and squared coefficient of variation of the
# demand sizes split demand into four classes.
ADI_CUTOFF = 1.32
CV2_CUTOFF = 0.49
DEMAND_CLASSES: tuple[str, ...] = ("smooth", "erratic", "intermittent", "lumpy", "none")

# ETS: the smoothing constants tried per series (the one with the least in-sample one-step squared error wins,
# the first on a tie), and the weight of the prior "no weekday effect" in units sold (see _weekday_offsets).
ETS_ALPHAS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5)
ETS_PRIOR_UNITS = 50.0
# Day slots beyond the seven weekdays: a working day (the mean of Monday..Friday) and a rest day (the mean of
# Saturday and Sunday); the calendar maps a make-up working day and a public holiday to them.
WORK_SLOT = 7
REST_SLOT = 8
_SLOTS = 9
# The first week of a series (from its first sale) sets the ETS starting level; errors count after it.
_ETS_INIT_DAYS = 7


def _as_history(history: np.ndarray) -> np.ndarray:
    h = np.ascontiguousarray(history, dtype=np.float32)
    if h.ndim != 2:
        raise ValueError(f"history must be (n, D), got shape {h.shape}")
    return h


def _per_series(value: float | np.ndarray, n: int, name: str) -> np.ndarray:
    """A smoothing constant for every series, from a scalar or an (n,) array; each in (0, 1]."""
    arr = np.ascontiguousarray(np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)))
    if arr.size and not (np.all(arr > 0.0) and np.all(arr <= 1.0)):
        raise ValueError(f"{name} must be in (0, 1]")
    return arr


# --- demand profile and classes ------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _demand_profile_kernel(
    history: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n, d = history.shape
    adi = np.full(n, np.inf)
    cv2 = np.zeros(n)
    count = np.zeros(n, np.int64)
    first = np.full(n, -1, np.int64)
    last = np.full(n, -1, np.int64)
    for i in range(n):
        total = 0.0
        for t in range(d):
            y = np.float64(history[i, t])
            if y > 0.0:
                if first[i] < 0:
                    first[i] = t
                last[i] = t
                count[i] += 1
                total += y
        k = count[i]
        if k == 0:
            continue
        mean = total / k
        ss = 0.0
        for t in range(first[i], d):
            y = np.float64(history[i, t])
            if y > 0.0:
                ss += (y - mean) * (y - mean)
        adi[i] = (d - first[i]) / k
        cv2[i] = (ss / k) / (mean * mean)
    return adi, cv2, count, first, last


def demand_profile(history: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per series: ADI (days from the first sale to the end / days with a sale; inf when none), CV² of the sizes
    of the days with a sale (population variance / mean²), number of days with a sale, first and last such day
    (column index, -1 when none)."""
    return _demand_profile_kernel(_as_history(history))


def demand_profile_reference(
    history: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Plain Python twin of demand_profile."""
    h = _as_history(history)
    n, d = h.shape
    adi = np.full(n, np.inf)
    cv2 = np.zeros(n)
    count = np.zeros(n, np.int64)
    first = np.full(n, -1, np.int64)
    last = np.full(n, -1, np.int64)
    for i in range(n):
        days = [t for t in range(d) if float(h[i, t]) > 0.0]
        if not days:
            continue
        sizes = [float(h[i, t]) for t in days]
        mean = sum(sizes) / len(sizes)
        count[i], first[i], last[i] = len(days), days[0], days[-1]
        adi[i] = (d - days[0]) / len(days)
        cv2[i] = (sum((s - mean) * (s - mean) for s in sizes) / len(sizes)) / (mean * mean)
    return adi, cv2, count, first, last


def classify(adi: np.ndarray, cv2: np.ndarray) -> np.ndarray:
    """Syntetos–Boylan class per series as an index into DEMAND_CLASSES: smooth (ADI < 1.32, CV² < 0.49),
    erratic (ADI < 1.32, CV² >= 0.49), intermittent (ADI >= 1.32, CV² < 0.49), lumpy (both above);
    "none" for a series without a sale (ADI inf)."""
    adi = np.asarray(adi, dtype=np.float64)
    cv2 = np.asarray(cv2, dtype=np.float64)
    out = (adi >= ADI_CUTOFF).astype(np.int8) * 2 + (cv2 >= CV2_CUTOFF).astype(np.int8)
    out[~np.isfinite(adi)] = DEMAND_CLASSES.index("none")
    return out


# --- Croston and SBA -----------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _croston_kernel(
    history: np.ndarray, alpha: np.ndarray, beta: np.ndarray, debias: bool
) -> tuple[np.ndarray, np.ndarray]:
    n, d = history.shape
    forecast = np.zeros(n)
    rmse = np.zeros(n)
    for i in range(n):
        a = alpha[i]
        b = beta[i]
        factor = 1.0 - b / 2.0 if debias else 1.0
        first = -1
        count = 0
        total = 0.0
        for t in range(d):
            y = np.float64(history[i, t])
            if y > 0.0:
                if first < 0:
                    first = t
                count += 1
                total += y
        if count == 0:
            continue
        # Start at the window's means (mean size, mean interval from the first sale to the end of the window),
        # not at the first sale: a window that opens on a sale would otherwise start at an interval of one day.
        size = total / count
        interval = max((d - first) / count, 1.0)
        f = factor * size / interval
        since = 0
        sse = 0.0
        errors = 0
        for t in range(first + 1, d):
            y = np.float64(history[i, t])
            since += 1
            sse += (y - f) * (y - f)
            errors += 1
            if y > 0.0:
                size += a * (y - size)
                interval += b * (since - interval)
                since = 0
                f = factor * size / interval
        forecast[i] = f
        if errors > 0:
            rmse[i] = math.sqrt(sse / errors)
    return forecast, rmse


def _croston_reference(
    history: np.ndarray, alpha: float | np.ndarray, beta: float | np.ndarray, debias: bool
) -> tuple[np.ndarray, np.ndarray]:
    h = _as_history(history)
    n, d = h.shape
    alphas = _per_series(alpha, n, "alpha")
    betas = _per_series(beta, n, "beta")
    forecast = np.zeros(n)
    rmse = np.zeros(n)
    for i in range(n):
        days = [t for t in range(d) if float(h[i, t]) > 0.0]
        if not days:
            continue
        factor = 1.0 - betas[i] / 2.0 if debias else 1.0
        size = sum(float(h[i, t]) for t in days) / len(days)
        interval = max((d - days[0]) / len(days), 1.0)
        one_step = {}  # day -> forecast made at the end of the day before
        f = factor * size / interval
        previous = days[0]
        for t in range(days[0] + 1, d):
            one_step[t] = f
            y = float(h[i, t])
            if y > 0.0:
                size += alphas[i] * (y - size)
                interval += betas[i] * ((t - previous) - interval)
                previous = t
                f = factor * size / interval
        forecast[i] = f
        if one_step:
            errors = [float(h[i, t]) - v for t, v in one_step.items()]
            rmse[i] = math.sqrt(sum(e * e for e in errors) / len(errors))
    return forecast, rmse


def croston(
    history: np.ndarray, alpha: float | np.ndarray = 0.1, beta: float | np.ndarray = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Croston's method: smoothed demand size z and smoothed interval p between sales, updated on days with a
    sale; forecast z / p per day. Starts with z = the mean sale and p = the mean interval of the window (days from
    the first sale to the end of the window / days with a sale, at least 1). Returns the forecast
    (n,) and the root mean squared one-step in-sample error (n,) after the first sale (0 when none)."""
    h = _as_history(history)
    n = h.shape[0]
    return _croston_kernel(h, _per_series(alpha, n, "alpha"), _per_series(beta, n, "beta"), False)


def croston_reference(
    history: np.ndarray, alpha: float | np.ndarray = 0.1, beta: float | np.ndarray = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Plain Python twin of croston."""
    return _croston_reference(history, alpha, beta, False)


def sba(
    history: np.ndarray, alpha: float | np.ndarray = 0.1, beta: float | np.ndarray = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Syntetos–Boylan approximation: Croston times (1 - beta / 2), which removes Croston's upward bias
    (beta = the smoothing constant of the intervals). Returns like croston."""
    h = _as_history(history)
    n = h.shape[0]
    return _croston_kernel(h, _per_series(alpha, n, "alpha"), _per_series(beta, n, "beta"), True)


def sba_reference(
    history: np.ndarray, alpha: float | np.ndarray = 0.1, beta: float | np.ndarray = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Plain Python twin of sba."""
    return _croston_reference(history, alpha, beta, True)


# --- TSB -----------------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _tsb_kernel(history: np.ndarray, alpha_d: np.ndarray, alpha_z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, d = history.shape
    forecast = np.zeros(n)
    rmse = np.zeros(n)
    for i in range(n):
        first = -1
        count = 0
        total = 0.0
        for t in range(d):
            y = np.float64(history[i, t])
            if y > 0.0:
                if first < 0:
                    first = t
                count += 1
                total += y
        if count == 0:
            continue
        prob = count / (d - first)
        size = total / count
        sse = 0.0
        errors = 0
        for t in range(first, d):
            y = np.float64(history[i, t])
            if t > first:
                f = prob * size
                sse += (y - f) * (y - f)
                errors += 1
            if y > 0.0:
                prob += alpha_d[i] * (1.0 - prob)
                size += alpha_z[i] * (y - size)
            else:
                prob += alpha_d[i] * (0.0 - prob)
        forecast[i] = prob * size
        if errors > 0:
            rmse[i] = math.sqrt(sse / errors)
    return forecast, rmse


def tsb(
    history: np.ndarray, alpha_d: float | np.ndarray = 0.1, alpha_z: float | np.ndarray = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Teunter–Syntetos–Babai: the probability of a sale d is smoothed every day (towards 1 on a day with a sale,
    towards 0 on a day without), the size z on days with a sale; forecast d * z. So a series whose sales stop
    decays by (1 - alpha_d) a day instead of staying flat as Croston does. Starts at the first sale with d = the
    share of days with a sale from then on and z = the mean size. Returns like croston."""
    h = _as_history(history)
    n = h.shape[0]
    return _tsb_kernel(h, _per_series(alpha_d, n, "alpha_d"), _per_series(alpha_z, n, "alpha_z"))


def tsb_reference(
    history: np.ndarray, alpha_d: float | np.ndarray = 0.1, alpha_z: float | np.ndarray = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Plain Python twin of tsb."""
    h = _as_history(history)
    n, d = h.shape
    ad = _per_series(alpha_d, n, "alpha_d")
    az = _per_series(alpha_z, n, "alpha_z")
    forecast = np.zeros(n)
    rmse = np.zeros(n)
    for i in range(n):
        row = [float(v) for v in h[i]]
        days = [t for t, y in enumerate(row) if y > 0.0]
        if not days:
            continue
        first = days[0]
        prob = len(days) / (d - first)
        size = sum(row[t] for t in days) / len(days)
        errors: list[float] = []
        for t in range(first, d):
            if t > first:
                errors.append(row[t] - prob * size)
            hit = 1.0 if row[t] > 0.0 else 0.0
            prob += ad[i] * (hit - prob)
            if hit:
                size += az[i] * (row[t] - size)
        forecast[i] = prob * size
        if errors:
            rmse[i] = math.sqrt(sum(e * e for e in errors) / len(errors))
    return forecast, rmse


# --- seasonal naive ------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _seasonal_naive_kernel(history: np.ndarray, horizon: int, season: int) -> tuple[np.ndarray, np.ndarray]:
    n, d = history.shape
    forecast = np.zeros((n, horizon))
    rmse = np.zeros(n)
    for i in range(n):
        for h in range(horizon):
            forecast[i, h] = np.float64(history[i, d - season + h % season])
        sse = 0.0
        for t in range(season, d):
            e = np.float64(history[i, t]) - np.float64(history[i, t - season])
            sse += e * e
        if d > season:
            rmse[i] = math.sqrt(sse / (d - season))
    return forecast, rmse


def seasonal_naive(history: np.ndarray, horizon: int, season: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Seasonal naive: each future day repeats the same weekday of the last week (for season 7). Returns the
    forecast (n, horizon) and the RMSE of y[t] - y[t - season] in the history (n,)."""
    h = _as_history(history)
    if season < 1 or h.shape[1] < season:
        raise ValueError(f"seasonal naive needs at least {season} days of history")
    return _seasonal_naive_kernel(h, int(horizon), int(season))


def seasonal_naive_reference(history: np.ndarray, horizon: int, season: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Plain NumPy twin of seasonal_naive."""
    h = _as_history(history).astype(np.float64)
    d = h.shape[1]
    last = h[:, d - season :]
    forecast = last[:, np.arange(horizon) % season]
    e = h[:, season:] - h[:, :-season]
    rmse = np.sqrt((e * e).mean(axis=1)) if d > season else np.zeros(h.shape[0])
    return forecast, rmse


# --- ETS with weekday offsets --------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _weekday_offsets(row: np.ndarray, first: int, slots: np.ndarray, factors: np.ndarray, prior: float) -> np.ndarray:
    """Weekday offsets of one series in units a day: mean sales of each weekday over ordinary days (weekday slot,
    calendar factor 1) from the first sale on, minus the mean of the weekday means, shrunk towards 0 with weight
    units / (units + prior); slot 7 = mean of Monday..Friday, slot 8 = mean of Saturday and Sunday."""
    sums = np.zeros(7)
    counts = np.zeros(7)
    for t in range(first, row.shape[0]):
        s = slots[t]
        if s < 7 and factors[t] == 1.0:
            sums[s] += np.float64(row[t])
            counts[s] += 1.0
    offsets = np.zeros(_SLOTS)
    units = 0.0
    level = 0.0
    seen = 0
    for s in range(7):
        units += sums[s]
        if counts[s] > 0.0:
            level += sums[s] / counts[s]
            seen += 1
    if seen > 0 and units > 0.0:
        level /= seen
        weight = units / (units + prior)
        for s in range(7):
            if counts[s] > 0.0:
                offsets[s] = weight * (sums[s] / counts[s] - level)
    offsets[WORK_SLOT] = (offsets[0] + offsets[1] + offsets[2] + offsets[3] + offsets[4]) / 5.0
    offsets[REST_SLOT] = (offsets[5] + offsets[6]) / 2.0
    return offsets


@njit(cache=True, nogil=True)
def _ets_kernel(
    history: np.ndarray,
    hist_slots: np.ndarray,
    hist_factors: np.ndarray,
    fut_slots: np.ndarray,
    fut_factors: np.ndarray,
    alphas: np.ndarray,
    prior: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, d = history.shape
    horizon = fut_slots.shape[0]
    forecast = np.zeros((n, horizon))
    rmse = np.zeros(n)
    chosen = np.zeros(n)
    adjusted = np.zeros(d)
    for i in range(n):
        row = history[i]
        first = -1
        for t in range(d):
            if np.float64(row[t]) > 0.0:
                first = t
                break
        if first < 0:
            continue
        offsets = _weekday_offsets(row, first, hist_slots, hist_factors, prior)
        for t in range(d):
            adjusted[t] = np.float64(row[t]) / hist_factors[t] - offsets[hist_slots[t]]
        # Starting level: the mean adjusted sales of the first week from the first sale.
        start = min(first + _ETS_INIT_DAYS, d)
        level0 = 0.0
        for t in range(first, start):
            level0 += adjusted[t]
        level0 /= start - first
        best_sse = np.inf
        best_level = level0
        for k in range(alphas.shape[0]):
            a = alphas[k]
            level = level0
            sse = 0.0
            for t in range(start, d):
                e = np.float64(row[t]) - hist_factors[t] * max(level + offsets[hist_slots[t]], 0.0)
                sse += e * e
                level += a * (adjusted[t] - level)
            if sse < best_sse:
                best_sse = sse
                best_level = level
                chosen[i] = a
        if d > start:
            rmse[i] = math.sqrt(best_sse / (d - start))
        for h in range(horizon):
            forecast[i, h] = max(best_level + offsets[fut_slots[h]], 0.0) * fut_factors[h]
    return forecast, rmse, chosen


def _ets_days(
    d: int,
    horizon: int,
    hist_slots: np.ndarray | None,
    hist_factors: np.ndarray | None,
    fut_slots: np.ndarray | None,
    fut_factors: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    # Without a calendar the slot is the position in the week counted from the first history column: history
    # column t and future day h (column d + h) share a slot when they are whole weeks apart.
    hs = np.arange(d, dtype=np.int64) % 7 if hist_slots is None else np.asarray(hist_slots, dtype=np.int64)
    fs = (d + np.arange(horizon, dtype=np.int64)) % 7 if fut_slots is None else np.asarray(fut_slots, dtype=np.int64)
    hf = np.ones(d) if hist_factors is None else np.asarray(hist_factors, dtype=np.float64)
    ff = np.ones(horizon) if fut_factors is None else np.asarray(fut_factors, dtype=np.float64)
    if hs.shape != (d,) or hf.shape != (d,) or fs.shape != (horizon,) or ff.shape != (horizon,):
        raise ValueError("calendar slots and factors must have one value per history day and per future day")
    if (hs.size and (hs.min() < 0 or hs.max() >= _SLOTS)) or (fs.size and (fs.min() < 0 or fs.max() >= _SLOTS)):
        raise ValueError(f"day slots must be in 0..{_SLOTS - 1}")
    if not (np.all(hf > 0.0) and np.all(ff > 0.0) and np.all(np.isfinite(hf)) and np.all(np.isfinite(ff))):
        raise ValueError("calendar factors must be finite and > 0")
    return (
        np.ascontiguousarray(hs),
        np.ascontiguousarray(hf),
        np.ascontiguousarray(fs),
        np.ascontiguousarray(ff),
    )


def ets(
    history: np.ndarray,
    horizon: int,
    *,
    hist_slots: np.ndarray | None = None,
    hist_factors: np.ndarray | None = None,
    fut_slots: np.ndarray | None = None,
    fut_factors: np.ndarray | None = None,
    alphas: tuple[float, ...] | np.ndarray = ETS_ALPHAS,
    prior_units: float = ETS_PRIOR_UNITS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exponential smoothing with additive errors and a weekly pattern: sales y[t] = factor[t] × (level +
    offset(slot[t])) + error. The weekday offsets come from the whole history (shrunk towards 0 for series with
    few units); the level follows simple exponential smoothing of y[t] / factor[t] - offset(slot[t]), starting
    from the mean of the first week after the first sale, with the alpha of the grid that gives the least
    in-sample one-step squared error per series (the smaller alpha on a tie). Forecast of day h:
    fut_factor[h] × max(level + offset(fut_slot[h]), 0).

    Slots are weekdays (0 = Monday) or WORK_SLOT / REST_SLOT, factors calendar effects (1 on an ordinary day;
    days with another factor or slot do not shape the weekday offsets). Without them, slots are positions in the
    week and factors 1. Returns the forecast (n, horizon), the one-step RMSE (n,) and the chosen alpha (n,)."""
    h = _as_history(history)
    days = _ets_days(h.shape[1], int(horizon), hist_slots, hist_factors, fut_slots, fut_factors)
    grid = np.ascontiguousarray(alphas, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0 or not (np.all(grid > 0.0) and np.all(grid <= 1.0)):
        raise ValueError("alphas must be a non-empty list of values in (0, 1]")
    return _ets_kernel(h, *days, grid, float(prior_units))


def ets_reference(
    history: np.ndarray,
    horizon: int,
    *,
    hist_slots: np.ndarray | None = None,
    hist_factors: np.ndarray | None = None,
    fut_slots: np.ndarray | None = None,
    fut_factors: np.ndarray | None = None,
    alphas: tuple[float, ...] | np.ndarray = ETS_ALPHAS,
    prior_units: float = ETS_PRIOR_UNITS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plain Python twin of ets."""
    h = _as_history(history)
    n, d = h.shape
    hs, hf, fs, ff = _ets_days(d, int(horizon), hist_slots, hist_factors, fut_slots, fut_factors)
    forecast = np.zeros((n, int(horizon)))
    rmse = np.zeros(n)
    chosen = np.zeros(n)
    for i in range(n):
        row = [float(v) for v in h[i]]
        sold = [t for t, y in enumerate(row) if y > 0.0]
        if not sold:
            continue
        first = sold[0]
        by_day: dict[int, list[float]] = {}
        for t in range(first, d):
            if hs[t] < 7 and hf[t] == 1.0:
                by_day.setdefault(int(hs[t]), []).append(row[t])
        offsets = [0.0] * _SLOTS
        means = {s: sum(v) / len(v) for s, v in sorted(by_day.items())}
        units = sum(sum(v) for _, v in sorted(by_day.items()))
        if means and units > 0.0:
            level_all = sum(means.values()) / len(means)
            weight = units / (units + prior_units)
            for s, m in means.items():
                offsets[s] = weight * (m - level_all)
        offsets[WORK_SLOT] = (offsets[0] + offsets[1] + offsets[2] + offsets[3] + offsets[4]) / 5.0
        offsets[REST_SLOT] = (offsets[5] + offsets[6]) / 2.0
        adjusted = [row[t] / float(hf[t]) - offsets[int(hs[t])] for t in range(d)]
        start = min(first + _ETS_INIT_DAYS, d)
        level0 = sum(adjusted[first:start]) / (start - first)
        best: tuple[float, float, float] | None = None  # (sse, level, alpha)
        for a in np.asarray(alphas, dtype=np.float64):
            level, sse = level0, 0.0
            for t in range(start, d):
                e = row[t] - float(hf[t]) * max(level + offsets[int(hs[t])], 0.0)
                sse += e * e
                level += float(a) * (adjusted[t] - level)
            if best is None or sse < best[0]:
                best = (sse, level, float(a))
        assert best is not None
        chosen[i] = best[2]
        if d > start:
            rmse[i] = math.sqrt(best[0] / (d - start))
        for k in range(int(horizon)):
            forecast[i, k] = max(best[1] + offsets[int(fs[k])], 0.0) * float(ff[k])
    return forecast, rmse, chosen


# --- residual spread -----------------------------------------------------------------------------------------


def residual_std(rmse: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Standard deviation of one day's demand for safety stock: the one-step in-sample RMSE of the method used,
    never below sqrt(level) (the spread of Poisson demand with that mean), so a series with little history
    still gets a safety stock; 0 only when the expected demand is 0 and the history shows no error."""
    r = np.nan_to_num(np.asarray(rmse, dtype=np.float64), nan=0.0, posinf=0.0)
    m = np.nan_to_num(np.asarray(level, dtype=np.float64), nan=0.0, posinf=0.0)
    return np.maximum(r, np.sqrt(np.maximum(m, 0.0)))
