"""Train the global demand model (an MLP, NumPy only) on generated data.

The network maps a feature row to log(demand / scale); the loss is the Poisson deviance of demand itself,
rows weighted by sqrt(scale) so slow and fast movers both count. Days whose sales were censored by a stockout
have weight 0: the model learns demand, not what was left on the shelf.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field, fields
from datetime import date, timedelta

import numpy as np

from edge.forecast.features import FEATURE_NAMES, HISTORY_DAYS, SCALE_FEATURE, Exogenous, build_features
from tools.train.generator import Dataset, generate

__all__ = ["HORIZON", "Mlp", "TrainConfig", "Windows", "make_windows", "train", "training_data"]

HORIZON = 14
Z_MAX = 8.0  # log ratio cap: demand at most e^8 times the recent level


@dataclass(frozen=True, slots=True)
class TrainConfig:
    n_series: int = 4000
    days: int = 900
    start: date = date(2022, 10, 1)
    seed: int = 20261205
    train_days: int = 730  # target days of the training windows end before this day; later days are held out
    origins_per_series: int = 16
    hidden: tuple[int, ...] = (128, 64)
    epochs: int = 16
    batch: int = 2048
    learning_rate: float = 2e-3


@dataclass(frozen=True, slots=True)
class Windows:
    """Rows of features with their target (demand units), weight (0 = censored day) and series index."""

    x: np.ndarray  # (rows, F) float32
    y: np.ndarray  # (rows,) float32 observed sales
    w: np.ndarray  # (rows,) float32
    series: np.ndarray  # (rows,) int64
    origin: np.ndarray  # (rows,) int64 first target day
    truth: np.ndarray  # (rows,) float32 true demand (the generator knows it)


def make_windows(ds: Dataset, origins: np.ndarray, series: np.ndarray | None = None) -> Windows:
    """Feature rows of every (series, origin); origins are first target days (>= HISTORY_DAYS)."""
    idx = np.arange(ds.n) if series is None else series
    xs, ys, ws, ss, os, ts = [], [], [], [], [], []
    for o in origins:
        o = int(o)
        hist = ds.sales[idx, o - HISTORY_DAYS : o]
        sl = slice(o, o + HORIZON)
        exog = Exogenous(ds.promo[idx, sl], ds.temp_c[idx, sl], ds.rain_mm[idx, sl])
        xs.append(build_features(hist, ds.start + timedelta(days=o), HORIZON, exog, ds.groups[idx]))
        ys.append(ds.sales[idx, sl].reshape(-1))
        ws.append((~ds.censored[idx, sl]).astype(np.float32).reshape(-1))
        ts.append(ds.demand[idx, sl].reshape(-1))
        ss.append(np.repeat(idx, HORIZON))
        os.append(np.full(idx.shape[0] * HORIZON, o))
    return Windows(
        np.concatenate(xs),
        np.concatenate(ys),
        np.concatenate(ws),
        np.concatenate(ss),
        np.concatenate(os),
        np.concatenate(ts),
    )


@dataclass(slots=True)
class Mlp:
    """Dense ReLU layers, a linear output z = log(demand / scale); inputs standardised by (mu, sd)."""

    weights: list[np.ndarray]  # (in, out) float64
    biases: list[np.ndarray]
    mu: np.ndarray
    sd: np.ndarray
    log: list[str] = field(default_factory=list)

    def folded(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Weights with the input standardisation folded into the first layer (what the exported files hold)."""
        inv = np.where(np.isfinite(self.sd), 1.0 / self.sd, 0.0)
        w0 = self.weights[0] * inv[:, None]
        b0 = self.biases[0] - (self.mu * inv) @ self.weights[0]
        return [w0, *self.weights[1:]], [b0, *self.biases[1:]]

    def log_ratio(self, x: np.ndarray) -> np.ndarray:
        ws, bs = self.folded()
        a = x.astype(np.float64)
        for k, (w, b) in enumerate(zip(ws, bs, strict=True)):
            a = a @ w + b
            if k < len(ws) - 1:
                a = np.maximum(a, 0.0)
        return np.minimum(a[:, 0], Z_MAX)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Expected demand per row (units/day)."""
        out: np.ndarray = np.exp(self.log_ratio(x)) * x[:, FEATURE_NAMES.index(SCALE_FEATURE)]
        return out


def train(config: TrainConfig, windows: Windows, *, verbose: bool = True) -> Mlp:
    """Fit the MLP with Adam on the Poisson deviance (see the module docstring)."""
    rng = np.random.default_rng(config.seed)
    x = windows.x.astype(np.float64)
    scale = x[:, FEATURE_NAMES.index(SCALE_FEATURE)]
    keep = windows.w > 0
    x, y, scale = x[keep], windows.y[keep].astype(np.float64), scale[keep]
    w = np.sqrt(scale)
    w /= w.mean()
    mu = x.mean(axis=0)
    sd = x.std(axis=0)
    sd = np.where(sd < 1e-6, 1.0, sd)
    sd[FEATURE_NAMES.index(SCALE_FEATURE)] = np.inf  # the raw scale only enters through the output transform
    mu[FEATURE_NAMES.index(SCALE_FEATURE)] = 0.0
    xn = (x - mu) * np.where(np.isfinite(sd), 1.0 / sd, 0.0)
    sizes = [x.shape[1], *config.hidden, 1]
    weights = [rng.normal(0.0, np.sqrt(2.0 / a), (a, b)) for a, b in itertools.pairwise(sizes)]
    weights[-1] *= 0.1
    biases = [np.zeros(b) for b in sizes[1:]]
    params = [p for pair in zip(weights, biases, strict=True) for p in pair]
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    step = 0
    log: list[str] = []
    rows = xn.shape[0]
    started = time.perf_counter()
    for epoch in range(config.epochs):
        order = rng.permutation(rows)
        lr = config.learning_rate * (0.5 ** max(0, epoch - config.epochs // 2))
        total = 0.0
        for b0 in range(0, rows, config.batch):
            sel = order[b0 : b0 + config.batch]
            acts = [xn[sel]]
            for k in range(len(weights)):
                a = acts[-1] @ weights[k] + biases[k]
                acts.append(np.maximum(a, 0.0) if k < len(weights) - 1 else a)
            z = np.minimum(acts[-1][:, 0], Z_MAX)
            mu_hat = np.exp(z) * scale[sel]
            yy, ww = y[sel], w[sel]
            # Poisson deviance in units of demand, per unit of scale: d/dz = w (mu - y) / scale
            total += float(np.sum(ww * (mu_hat - yy * (z + np.log(scale[sel]))) / scale[sel]))
            grad = (ww * (mu_hat - yy) / scale[sel] / sel.shape[0])[:, None]
            grads: list[np.ndarray] = []
            for k in range(len(weights) - 1, -1, -1):
                gw = acts[k].T @ grad
                gb = grad.sum(axis=0)
                grads[:0] = [gw, gb]
                if k:
                    grad = (grad @ weights[k].T) * (acts[k] > 0)
            step += 1
            for p, g, a1, a2 in zip(params, grads, m1, m2, strict=True):
                a1 *= 0.9
                a1 += 0.1 * g
                a2 *= 0.999
                a2 += 0.001 * g * g
                p -= lr * (a1 / (1 - 0.9**step)) / (np.sqrt(a2 / (1 - 0.999**step)) + 1e-8)
        line = f"epoch {epoch + 1}/{config.epochs}: loss {total / rows:.4f} ({time.perf_counter() - started:.0f} s)"
        log.append(line)
        if verbose:
            print(line, flush=True)
    return Mlp(weights, biases, mu, sd, log)


def training_data(config: TrainConfig) -> tuple[Dataset, Windows]:
    """The generated data set and its training windows (origins drawn per series before train_days)."""
    ds = generate(config.n_series, config.days, config.start, config.seed)
    rng = np.random.default_rng(config.seed + 1)
    last = config.train_days - HORIZON
    origins = rng.integers(HISTORY_DAYS, last, config.origins_per_series * 3)
    parts = []
    series = np.arange(ds.n)
    for o in np.unique(origins):
        chosen = series[rng.random(ds.n) < 1.0 / 3.0]
        parts.append(make_windows(ds, np.array([o]), chosen))
    w = Windows(*(np.concatenate([getattr(p, f) for p in parts]) for f in (fl.name for fl in fields(Windows))))
    return ds, w
