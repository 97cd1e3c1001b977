"""The data generator, the exports and a quick end-to-end training run of tools/train."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from edge.forecast.calendar import date_range, day_facts
from edge.forecast.features import GROUPS
from edge.forecast.runtime import load_demand_model
from tools.train.generator import GROUP_CATEGORIES, generate

G = {g: k for k, g in enumerate(GROUPS)}


def test_generator_is_deterministic_by_seed() -> None:
    a = generate(50, 120, date(2025, 1, 1), seed=7)
    b = generate(50, 120, date(2025, 1, 1), seed=7)
    c = generate(50, 120, date(2025, 1, 1), seed=8)
    for name in ("demand", "sales", "promo", "temp_c", "rain_mm", "groups"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.demand, c.demand)


def test_stockouts_censor_sales_and_nothing_else_does() -> None:
    ds = generate(400, 200, date(2025, 3, 1), seed=1)
    assert ds.sales.shape == ds.demand.shape == (400, 200)
    assert (ds.sales <= ds.demand).all()
    np.testing.assert_array_equal(ds.censored, ds.sales < ds.demand)
    assert (ds.censored <= ds.stockout).all()
    assert 0.002 < ds.censored.mean() < 0.1
    assert (ds.demand == np.round(ds.demand)).all() and (ds.demand >= 0).all()


def test_most_series_are_slow_and_levels_span_orders_of_magnitude() -> None:
    ds = generate(2000, 91, date(2025, 5, 1), seed=2)
    assert 0.5 < (ds.level < 1.0).mean() < 0.7
    assert ds.level.min() < 0.05 and ds.level.max() > 100
    zero_share = (ds.sales == 0).mean(axis=1)
    assert (zero_share > 0.5).mean() > 0.4  # lumpy, intermittent series


def test_spring_festival_season_weekends_heat_and_promotions_move_demand() -> None:
    start = date(2025, 12, 1)  # Spring Festival 2026 is 17 February
    ds = generate(3000, 120, start, seed=3)
    days = date_range(start, 120)
    e = ds.expected.astype(np.float64)
    k_before = days.index(date(2026, 2, 14))
    k_normal = days.index(date(2025, 12, 10))
    k_holiday = days.index(date(2026, 2, 19))
    snacks = ds.groups == G["snacks"]
    assert np.median(e[snacks, k_before] / e[snacks, k_normal]) > 1.5
    assert np.median(e[:, k_holiday] / e[:, k_normal]) < 0.8
    promo = ds.promo > 0
    ratio = e / np.median(e, axis=1, keepdims=True)
    assert ratio[promo].mean() > 1.3 * ratio[~promo].mean()
    facts = day_facts(days)
    weekend = (facts.day_of_week >= 5) & ~facts.is_holiday & (facts.days_to_spring > 30)
    weekday = (facts.day_of_week < 4) & ~facts.is_holiday & (facts.days_to_spring > 30)
    assert ratio[:, weekend].mean() > 1.05 * ratio[:, weekday].mean()


def test_weather_sensitivity_by_group() -> None:
    ds = generate(3000, 365, date(2025, 1, 1), seed=4)
    hot, cold = ds.temp_c > 28, ds.temp_c < 8
    rel = ds.expected / ds.expected.mean(axis=1, keepdims=True)
    drinks, hot_food = ds.groups == G["drinks"], ds.groups == G["hot_food"]
    assert rel[drinks][hot[drinks]].mean() > 1.1 * rel[drinks][cold[drinks]].mean()
    assert rel[hot_food][cold[hot_food]].mean() > 1.1 * rel[hot_food][hot[hot_food]].mean()


def test_group_categories_map_back_to_their_group() -> None:
    from edge.forecast.features import group_of

    for group, category in GROUP_CATEGORIES.items():
        assert GROUPS[group_of(category, "ambient")] == group


def test_onnx_tflite_and_numpy_compute_the_same_network() -> None:
    export = pytest.importorskip("tools.train.export")
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    rng = np.random.default_rng(5)
    weights = [rng.normal(0, 0.3, (6, 8)), rng.normal(0, 0.3, (8, 3)), rng.normal(0, 0.3, (3, 1))]
    biases = [rng.normal(0, 0.1, 8), rng.normal(0, 0.1, 3), rng.normal(0, 0.1, 1)]
    x = rng.normal(size=(50, 6)).astype(np.float32)
    a = x.astype(np.float64)
    for k, (w, b) in enumerate(zip(weights, biases, strict=True)):
        a = a @ w + b
        a = np.maximum(a, 0) if k < 2 else a
    want = np.exp(np.minimum(a, 8.0))
    session = ort.InferenceSession(export.onnx_bytes(weights, biases, "t"), providers=["CPUExecutionProvider"])
    got_onnx = session.run(None, {"features": x})[0]
    interp = Interpreter(model_content=export.tflite_bytes(weights, biases, "t"))
    idx = interp.get_input_details()[0]["index"]
    interp.resize_tensor_input(idx, [50, 6])
    interp.allocate_tensors()
    interp.set_tensor(idx, x)
    interp.invoke()
    got_tflite = interp.get_tensor(interp.get_output_details()[0]["index"])
    np.testing.assert_allclose(got_onnx, want, rtol=1e-5)
    np.testing.assert_allclose(got_tflite, want, rtol=1e-5)


@pytest.mark.slow
def test_quick_training_run_writes_loadable_models_card_and_doc_table(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("statsmodels")
    from tools.train.__main__ import main

    doc = tmp_path / "doc.md"
    doc.write_text("before\n<!-- accuracy:start -->\nold\n<!-- accuracy:end -->\nafter\n", encoding="utf-8")
    out = tmp_path / "models"
    assert main(["--quick", "--out", str(out), "--docs", str(doc), "--no-ets"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "demand-v1.json",
        "demand-v1.md",
        "demand-v1.onnx",
        "demand-v1.tflite",
    ]
    meta = json.loads((out / "demand-v1.json").read_text(encoding="utf-8"))
    assert meta["schema_version"] == "demand-features-1"
    assert meta["residual_spread"]["dispersion"] > 0
    for kind in ("onnx", "tflite"):
        assert load_demand_model(out, kind) is not None
    card = (out / "demand-v1.md").read_text(encoding="utf-8")
    assert "| model |" in card and "| seasonal_naive |" in card and "## Limitations" in card
    text = doc.read_text(encoding="utf-8")
    assert "old" not in text and "| model |" in text and text.startswith("before") and text.endswith("after\n")


def test_intermittency_classes_follow_syntetos_boylan() -> None:
    from tools.train.evaluate import CLASSES, intermittency_class

    rows = np.array(
        [
            [5, 5, 5, 6, 5, 5, 4, 5],  # a sale every day, steady sizes
            [1, 9, 1, 12, 1, 1, 15, 1],  # every day, sizes vary
            [0, 0, 3, 0, 0, 3, 0, 3],  # gaps, steady sizes
            [0, 0, 1, 0, 0, 20, 0, 2],  # gaps, sizes vary
            [0] * 8,
        ],
        np.float64,
    )
    assert [CLASSES[k] for k in intermittency_class(rows)] == ["smooth", "erratic", "intermittent", "lumpy", "no sales"]


def test_evaluate_scores_seasonal_naive_as_defined() -> None:
    from tools.train.evaluate import evaluate
    from tools.train.train import HORIZON

    ds = generate(30, 140, date(2025, 6, 1), seed=9)
    origin = 120
    acc = evaluate(ds, np.array([origin]), lambda x: np.zeros(x.shape[0], np.float32), ets=False)
    naive = np.tile(ds.sales[:, origin - 7 : origin], 2)[:, :HORIZON]
    truth = ds.demand[:, origin : origin + HORIZON]
    want = np.abs(naive - truth).sum() / truth.sum()
    assert acc.table["seasonal_naive"]["all"][0] == pytest.approx(want, rel=1e-9)
    assert acc.table["model"]["all"][0] == pytest.approx(1.0)  # forecasting 0 misses all demand
    assert acc.windows == 30
