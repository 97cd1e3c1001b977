"""`python -m tools.train` (or `make models`): generate data, train, export ONNX and .tflite, evaluate, write the
metadata and the model card into models/ and the accuracy table into docs/forecast-model.md."""

from __future__ import annotations

import argparse
import os
import platform
import re
import time
from dataclasses import asdict, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from edge.forecast.features import FEATURE_NAMES, GROUPS, HISTORY_DAYS, SCALE_FEATURE, SCHEMA_VERSION
from edge.forecast.runtime import MODEL_NAME, load_demand_model
from tools.train.evaluate import Accuracy, accuracy_table, evaluate
from tools.train.export import INPUT_NAME, OUTPUT_NAME, onnx_bytes, sha256, tflite_bytes, write_metadata
from tools.train.generator import generate
from tools.train.train import HORIZON, Mlp, TrainConfig, make_windows, train, training_data

ROOT = Path(__file__).resolve().parents[2]
RTOL, ATOL = 1e-4, 1e-5  # ONNX vs .tflite on the model output (demand / scale)
DOC_START, DOC_END = "<!-- accuracy:start -->", "<!-- accuracy:end -->"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.train", description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "models", help="directory of the model files")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "forecast-model.md", help="doc page to update")
    parser.add_argument("--quick", action="store_true", help="small data and few epochs (tests)")
    parser.add_argument("--eval-series", type=int, default=300, help="held-out series")
    parser.add_argument("--no-ets", action="store_true", help="skip the (slow) ETS baseline")
    args = parser.parse_args(argv)
    cfg = TrainConfig()
    if args.quick:
        cfg = replace(cfg, n_series=300, origins_per_series=3, epochs=2)
    started = time.perf_counter()
    print(f"generating {cfg.n_series} series x {cfg.days} days ...", flush=True)
    ds, windows = training_data(cfg)
    print(f"{windows.x.shape[0]} training rows; training ...", flush=True)
    mlp = train(cfg, windows)
    train_seconds = time.perf_counter() - started

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    ws, bs = mlp.folded()
    onnx_data, tflite_data = onnx_bytes(ws, bs, MODEL_NAME), tflite_bytes(ws, bs, MODEL_NAME)
    (out / f"{MODEL_NAME}.onnx").write_bytes(onnx_data)
    (out / f"{MODEL_NAME}.tflite").write_bytes(tflite_data)

    # Held-out weeks of the training series: residual spread and the ONNX/TFLite agreement on real features.
    later = np.arange(cfg.train_days, cfg.days - HORIZON + 1, 14)
    held = make_windows(ds, later)
    mean = mlp.predict(held.x)
    ok = held.w > 0
    dispersion = float(np.sum((held.y[ok] - mean[ok]) ** 2) / max(np.sum(mean[ok]), 1e-9))
    power = _variance_power(mean[ok], held.y[ok])
    meta = _metadata(cfg, mlp, dispersion, power, onnx_data, tflite_data, train_seconds)
    write_metadata(out / f"{MODEL_NAME}.json", meta)
    max_diff = _agreement(out, held.x)

    print("evaluating on unseen series ...", flush=True)
    test = generate(args.eval_series if not args.quick else 60, cfg.days, cfg.start, cfg.seed + 99)
    onnx_model = load_demand_model(out, "onnx")
    assert onnx_model is not None, "the ONNX model just written does not load"
    acc = evaluate(test, later, onnx_model.predict, ets=not args.no_ets)
    table = accuracy_table(acc)
    print(table)
    total_seconds = time.perf_counter() - started
    (out / f"{MODEL_NAME}.md").write_text(
        _card(
            cfg,
            mlp,
            meta,
            acc,
            table,
            max_diff,
            train_seconds,
            total_seconds,
            windows.x.shape[0],
            float(ds.censored.mean()),
        ),
        encoding="utf-8",
    )
    if args.docs.is_file():
        _update_doc(args.docs, acc, table)
    print(f"done in {total_seconds:.0f} s", flush=True)
    return 0


def _variance_power(mean: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, b) of variance ≈ a x mean^b, fitted on 20 bins of the predicted mean (log-log least squares)."""
    order = np.argsort(mean)
    bins = [b for b in np.array_split(order, 20) if b.size and mean[b].mean() > 0]
    mu = np.array([mean[b].mean() for b in bins])
    var = np.array([np.mean((y[b] - mean[b]) ** 2) for b in bins])
    keep = var > 0
    b, log_a = np.polyfit(np.log(mu[keep]), np.log(var[keep]), 1)
    return float(np.exp(log_a)), float(b)


def _metadata(
    cfg: TrainConfig,
    mlp: Mlp,
    dispersion: float,
    power: tuple[float, float],
    onnx_data: bytes,
    tflite_data: bytes,
    seconds: float,
) -> dict[str, Any]:
    return {
        "name": MODEL_NAME,
        "schema_version": SCHEMA_VERSION,
        "feature_names": list(FEATURE_NAMES),
        "history_days": HISTORY_DAYS,
        "groups": list(GROUPS),
        "horizon_trained": HORIZON,
        "input": INPUT_NAME,
        "output": {
            "name": OUTPUT_NAME,
            "meaning": "expected demand per day / scale",
            "transform": {"kind": "multiply_feature", "feature": SCALE_FEATURE, "min": 0.0},
        },
        "residual_spread": {
            "dispersion": round(dispersion, 4),
            "variance_a": round(power[0], 4),
            "variance_b": round(power[1], 4),
            "meaning": "held-out weeks of the training series: variance of one day's demand ≈ dispersion x mean"
            " pooled (quasi-Poisson), and ≈ variance_a x mean ^ variance_b by level",
        },
        "tolerance": {"rtol": RTOL, "atol": ATOL, "between": "onnx and tflite output"},
        "files": {
            "onnx": {"file": f"{MODEL_NAME}.onnx", "sha256": sha256(onnx_data), "bytes": len(onnx_data)},
            "tflite": {"file": f"{MODEL_NAME}.tflite", "sha256": sha256(tflite_data), "bytes": len(tflite_data)},
        },
        "training": {
            "config": {k: (str(v) if not isinstance(v, int | float) else v) for k, v in asdict(cfg).items()},
            "architecture": f"MLP {len(FEATURE_NAMES)}-"
            + "-".join(str(h) for h in cfg.hidden)
            + "-1, ReLU, exp output",
            "loss": "Poisson deviance, rows weighted by sqrt(scale), censored days weight 0",
            "seconds": round(seconds, 1),
            "log": mlp.log,
        },
    }


def _agreement(out: Path, x: np.ndarray) -> float:
    """Largest |onnx - tflite| - (atol + rtol |onnx|) over real feature rows; raises when over tolerance."""
    a_model, b_model = load_demand_model(out, "onnx"), load_demand_model(out, "tflite")
    assert a_model is not None and b_model is not None, "a model file just written does not load"
    scale = x[:, FEATURE_NAMES.index(SCALE_FEATURE)]
    a, b = a_model.predict(x) / scale, b_model.predict(x) / scale
    excess = float(np.max(np.abs(a - b) - (ATOL + RTOL * np.abs(a))))
    if excess > 0:
        raise SystemExit(f"ONNX and .tflite disagree beyond the tolerance by {excess}")
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-12)))


def _card(
    cfg: TrainConfig,
    mlp: Mlp,
    meta: dict[str, Any],
    acc: Accuracy,
    table: str,
    max_rel: float,
    train_seconds: float,
    total_seconds: float,
    rows: int,
    censored_share: float,
) -> str:
    end_train = cfg.start + timedelta(days=cfg.train_days)
    end = cfg.start + timedelta(days=cfg.days)
    feats = ", ".join(f"`{n}`" for n in FEATURE_NAMES)
    return f"""# Model card: {MODEL_NAME} (global daily demand model)

Made by `python -m tools.train` (`make models`); do not edit by hand. How the box uses it, how to retrain and
the fallback: docs/forecast-model.md.

## What it does

Predicts the expected demand of one SKU at one location for one day, 1 to {HORIZON} days ahead, from the last
{HISTORY_DAYS} days of daily sales, the calendar (day of week, public holidays and make-up working days, the Spring
Festival season and the other festivals, 618 and 双11), promotions and the weather forecast. One model for all
series ("global"): quantities are divided by the series' recent level (`{SCALE_FEATURE}`) so slow and fast movers
share it. Output `{OUTPUT_NAME}` = demand / {SCALE_FEATURE}; the runtime multiplies back and clips at 0.

## Files

| file | what |
| --- | --- |
| {MODEL_NAME}.onnx | ONNX opset 17, input `{INPUT_NAME}` (batch, {len(FEATURE_NAMES)}) float32, \
output `{OUTPUT_NAME}` (batch, 1); {meta["files"]["onnx"]["bytes"]} bytes |
| {MODEL_NAME}.tflite | the same network as a TFLite flatbuffer (dynamic batch); \
{meta["files"]["tflite"]["bytes"]} bytes |
| {MODEL_NAME}.json | metadata the runtime checks: schema `{SCHEMA_VERSION}`, feature names, output transform, \
residual spread, tolerance |

ONNX and .tflite hold the same float32 weights. Stated tolerance: |onnx - tflite| <= {ATOL} + {RTOL} x |onnx| on
the output; measured on the held-out weeks' real feature rows: largest relative difference {max_rel:.2e}.

## Data

Generated by `tools/train/generator.py` (seed {cfg.seed}): {cfg.n_series} SKU-location series, {cfg.days} days from
{cfg.start} to {end}. About 60% slow movers (0.03 to 1 unit a day, gamma-Poisson with strong overdispersion, so
lumpy), the rest 1 to 300 units a day; eight item groups ({", ".join(GROUPS)}); weekly profiles; trends; public
holidays and make-up working days from chinese_calendar; the Spring Festival buying season (up to +150% for
snacks in the last days) and its holiday dip; festival foods (mooncakes before 中秋, zongzi before 端午, tangyuan
for 元宵); promotions of 3-7 days with 10-40% off, uplift exp(elasticity x discount), elasticity 1.5-4.5, and a
post-promotion dip; weather per region (seasonal temperature with AR(1) noise, summer showers) with group
sensitivity (drinks and frozen up in heat, hot food up in cold, rain keeps shoppers home); stockout episodes in
which sales are censored at what was on the shelf ({100 * censored_share:.1f}% of series-days).

Training windows: {rows} rows (series x origin x day ahead), origins drawn at random from day {HISTORY_DAYS} until
{end_train} minus {HORIZON} days. Held out: every day from {end_train} on, and {acc.series} series never seen.

## Features ({len(FEATURE_NAMES)}, schema `{SCHEMA_VERSION}`)

{feats}.
See edge/forecast/features.py for each definition.

## Training

NumPy only: {meta["training"]["architecture"]}, Adam, {cfg.epochs} epochs of batches of {cfg.batch}, learning rate
{cfg.learning_rate} halved each epoch in the second half. Loss: {meta["training"]["loss"]}. Input standardisation is
folded into the first layer. Training took {train_seconds:.0f} s and the whole run (data, training, export,
evaluation with {acc.series * acc.origins} ETS fits) {total_seconds:.0f} s on {platform.machine()} with
{os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f} at the end: other work on the machine slows it).

Why NumPy and a hand-written .tflite: TensorFlow (for the TFLite converter) is a download of hundreds of MB and
torch would be another large dependency for a three-layer network. The ONNX file is built with onnx.helper and
the .tflite file with the TFLite flatbuffer schema that ai-edge-litert itself ships (`schema_py_generated`), so
training needs only numpy, onnx and statsmodels (the `train` extra), and both files are read back and compared
by the run before it writes this card.

## Accuracy

Held-out: {acc.series} unseen series x {acc.origins} forecast origins (every 14 days from {end_train}, covering
National Day, 双11, the New Year and the Spring Festival 2025), {HORIZON} days ahead each, against true demand.
WAPE = sum |error| / sum demand; MASE = mean absolute error / in-sample mean absolute error of the weekly naive
forecast, averaged over series-windows. Classes by Syntetos–Boylan on the {HISTORY_DAYS}-day history
(ADI >= 1.32 intermittent, CV² of sizes >= 0.49 erratic). seasonal_naive repeats last week; ets is statsmodels
Holt-Winters with an additive weekly season; croston, sba and tsb are edge/forecast/statistical.py with its defaults.

{table}

Reading it: on intermittent and lumpy series WAPE is above 1 for every method (most days sell nothing, so any
non-zero daily mean misses on them), and MASE, an absolute error, favours forecasts near the median (often 0):
there the model is on a par with the Croston family and ETS, not better. That is why the forecaster keeps the
Croston family for them (their per-order spread matters more than the daily mean); the model pays off on the
regular series (smooth and erratic), where calendar, promotion and weather effects are large. "no sales" are
series without a sale in the {HISTORY_DAYS} days before the origin (the baselines forecast 0 there).

Residual spread on the held-out weeks of the training series (observed sales on days without a stockout):
variance of one day's demand ≈ {meta["residual_spread"]["variance_a"]} x mean ^ {meta["residual_spread"]["variance_b"]}
(pooled: {meta["residual_spread"]["dispersion"]} x mean, dominated by the fast movers).

## Limitations

- Trained on generated data only: the shapes of the effects are ours, not measured in a real store. Retrain or
  fine-tune on a store's own history before trusting the festival and weather effects in numbers.
- Holidays after 2026 are estimated by rule (no make-up working days) until chinese_calendar publishes them.
- It forecasts demand, not sales: on days after a stockout it expects more than the shelf sold.
- Horizons beyond {HORIZON} days were not trained, and every row needs {HISTORY_DAYS} days of history: for longer
  horizons and for newer series the forecaster decides what stands in (docs/forecasting.md).
- Intermittent and lumpy series: no better than the Croston family (see the table); the forecaster uses that
  family for them.
- A series without a sale in {HISTORY_DAYS} days still gets a small positive forecast (the scale floor, 0.05 a day).
"""


def _update_doc(path: Path, acc: Accuracy, table: str) -> None:
    text = path.read_text(encoding="utf-8")
    block = f"{DOC_START}\n{table}\n{DOC_END}"
    if DOC_START in text and DOC_END in text:
        text = re.sub(re.escape(DOC_START) + ".*?" + re.escape(DOC_END), lambda _m: block, text, flags=re.S)
        path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
