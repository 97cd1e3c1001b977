"""Replenishment benchmark: the full plan for 100,000 SKU-locations (targets: kernels under 1 s, end to end under
5 s including the database read and the suggestion write), Numba kernels against their NumPy/Python references,
model inference rows/s with ONNX and LiteRT, and start-up cost with a warm and a cold Numba cache.

The store is built directly in SQLite (master data, item suppliers, 91 days of imported daily sales, balances,
lots with expiry): a read and write benchmark of the planner, not of posting. Demand is like a store's: most
SKU-locations sell intermittently (a sale every few days), a quarter sell every day.

Run: `python -m tools.bench.plan [--series 100000] [--repeat 3]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from edge.db import connect, migrate
from edge.finance.setup import prepare_books
from edge.forecast.features import HISTORY_DAYS, Exogenous, build_features
from edge.forecast.runtime import load_demand_model, shipped_models_dir
from edge.replenishment.plan_data import epoch_day

TODAY = date(2026, 12, 5)
NOW = datetime(2026, 12, 5, 2, 0, tzinfo=UTC)
SUPPLIERS = 60
PACKS = np.array([1, 6, 12, 24], dtype=np.int64)


def build(path: Path, series: int, seed: int) -> dict[str, Any]:
    """A store with `series` items on the sales floor; returns facts about what was built."""
    rng = np.random.default_rng(seed)
    conn = connect(path, synchronous="NORMAL")
    migrate(conn)
    conn.execute("BEGIN")
    prepare_books(conn, now=NOW - timedelta(days=1))
    conn.execute(
        "INSERT INTO locations (code, name, name_en, kind, storage_class) VALUES ('floor', '卖场', 'floor', 'floor',"
        " 'ambient')"
    )
    conn.executemany(
        "INSERT INTO suppliers (id, name) VALUES (?, ?)", [(f"sup-{s}", f"供应商{s}") for s in range(SUPPLIERS)]
    )
    skus = [f"SKU{i:06d}" for i in range(series)]
    perishable = rng.random(series) < 0.2
    shelf = np.where(perishable, rng.integers(5, 60, series), 0)
    conn.executemany(
        "INSERT INTO items (sku, name, base_unit, storage_class, shelf_life_days, price_fen, cost_fen, lot_tracked)"
        " VALUES (?, ?, '个', 'ambient', ?, 500, 350, ?)",
        [(s, f"商品{i}", int(shelf[i]) or None, int(perishable[i])) for i, s in enumerate(skus)],
    )
    pack = PACKS[rng.integers(0, PACKS.size, series)]
    conn.executemany("INSERT INTO item_units (sku, unit, factor) VALUES (?, '个', 1)", [(s,) for s in skus])
    conn.executemany(
        "INSERT INTO item_units (sku, unit, factor) VALUES (?, '箱', ?)",
        [(s, int(pack[i])) for i, s in enumerate(skus) if pack[i] > 1],
    )
    supplier = rng.integers(0, SUPPLIERS, series)
    conn.executemany(
        "INSERT INTO item_suppliers (sku, supplier, unit, pack, moq, lead_time_days, review_days, service_level,"
        " updated_at, updated_by) VALUES (?, ?, ?, ?, 1, ?, 1, 0.95, ?, 'bench')",
        [
            (s, f"sup-{supplier[i]}", "箱" if pack[i] > 1 else "个", int(pack[i]), float(2 + supplier[i] % 5), NOW)
            for i, s in enumerate(skus)
        ],
    )
    conn.executemany("INSERT INTO plan_series (id, sku, location) VALUES (?, ?, 'floor')", enumerate(skus, 1))
    # Daily sales: three quarters intermittent (a sale on 5-30 % of days), a quarter every day.
    regular = rng.random(series) < 0.25
    level = np.exp(rng.normal(0.5, 1.0, series))
    probability = np.where(regular, 0.95, rng.uniform(0.05, 0.3, series))
    first = epoch_day(TODAY) - HISTORY_DAYS
    sold = rng.random((series, HISTORY_DAYS)) < probability[:, None]
    qty = rng.poisson(np.where(regular, level * 3, level)[:, None], (series, HISTORY_DAYS)) + 1
    ids, days = np.nonzero(sold)
    rows = list(zip((ids + 1).tolist(), (days + first).tolist(), qty[ids, days].tolist(), strict=True))
    conn.executemany("INSERT INTO sales_history (series, day, qty) VALUES (?, ?, ?)", rows)
    # On hand: between two days and almost six weeks of sales; perishables in two lots with expiry.
    daily = sold.mean(axis=1) * qty.mean(axis=1)
    on_hand = np.floor(daily * rng.uniform(2, 40, series)).astype(np.int64)
    plain = [(s, int(on_hand[i]), int(on_hand[i]) * 350) for i, s in enumerate(skus) if not perishable[i]]
    conn.executemany("INSERT INTO balances (sku, location, lot, qty, value_fen) VALUES (?, 'floor', '', ?, ?)", plain)
    lots: list[tuple[str, str, str]] = []
    lot_balances: list[tuple[str, str, int, int]] = []
    for i in np.flatnonzero(perishable & (on_hand > 0)).tolist():
        half = int(on_hand[i]) // 2
        for n, (q, left) in enumerate(((half, 2), (int(on_hand[i]) - half, int(shelf[i])))):
            if q > 0:
                lot = f"L{n}"
                lots.append((skus[i], lot, (TODAY + timedelta(days=left)).isoformat()))
                lot_balances.append((skus[i], lot, q, q * 350))
    conn.executemany("INSERT INTO lots (sku, lot, expiry) VALUES (?, ?, ?)", lots)
    conn.executemany(
        "INSERT INTO balances (sku, location, lot, qty, value_fen) VALUES (?, 'floor', ?, ?, ?)", lot_balances
    )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()
    return {"series": series, "sales_rows": len(rows), "lots": len(lots), "regular": int(regular.sum())}


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median seconds of `repeat` calls and the last result."""
    times: list[float] = []
    result: Any = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench_plan(path: Path, repeat: int) -> dict[str, Any]:
    model = load_demand_model(shipped_models_dir(), "onnx")
    extra: dict[str, Any] = {}
    out: dict[str, Any] = {"statistical": _bench_run(path, None, repeat, extra)}
    out["onnx"] = _bench_run(path, model, repeat, {})
    return {**out, **extra}


def _bench_run(path: Path, model: Any, repeat: int, extra: dict[str, Any]) -> dict[str, Any]:
    """One model choice: read, compute, write; with `model` None also the kernel comparisons into `extra`."""
    from edge.replenishment.planner import PlanContext, compute_plan, prepare_plan, run_plan, write_plan

    ctx = PlanContext(now=NOW, today=TODAY, trigger="bench", model=model)
    conn = connect(path, synchronous="NORMAL")
    warm = prepare_plan(conn, ctx)  # compiles / loads caches once
    inputs = warm.inputs
    start = time.perf_counter()
    prepare_plan(conn, ctx)
    read_s = time.perf_counter() - start
    kernels_s, outputs = timed(lambda: compute_plan(inputs, model, warm.effects), repeat)
    end_to_end: list[float] = []
    suggestions = 0
    for _ in range(repeat):
        start = time.perf_counter()
        run = run_plan(conn, ctx)
        end_to_end.append(time.perf_counter() - start)
        suggestions = run.rows
    prepared = prepare_plan(conn, ctx)
    conn.execute("BEGIN IMMEDIATE")
    start = time.perf_counter()
    write_plan(conn, prepared.record)
    write_s = time.perf_counter() - start
    conn.execute("COMMIT")
    conn.close()
    if model is None:
        extra["plan_orders"] = bench_plan_orders(inputs, outputs, repeat)
        extra["forecast_kernels"] = bench_forecast_kernels(inputs.history)
        extra["inference"] = bench_inference(inputs.history, inputs.groups)
    return {
        "compute_plan_s": round(kernels_s, 3),
        "prepare_plan_s": round(read_s, 3),
        "write_s": round(write_s, 3),
        "end_to_end_s": round(statistics.median(end_to_end), 3),
        "suggestions": suggestions,
        "methods": dict(prepared.record.methods),
    }


def bench_plan_orders(inputs: Any, outputs: Any, repeat: int) -> dict[str, Any]:
    """plan_orders over every row against its NumPy/Python twin on the same arrays."""
    from edge.replenishment.kernels import plan_orders, service_factor
    from edge.replenishment.reference import plan_orders_reference

    args = (
        np.ascontiguousarray(outputs.demand),
        np.asarray(outputs.forecast.std, dtype=np.float64),
        inputs.lt_mean,
        inputs.lt_std,
        inputs.review_days,
        service_factor(inputs.service_level),
        inputs.on_hand,
        inputs.in_transit,
        inputs.on_order,
        outputs.expiring,
        inputs.pack,
        inputs.moq_packs,
        inputs.shelf_life_days,
    )
    kernel_s, _ = timed(lambda: plan_orders(*args), max(repeat, 5))
    reference_s, _ = timed(lambda: plan_orders_reference(*args), 1)
    return {
        "rows": inputs.n,
        "kernel_s": round(kernel_s, 4),
        "reference_s": round(reference_s, 3),
        "ratio": round(reference_s / kernel_s, 1),
    }


def bench_forecast_kernels(history: np.ndarray) -> dict[str, Any]:
    """SBA and ETS over every series against their plain Python twins (on a sample, scaled per series)."""
    from edge.forecast import statistical as stat

    sample = np.ascontiguousarray(history[:2000])
    result: dict[str, Any] = {}
    for name, extra in (("sba", ()), ("ets", (14,))):
        kernel = getattr(stat, name)
        reference = getattr(stat, f"{name}_reference")
        kernel(sample, *extra)
        kernel_s, _ = timed(lambda k=kernel, e=extra: k(history, *e), 3)
        reference_s, _ = timed(lambda r=reference, e=extra: r(sample, *e), 1)
        per_series_ref = reference_s / sample.shape[0]
        per_series_kernel = kernel_s / history.shape[0]
        result[name] = {
            "series": history.shape[0],
            "kernel_s": round(kernel_s, 3),
            "reference_s_per_1000": round(per_series_ref * 1000, 3),
            "ratio": round(per_series_ref / per_series_kernel, 1),
        }
    return result


def bench_inference(history: np.ndarray, groups: np.ndarray) -> dict[str, Any]:
    """Rows per second of the demand model on real features, ONNX and LiteRT, same batches."""
    horizon = 14
    sample = history[: min(history.shape[0], 20_000)]
    features = build_features(sample, TODAY, horizon, Exogenous.none(sample.shape[0], horizon), groups[: len(sample)])
    result: dict[str, Any] = {"rows": int(features.shape[0]), "features": int(features.shape[1])}
    start = time.perf_counter()
    build_features(sample, TODAY, horizon, Exogenous.none(sample.shape[0], horizon), groups[: len(sample)])
    result["build_features_rows_per_s"] = round(features.shape[0] / (time.perf_counter() - start))
    predictions: dict[str, np.ndarray] = {}
    for kind in ("onnx", "tflite"):
        model = load_demand_model(shipped_models_dir(), kind)
        if model is None:
            result[kind] = "not loaded"
            continue
        model.predict(features[:1000])
        seconds, predictions[kind] = timed(lambda m=model: m.predict(features), 3)
        result[f"{kind}_rows_per_s"] = round(features.shape[0] / seconds)
    if len(predictions) == 2:
        result["max_abs_difference"] = float(np.max(np.abs(predictions["onnx"] - predictions["tflite"])))
    return result


STARTUP = """
import time
t0 = time.perf_counter()
from datetime import date
import numpy as np
from edge.replenishment.planner import compute_plan, PlanInputs
from edge.replenishment.signals import SeriesKeys
t1 = time.perf_counter()
n, d = 8, 91
rng = np.random.default_rng(1)
keys = SeriesKeys(*(np.array([str(i) for i in range(n)], dtype=object) for _ in range(4)))
f = np.ones(n)
inputs = PlanInputs(keys=keys, history=rng.poisson(1.0, (n, d)).astype(np.float32), groups=np.zeros(n, np.int8),
    on_hand=f * 3, in_transit=f * 0, on_order=f * 0, lots_days_left=np.zeros(0), lots_qty=np.zeros(0),
    lots_row=np.zeros(0, np.int64), pack=np.ones(n, np.int64), moq_packs=np.ones(n, np.int64),
    shelf_life_days=f * 0, lt_mean=f * 2, lt_std=f * 0.5, review_days=f, service_level=f * 0.95,
    start=date(2026, 12, 5), horizon=14)
compute_plan(inputs, None, None)
t2 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f}")
"""


def bench_startup() -> dict[str, Any]:
    """Import of the planner and its first plan in a fresh process, with the Numba cache warm and cold."""
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="numba-cold-") as cold:
        for label, env in (("cold_cache", {"NUMBA_CACHE_DIR": cold}), ("warm_cache", {})):
            subprocess.run([sys.executable, "-c", STARTUP], check=True, capture_output=True)  # warms the default
            runs = []
            for attempt in range(2 if label == "warm_cache" else 1):
                done = subprocess.run(
                    [sys.executable, "-c", STARTUP],
                    check=True,
                    capture_output=True,
                    text=True,
                    env={**os.environ, **env},
                )
                runs.append([float(x) for x in done.stdout.split()])
                del attempt
            imports, first_plan = runs[-1]
            result[label] = {"import_s": imports, "first_plan_s": first_plan}
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="storebox-plan-bench-") as tmp:
        path = Path(tmp) / "store.db"
        start = time.perf_counter()
        built = build(path, args.series, args.seed)
        built["build_s"] = round(time.perf_counter() - start, 1)
        plan = bench_plan(path, args.repeat)
    process = psutil.Process()
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "built": built,
        "plan": plan,
        "startup": bench_startup(),
        "max_rss_mb": round(process.memory_info().rss / 2**20),
    }
    print(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
