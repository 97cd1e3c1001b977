"""Runtime of the learned demand model: ONNX through onnxruntime, .tflite through LiteRT, same features.

`load_demand_model` checks the metadata JSON against the feature schema of this box (version and feature names),
opens the model file and checks its input and output shapes. Anything wrong gives None (the forecaster then uses
the statistical methods), one log line in Chinese and English, and a count in
`storebox_forecast_model_fallback_total{reason}`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from prometheus_client import CollectorRegistry, Counter

from edge.forecast.features import FEATURE_NAMES, SCHEMA_VERSION

__all__ = [
    "BATCH_ROWS",
    "KINDS",
    "MODEL_NAME",
    "DemandModel",
    "ForecastMetrics",
    "ModelMetadata",
    "load_demand_model",
    "parse_metadata",
    "shipped_models_dir",
]

log = logging.getLogger("storebox.forecast")

MODEL_NAME = "demand-v1"
KINDS = ("onnx", "tflite")
BATCH_ROWS = 8192  # rows per inference call: bounded memory, still long enough to amortise the call
FALLBACK_REASONS = ("disabled", "missing", "corrupt", "metadata", "schema", "shape")


def shipped_models_dir() -> Path:
    """The models/ directory next to the edge package (the shipped model files)."""
    return Path(__file__).resolve().parents[2] / "models"


class ForecastMetrics:
    """Prometheus metrics of the forecast model, registered on the registry passed in."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.fallback = Counter(
            "storebox_forecast_model_fallback",
            "Times the learned demand model could not be used and the statistical methods stood in, by reason",
            ["reason"],
            registry=registry,
        )


class DemandModel(Protocol):
    name: str
    kind: str
    schema_version: str

    def predict(self, features: np.ndarray) -> np.ndarray:
        """(rows,) float32 expected daily demand >= 0 of feature rows (rows, len(FEATURE_NAMES))."""
        ...


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    """What demand-v1.json says about the model files."""

    name: str
    schema_version: str
    feature_names: tuple[str, ...]
    input_name: str
    output_name: str
    scale_feature: str  # output transform: demand = output * features[scale_feature], clipped at 0
    tolerance_rtol: float  # ONNX and .tflite agree within rtol * |y| + atol on the output
    tolerance_atol: float
    dispersion: float  # residual variance ≈ dispersion * mean on held-out data
    files: dict[str, str]  # kind -> file name


class MetadataError(ValueError):
    """demand-v1.json is not what the runtime needs."""


def parse_metadata(raw: bytes | str) -> ModelMetadata:
    """ModelMetadata from JSON text; MetadataError when anything is missing or of the wrong type."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MetadataError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MetadataError("not a JSON object")

    def get(obj: Any, key: str, kind: type | tuple[type, ...]) -> Any:
        if not isinstance(obj, dict) or key not in obj or not isinstance(obj[key], kind) or isinstance(obj[key], bool):
            raise MetadataError(f"{key}: missing or not {kind}")
        return obj[key]

    names = get(doc, "feature_names", list)
    if not all(isinstance(n, str) for n in names):
        raise MetadataError("feature_names: not all strings")
    output = get(doc, "output", dict)
    transform = get(output, "transform", dict)
    if get(transform, "kind", str) != "multiply_feature":
        raise MetadataError("output.transform.kind: only multiply_feature is known")
    tol = get(doc, "tolerance", dict)
    files = get(doc, "files", dict)
    file_names: dict[str, str] = {}
    for kind in KINDS:
        entry = files.get(kind)
        if entry is not None:
            file_names[kind] = get(entry, "file", str)
    spread = get(doc, "residual_spread", dict)
    return ModelMetadata(
        name=get(doc, "name", str),
        schema_version=get(doc, "schema_version", str),
        feature_names=tuple(names),
        input_name=get(doc, "input", str),
        output_name=get(output, "name", str),
        scale_feature=get(transform, "feature", str),
        tolerance_rtol=float(get(tol, "rtol", (int, float))),
        tolerance_atol=float(get(tol, "atol", (int, float))),
        dispersion=float(get(spread, "dispersion", (int, float))),
        files=file_names,
    )


class _Fallback(Exception):
    def __init__(self, reason: str, zh: str, en: str) -> None:
        super().__init__(en)
        self.reason, self.zh, self.en = reason, zh, en


class _Model:
    """Shared part: output transform and batching; subclasses run one batch."""

    kind = ""

    def __init__(self, meta: ModelMetadata) -> None:
        self.name = meta.name
        self.schema_version = meta.schema_version
        self.metadata = meta
        self._scale_col = meta.feature_names.index(meta.scale_feature)
        self._n_features = len(meta.feature_names)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, features: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(features, np.float32)
        if x.ndim != 2 or x.shape[1] != self._n_features:
            raise ValueError(f"features must be (rows, {self._n_features}), got {x.shape}")
        out = np.empty(x.shape[0], np.float32)
        for b0 in range(0, x.shape[0], BATCH_ROWS):
            out[b0 : b0 + BATCH_ROWS] = self._run(x[b0 : b0 + BATCH_ROWS]).reshape(-1)
        out *= x[:, self._scale_col]
        np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0)
        np.maximum(out, 0.0, out=out)
        return out


class _OnnxModel(_Model):
    kind = "onnx"

    def __init__(self, meta: ModelMetadata, path: Path) -> None:
        import onnxruntime as ort  # type: ignore[import-untyped]

        super().__init__(meta)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for every kind of bad file
            raise _Fallback("corrupt", f"模型文件无法加载：{exc}", f"model file does not load: {exc}") from None
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        _check_shapes([(i.name, list(i.shape)) for i in inputs], [(o.name, list(o.shape)) for o in outputs], meta)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        result = self._session.run([self.metadata.output_name], {self.metadata.input_name: batch})
        return np.asarray(result[0], np.float32)


class _TfliteModel(_Model):
    kind = "tflite"

    def __init__(self, meta: ModelMetadata, path: Path) -> None:
        from ai_edge_litert.interpreter import Interpreter  # type: ignore[import-untyped]

        super().__init__(meta)
        try:
            self._interp = Interpreter(model_path=str(path), num_threads=2)
            self._interp.allocate_tensors()
        except Exception as exc:  # LiteRT raises ValueError/RuntimeError for bad flatbuffers
            raise _Fallback("corrupt", f"模型文件无法加载：{exc}", f"model file does not load: {exc}") from None
        ins, outs = self._interp.get_input_details(), self._interp.get_output_details()
        _check_shapes(
            [(d["name"], [int(v) for v in d.get("shape_signature", d["shape"])]) for d in ins],
            [(d["name"], [int(v) for v in d.get("shape_signature", d["shape"])]) for d in outs],
            meta,
        )
        self._in = ins[0]["index"]
        self._out = outs[0]["index"]
        self._rows = -1

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if batch.shape[0] != self._rows:
            self._interp.resize_tensor_input(self._in, list(batch.shape))
            self._interp.allocate_tensors()
            self._rows = batch.shape[0]
        self._interp.set_tensor(self._in, batch)
        self._interp.invoke()
        return np.array(self._interp.get_tensor(self._out), np.float32)


def _check_shapes(
    inputs: list[tuple[str, list[Any]]], outputs: list[tuple[str, list[Any]]], meta: ModelMetadata
) -> None:
    """One input (batch, features) and one output (batch, 1), named as the metadata says."""
    n = len(meta.feature_names)
    ok = (
        len(inputs) == 1
        and len(outputs) == 1
        and len(inputs[0][1]) == 2
        and inputs[0][1][1] == n
        and len(outputs[0][1]) == 2
        and outputs[0][1][1] == 1
    )
    if not ok:
        raise _Fallback(
            "shape",
            f"模型输入输出形状不符：输入 {inputs}，输出 {outputs}，应为 (批, {n}) 和 (批, 1)",
            f"model input/output shapes do not match: inputs {inputs}, outputs {outputs},"
            f" want (batch, {n}) and (batch, 1)",
        )


def _load(models_dir: Path, kind: str) -> _Model:
    meta_path = models_dir / f"{MODEL_NAME}.json"
    try:
        raw = meta_path.read_bytes()
    except OSError:
        raise _Fallback("missing", f"找不到模型说明文件 {meta_path}", f"model metadata {meta_path} not found") from None
    try:
        meta = parse_metadata(raw)
    except MetadataError as exc:
        raise _Fallback(
            "metadata", f"模型说明文件 {meta_path} 无效：{exc}", f"model metadata {meta_path} is invalid: {exc}"
        ) from None
    if meta.schema_version != SCHEMA_VERSION or meta.feature_names != FEATURE_NAMES:
        raise _Fallback(
            "schema",
            f"模型特征版本 {meta.schema_version} 与本机 {SCHEMA_VERSION} 不符（或特征名不同）",
            f"model feature schema {meta.schema_version} does not match this box's {SCHEMA_VERSION}"
            " (or the feature names differ)",
        )
    if meta.scale_feature not in meta.feature_names:
        raise _Fallback("metadata", "模型说明的输出变换列不存在", "the output transform names an unknown feature")
    name = meta.files.get(kind)
    path = models_dir / (name if name else f"{MODEL_NAME}.{kind}")
    if name is None or Path(name).name != name or not path.is_file():
        raise _Fallback("missing", f"找不到模型文件 {path}", f"model file {path} not found")
    return _OnnxModel(meta, path) if kind == "onnx" else _TfliteModel(meta, path)


def load_demand_model(models_dir: Path, kind: str, *, metrics: ForecastMetrics | None = None) -> DemandModel | None:
    """The demand model of `kind` ("onnx" | "tflite") from models_dir, or None (see the module docstring)."""
    try:
        if kind not in KINDS:
            raise _Fallback(
                "disabled",
                f"未启用学习模型（{kind}），使用统计方法",
                f"learned model disabled ({kind}), statistical methods",
            )
        model = _load(models_dir, kind)
    except _Fallback as fb:
        log.warning(
            "需求预测模型不可用，改用统计方法：%s / demand model unavailable, using statistical methods: %s",
            fb.zh,
            fb.en,
        )
        if metrics is not None:
            metrics.fallback.labels(reason=fb.reason).inc()
        return None
    log.info("需求预测模型已加载 / demand model loaded: %s (%s, %s)", model.name, model.kind, model.schema_version)
    return model
