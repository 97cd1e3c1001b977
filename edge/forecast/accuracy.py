"""Forecast accuracy: WAPE and MASE over arrays of series, and a report per forecast method.

WAPE (weighted absolute percentage error) = sum |actual - forecast| / sum |actual|: the share of the units sold
that the forecast missed, the measure a store manager reads. MASE (Hyndman & Koehler 2006) divides the mean
absolute error of a series by the mean absolute error of the seasonal naive forecast in its own history, so it is
comparable across fast and slow movers: below 1 beats "same day last week".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.forecast.forecaster import METHODS

__all__ = ["MethodAccuracy", "accuracy_by_method", "mase", "mase_per_series", "method_names", "wape"]


def _pair(actual: np.ndarray, forecast: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(actual, dtype=np.float64)
    f = np.asarray(forecast, dtype=np.float64)
    if a.shape != f.shape:
        raise ValueError(f"actual {a.shape} and forecast {f.shape} differ in shape")
    return a, f


def wape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """sum |actual - forecast| / sum |actual| over all elements; NaN when nothing was sold."""
    a, f = _pair(actual, forecast)
    denom = float(np.abs(a).sum())
    return float(np.abs(a - f).sum()) / denom if denom > 0.0 else float("nan")


def mase_per_series(actual: np.ndarray, forecast: np.ndarray, insample: np.ndarray, season: int = 7) -> np.ndarray:
    """MASE of each series (rows; a 1-D input is one series): mean |actual - forecast| over the horizon divided
    by mean |y[t] - y[t - season]| over the in-sample history. NaN where that scale is 0 (a history that repeats
    itself exactly, e.g. all zeros) or the history is not longer than the season."""
    a, f = _pair(actual, forecast)
    y = np.asarray(insample, dtype=np.float64)
    a2, f2, y2 = np.atleast_2d(a), np.atleast_2d(f), np.atleast_2d(y)
    if y2.shape[0] != a2.shape[0]:
        raise ValueError(f"insample has {y2.shape[0]} series, actual {a2.shape[0]}")
    if season < 1:
        raise ValueError("season must be >= 1")
    n = a2.shape[0]
    if y2.shape[1] <= season:
        return np.full(n, np.nan)
    scale = np.abs(y2[:, season:] - y2[:, :-season]).mean(axis=1)
    error = np.abs(a2 - f2).mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out: np.ndarray = np.where(scale > 0.0, error / np.where(scale > 0.0, scale, 1.0), np.nan)
    return out


def mase(actual: np.ndarray, forecast: np.ndarray, insample: np.ndarray, season: int = 7) -> float:
    """Mean MASE over the series whose scale is not 0 (as in the M competitions); NaN when there is none."""
    per = mase_per_series(actual, forecast, insample, season)
    finite = per[np.isfinite(per)]
    return float(finite.mean()) if finite.size else float("nan")


def method_names(codes: np.ndarray) -> np.ndarray:
    """(n,) object array of method names of Forecast.method codes."""
    return np.asarray(METHODS, dtype=object)[np.asarray(codes, dtype=np.int64)]


@dataclass(frozen=True, slots=True)
class MethodAccuracy:
    """Accuracy of the series one method forecast."""

    method: str
    series: int
    wape: float
    mase: float


def accuracy_by_method(
    actual: np.ndarray, forecast: np.ndarray, insample: np.ndarray, codes: np.ndarray, season: int = 7
) -> list[MethodAccuracy]:
    """WAPE and MASE of the series of each method that forecast any (in METHODS order), then "all"."""
    a, f = _pair(actual, forecast)
    y = np.asarray(insample, dtype=np.float64)
    c = np.asarray(codes, dtype=np.int64)
    out: list[MethodAccuracy] = []
    for code, name in enumerate(METHODS):
        rows = c == code
        if rows.any():
            out.append(
                MethodAccuracy(name, int(rows.sum()), wape(a[rows], f[rows]), mase(a[rows], f[rows], y[rows], season))
            )
    out.append(MethodAccuracy("all", int(c.size), wape(a, f), mase(a, f, y, season)))
    return out
