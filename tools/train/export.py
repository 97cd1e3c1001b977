"""Write the trained MLP as ONNX (onnx.helper) and as .tflite (the TFLite flatbuffer schema that ai-edge-litert
ships), plus the metadata JSON the runtime checks. Both files hold the same float32 weights and compute
log-ratio layers -> Exp, so they agree to float32 rounding (the tolerance is measured and written down).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import flatbuffers  # type: ignore[import-untyped]
import numpy as np
import onnx
from ai_edge_litert import schema_py_generated as tfl  # type: ignore[import-untyped]
from onnx import TensorProto, helper, numpy_helper

from tools.train.train import Z_MAX

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "onnx_bytes", "tflite_bytes", "write_metadata"]

INPUT_NAME = "features"
OUTPUT_NAME = "ratio"
ONNX_OPSET = 17


def onnx_bytes(weights: list[np.ndarray], biases: list[np.ndarray], name: str) -> bytes:
    """ONNX graph: (MatMul, Add, Relu)* -> MatMul, Add -> Min(Z_MAX) -> Exp; input (N, F), output (N, 1)."""
    inits = []
    nodes = []
    prev = INPUT_NAME
    for k, (w, b) in enumerate(zip(weights, biases, strict=True)):
        inits += [
            numpy_helper.from_array(w.astype(np.float32), f"w{k}"),
            numpy_helper.from_array(b.astype(np.float32), f"b{k}"),
        ]
        nodes += [
            helper.make_node("MatMul", [prev, f"w{k}"], [f"mm{k}"]),
            helper.make_node("Add", [f"mm{k}", f"b{k}"], [f"a{k}"]),
        ]
        prev = f"a{k}"
        if k < len(weights) - 1:
            nodes.append(helper.make_node("Relu", [prev], [f"r{k}"]))
            prev = f"r{k}"
    inits.append(numpy_helper.from_array(np.array([Z_MAX], np.float32), "zmax"))
    nodes += [helper.make_node("Min", [prev, "zmax"], ["z"]), helper.make_node("Exp", ["z"], [OUTPUT_NAME])]
    n_in = weights[0].shape[0]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", 1])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], producer_name="storebox tools.train"
    )
    model.ir_version = 8  # readable by onnxruntime >= 1.14
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def tflite_bytes(weights: list[np.ndarray], biases: list[np.ndarray], name: str) -> bytes:
    """TFLite model: FULLY_CONNECTED (fused ReLU)* -> FULLY_CONNECTED -> MINIMUM(Z_MAX) -> EXP, dynamic batch."""
    buffers: list[Any] = [tfl.BufferT()]  # buffer 0: empty by convention
    tensors: list[Any] = []

    def tensor(shape: list[int], tname: str, data: np.ndarray | None = None, signature: list[int] | None = None) -> int:
        t = tfl.TensorT()
        t.shape = shape
        t.shapeSignature = signature
        t.type = tfl.TensorType.FLOAT32
        t.name = tname
        if data is None:
            t.buffer = 0
        else:
            buf = tfl.BufferT()
            buf.data = np.frombuffer(np.ascontiguousarray(data, np.float32).tobytes(), np.uint8).tolist()
            buffers.append(buf)
            t.buffer = len(buffers) - 1
        tensors.append(t)
        return len(tensors) - 1

    codes = []
    for op in (tfl.BuiltinOperator.FULLY_CONNECTED, tfl.BuiltinOperator.MINIMUM, tfl.BuiltinOperator.EXP):
        c = tfl.OperatorCodeT()
        c.builtinCode = op
        c.deprecatedBuiltinCode = min(op, 127)
        c.version = 1
        codes.append(c)
    operators = []
    n_in = weights[0].shape[0]
    prev = tensor([1, n_in], INPUT_NAME, signature=[-1, n_in])
    first = prev
    for k, (w, b) in enumerate(zip(weights, biases, strict=True)):
        wt = tensor([w.shape[1], w.shape[0]], f"w{k}", w.T)  # TFLite keeps (out, in)
        bt = tensor([b.shape[0]], f"b{k}", b)
        out = tensor([1, w.shape[1]], f"a{k}", signature=[-1, w.shape[1]])
        op = tfl.OperatorT()
        op.opcodeIndex = 0
        op.inputs = [prev, wt, bt]
        op.outputs = [out]
        op.builtinOptionsType = tfl.BuiltinOptions.FullyConnectedOptions
        opts = tfl.FullyConnectedOptionsT()
        opts.fusedActivationFunction = (
            tfl.ActivationFunctionType.RELU if k < len(weights) - 1 else tfl.ActivationFunctionType.NONE
        )
        op.builtinOptions = opts
        operators.append(op)
        prev = out
    zmax = tensor([1], "zmax", np.array([Z_MAX], np.float32))
    z = tensor([1, 1], "z", signature=[-1, 1])
    op = tfl.OperatorT()
    op.opcodeIndex = 1
    op.inputs = [prev, zmax]
    op.outputs = [z]
    op.builtinOptionsType = tfl.BuiltinOptions.MaximumMinimumOptions
    op.builtinOptions = tfl.MaximumMinimumOptionsT()
    operators.append(op)
    out = tensor([1, 1], OUTPUT_NAME, signature=[-1, 1])
    op = tfl.OperatorT()
    op.opcodeIndex = 2
    op.inputs = [z]
    op.outputs = [out]
    op.builtinOptionsType = tfl.BuiltinOptions.ExpOptions
    op.builtinOptions = tfl.ExpOptionsT()
    operators.append(op)

    sub = tfl.SubGraphT()
    sub.tensors = tensors
    sub.inputs = [first]
    sub.outputs = [out]
    sub.operators = operators
    sub.name = "main"
    model = tfl.ModelT()
    model.version = 3
    model.operatorCodes = codes
    model.subgraphs = [sub]
    model.description = name
    model.buffers = buffers
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_metadata(path: Path, meta: dict[str, Any]) -> None:
    path.write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
