"""Demand model runtime: the shipped ONNX and .tflite files, and the fallback on every kind of bad file."""

from __future__ import annotations

import json
import logging
import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from edge.forecast.features import FEATURE_NAMES, GROUPS, HISTORY_DAYS, SCHEMA_VERSION, Exogenous, build_features
from edge.forecast.runtime import (
    ForecastMetrics,
    MetadataError,
    load_demand_model,
    parse_metadata,
    shipped_models_dir,
)

SHIPPED = shipped_models_dir()


def _features(n: int = 300, horizon: int = 14, seed: int = 3) -> np.ndarray:
    """Real feature rows: generated daily sales with promotions and weather, crossing into 2027."""
    rng = np.random.default_rng(seed)
    level = np.exp(rng.uniform(np.log(0.05), np.log(200.0), (n, 1)))
    history = rng.poisson(level * (1 + 0.3 * (np.arange(HISTORY_DAYS) % 7 >= 5)), (n, HISTORY_DAYS)).astype(np.float32)
    exog = Exogenous(
        np.where(rng.random((n, horizon)) < 0.1, 0.2, 0.0).astype(np.float32),
        rng.normal(12.0, 8.0, (n, horizon)).astype(np.float32),
        rng.exponential(3.0, (n, horizon)).astype(np.float32),
    )
    groups = rng.integers(0, len(GROUPS), n).astype(np.int8)
    return build_features(history, date(2026, 12, 25), horizon, exog, groups)


def _copy(tmp_path: Path) -> Path:
    out = tmp_path / "models"
    shutil.copytree(SHIPPED, out)
    return out


def _fallbacks(registry: CollectorRegistry, reason: str) -> float:
    return registry.get_sample_value("storebox_forecast_model_fallback_total", {"reason": reason}) or 0.0


@pytest.mark.parametrize("kind", ["onnx", "tflite"])
def test_shipped_model_loads_and_predicts_non_negative_demand(kind: str) -> None:
    model = load_demand_model(SHIPPED, kind)
    assert model is not None
    assert (model.name, model.kind, model.schema_version) == ("demand-v1", kind, SCHEMA_VERSION)
    x = _features()
    y = model.predict(x)
    assert y.shape == (x.shape[0],) and y.dtype == np.float32
    assert np.isfinite(y).all() and (y >= 0).all()
    # The model follows the level: the fast movers' forecast is far above the slow movers'.
    scale = x[:, FEATURE_NAMES.index("scale")]
    assert y[scale > 50].mean() > 20 * y[scale < 1].mean()


def test_onnx_and_tflite_agree_within_the_stated_tolerance() -> None:
    meta = json.loads((SHIPPED / "demand-v1.json").read_text(encoding="utf-8"))
    rtol, atol = meta["tolerance"]["rtol"], meta["tolerance"]["atol"]
    onnx_model, tflite_model = load_demand_model(SHIPPED, "onnx"), load_demand_model(SHIPPED, "tflite")
    assert onnx_model is not None and tflite_model is not None
    x = _features(n=2000)  # 28,000 rows: several batches
    scale = x[:, FEATURE_NAMES.index("scale")]
    a, b = onnx_model.predict(x) / scale, tflite_model.predict(x) / scale
    assert np.all(np.abs(a - b) <= atol + rtol * np.abs(a))


def test_batches_give_the_same_answer_as_one_call() -> None:
    model = load_demand_model(SHIPPED, "tflite")
    assert model is not None
    x = _features(n=40)
    whole = model.predict(x)
    parts = np.concatenate([model.predict(x[:7]), model.predict(x[7:300]), model.predict(x[300:])])
    np.testing.assert_allclose(whole, parts, rtol=1e-6)


@pytest.mark.parametrize("kind", ["onnx", "tflite"])
@pytest.mark.parametrize("damage", ["random", "truncated", "empty"])
def test_corrupt_model_file_falls_back_with_log_and_metric(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str, damage: str
) -> None:
    models = _copy(tmp_path)
    path = models / f"demand-v1.{kind}"
    data = path.read_bytes()
    if damage == "random":
        path.write_bytes(np.random.default_rng(1).bytes(len(data)))
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(b"")
    registry = CollectorRegistry()
    with caplog.at_level(logging.WARNING, logger="storebox.forecast"):
        assert load_demand_model(models, kind, metrics=ForecastMetrics(registry)) is None
    assert _fallbacks(registry, "corrupt") == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "storebox.forecast"]
    assert len(lines) == 1 and "改用统计方法" in lines[0] and "using statistical methods" in lines[0]


@pytest.mark.parametrize("missing", ["demand-v1.onnx", "demand-v1.json"])
def test_missing_file_falls_back(tmp_path: Path, caplog: pytest.LogCaptureFixture, missing: str) -> None:
    models = _copy(tmp_path)
    (models / missing).unlink()
    registry = CollectorRegistry()
    with caplog.at_level(logging.WARNING, logger="storebox.forecast"):
        assert load_demand_model(models, "onnx", metrics=ForecastMetrics(registry)) is None
    assert _fallbacks(registry, "missing") == 1
    assert "not found" in caplog.text
    assert load_demand_model(tmp_path / "nowhere", "tflite") is None


def test_other_schema_version_or_feature_names_fall_back(tmp_path: Path) -> None:
    models = _copy(tmp_path)
    meta_path = models / "demand-v1.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    registry = CollectorRegistry()
    metrics = ForecastMetrics(registry)
    meta_path.write_text(json.dumps({**meta, "schema_version": "demand-features-0"}), encoding="utf-8")
    assert load_demand_model(models, "onnx", metrics=metrics) is None
    renamed = [*meta["feature_names"][:-1], "horizon_days"]
    meta_path.write_text(json.dumps({**meta, "feature_names": renamed}), encoding="utf-8")
    assert load_demand_model(models, "tflite", metrics=metrics) is None
    assert _fallbacks(registry, "schema") == 2


def test_model_with_the_wrong_input_width_falls_back(tmp_path: Path) -> None:
    export = pytest.importorskip("tools.train.export")  # needs the train extra (onnx)
    models = _copy(tmp_path)
    rng = np.random.default_rng(0)
    weights, biases = [rng.normal(size=(10, 4)), rng.normal(size=(4, 1))], [np.zeros(4), np.zeros(1)]
    (models / "demand-v1.onnx").write_bytes(export.onnx_bytes(weights, biases, "demand-v1"))
    (models / "demand-v1.tflite").write_bytes(export.tflite_bytes(weights, biases, "demand-v1"))
    registry = CollectorRegistry()
    metrics = ForecastMetrics(registry)
    assert load_demand_model(models, "onnx", metrics=metrics) is None
    assert load_demand_model(models, "tflite", metrics=metrics) is None
    assert _fallbacks(registry, "shape") == 2


def test_kind_none_is_counted_as_disabled() -> None:
    registry = CollectorRegistry()
    assert load_demand_model(SHIPPED, "none", metrics=ForecastMetrics(registry)) is None
    assert _fallbacks(registry, "disabled") == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode())))
def test_garbage_metadata_is_refused_cleanly(raw: bytes) -> None:
    try:
        meta = parse_metadata(raw)
    except MetadataError:
        return
    assert isinstance(meta.feature_names, tuple)


def _mutations() -> st.SearchStrategy[dict[str, object]]:
    meta = json.loads((SHIPPED / "demand-v1.json").read_text(encoding="utf-8"))
    keys = sorted(meta)
    return st.builds(
        lambda drop, key, value: {k: (value if k == key else v) for k, v in meta.items() if k != drop},
        st.sampled_from([*keys, ""]),
        st.sampled_from(keys),
        json_values,
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_mutations())
def test_mutated_metadata_loads_or_falls_back_never_raises(tmp_path: Path, meta: dict[str, object]) -> None:
    models = tmp_path / "m"
    if not models.exists():
        shutil.copytree(SHIPPED, models)
    (models / "demand-v1.json").write_text(json.dumps(meta), encoding="utf-8")
    model = load_demand_model(models, "onnx")
    if model is not None:
        assert model.predict(_features(n=2, horizon=3)).shape == (6,)


def test_settings_name_the_model_kind_and_directory(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from edge.config import Settings

    default = Settings(data_dir=tmp_path)
    assert (default.forecast_model, default.models_dir) == ("onnx", None)
    chosen = Settings(data_dir=tmp_path, forecast_model="tflite", models_dir=SHIPPED)
    model = load_demand_model(chosen.models_dir or shipped_models_dir(), chosen.forecast_model)
    assert model is not None and model.kind == "tflite"
    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, forecast_model="pytorch")
