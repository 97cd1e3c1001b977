"""Accuracy of the demand model on held-out generated data (series it never saw, weeks after its training
windows): WAPE and MASE against a weekly seasonal-naive baseline, an ETS baseline (statsmodels Holt-Winters,
additive weekly season) and, for intermittent series, the Croston family of edge/forecast/statistical.py.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge.forecast.features import HISTORY_DAYS
from tools.train.generator import Dataset
from tools.train.train import HORIZON, make_windows

__all__ = ["CLASSES", "Accuracy", "accuracy_table", "evaluate", "intermittency_class"]

CLASSES = ("smooth", "erratic", "intermittent", "lumpy", "no sales")


@dataclass(frozen=True, slots=True)
class Accuracy:
    """method -> class ("all" or a CLASSES name) -> (WAPE, MASE, windows)."""

    table: dict[str, dict[str, tuple[float, float, int]]]
    windows: int
    series: int
    origins: int


def intermittency_class(history: np.ndarray) -> np.ndarray:
    """Syntetos–Boylan class per row (index into CLASSES): ADI >= 1.32 intermittent, CV² of sizes >= 0.49 erratic."""
    sold = history > 0
    count = sold.sum(axis=1)
    adi = np.where(count > 0, history.shape[1] / np.maximum(count, 1), np.inf)
    sizes = np.where(sold, history, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(sizes, axis=1)
        cv2 = np.nan_to_num(np.nanvar(sizes, axis=1) / mean**2)
    out = (adi >= 1.32).astype(np.int64) * 2 + (cv2 >= 0.49)
    out[count == 0] = 4
    return np.asarray(out, np.int64)


def _ets(history: np.ndarray) -> np.ndarray:
    """(n, HORIZON) Holt-Winters forecasts (additive weekly season, no trend), 0 for a series with no sales."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing  # type: ignore[import-untyped]

    out = np.zeros((history.shape[0], HORIZON))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, row in enumerate(history.astype(np.float64)):
            if row.sum() == 0:
                continue
            try:
                fit = ExponentialSmoothing(
                    row, seasonal="add", seasonal_periods=7, initialization_method="estimated"
                ).fit()
                out[i] = np.maximum(fit.forecast(HORIZON), 0.0)
            except (ValueError, np.linalg.LinAlgError):
                out[i] = row[-28:].mean()
    return out


def _croston_family(history: np.ndarray) -> dict[str, np.ndarray]:
    """Flat forecasts of F's Croston, SBA and TSB (empty when edge/forecast/statistical.py is not there)."""
    try:
        from edge.forecast import statistical
    except ImportError:
        return {}
    h = np.ascontiguousarray(history, np.float32)
    return {name: np.asarray(getattr(statistical, name)(h)[0], np.float64) for name in ("croston", "sba", "tsb")}


def evaluate(
    ds: Dataset, origins: np.ndarray, predict: Callable[[np.ndarray], np.ndarray], *, ets: bool = True
) -> Accuracy:
    """Score the model and the baselines on every series of ds at each origin, against true demand."""
    n = ds.n
    forecasts: dict[str, list[np.ndarray]] = {"model": [], "seasonal_naive": []}
    if ets:
        forecasts["ets"] = []
    truth, denom, classes = [], [], []
    for o in origins:
        o = int(o)
        w = make_windows(ds, np.array([o]))
        hist = ds.sales[:, o - HISTORY_DAYS : o].astype(np.float64)
        forecasts["model"].append(predict(w.x).reshape(n, HORIZON).astype(np.float64))
        forecasts["seasonal_naive"].append(np.tile(hist[:, -7:], (1, HORIZON // 7 + 1))[:, :HORIZON])
        if ets:
            forecasts["ets"].append(_ets(hist))
        for name, flat in _croston_family(hist).items():
            forecasts.setdefault(name, []).append(np.repeat(flat[:, None], HORIZON, axis=1))
        truth.append(ds.demand[:, o : o + HORIZON].astype(np.float64))
        denom.append(np.abs(hist[:, 7:] - hist[:, :-7]).mean(axis=1))  # in-sample MAE of the weekly naive
        classes.append(intermittency_class(hist))
    y = np.concatenate(truth)
    d = np.concatenate(denom)
    c = np.concatenate(classes)
    table: dict[str, dict[str, tuple[float, float, int]]] = {}
    for name, parts in forecasts.items():
        f = np.concatenate(parts)
        err = np.abs(f - y)
        row: dict[str, tuple[float, float, int]] = {}
        for label, sel in [("all", np.ones(c.shape, bool))] + [(cls, c == k) for k, cls in enumerate(CLASSES)]:
            if not sel.any():
                continue
            total = y[sel].sum()
            wape = float(err[sel].sum() / total) if total > 0 else float("nan")
            ok = sel & (d > 0)
            mase = float((err[ok].mean(axis=1) / d[ok]).mean()) if ok.any() else float("nan")
            row[label] = (wape, mase, int(sel.sum()))
        table[name] = row
    return Accuracy(table, int(y.shape[0]), n, len(origins))


def accuracy_table(acc: Accuracy) -> str:
    """Markdown table: one row per method, WAPE / MASE per class."""
    labels = ["all", *[c for c in CLASSES if c in acc.table["model"]]]
    head = "| method | " + " | ".join(f"{lab} WAPE | {lab} MASE" for lab in labels) + " |"
    lines = [head, "| --- |" + " ---: | ---: |" * len(labels)]
    for name, row in acc.table.items():
        cells = []
        for lab in labels:
            wape, mase, _ = row.get(lab, (float("nan"), float("nan"), 0))
            cells.append(f"{wape:.3f} | {mase:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    counts = ", ".join(f"{lab} {acc.table['model'][lab][2]}" for lab in labels)
    lines.append("")
    lines.append(f"Series-windows per class: {counts}.")
    return "\n".join(lines)
