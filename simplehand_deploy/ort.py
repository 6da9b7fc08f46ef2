"""ONNX Runtime sessions for our graphs: the CPU stand-in for TensorRT in parity and drift checks.

Q/DQ graphs run with graph optimisations OFF by default: Q/DQ pairs then execute as float fake
quantisation (round, clip, rescale) followed by float Conv/MatMul, which is TensorRT's explicit
quantisation semantics up to accumulation order. ORT's fused x86 int8 kernels saturate 16-bit
intermediates and roughly double the error (docs/precision.md), so they never produce
our INT8 drift figures.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ._deps import require
from .errors import UsageError


def graph_kind(path_or_model: str | os.PathLike[str] | Any) -> str:
    """'int8' for Q/DQ graphs, 'fp16' for graphs holding float16 weights, else 'fp32'."""
    import onnx

    model = path_or_model if hasattr(path_or_model, "graph") else onnx.load(str(path_or_model))
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        return "int8"
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        return "fp16"
    return "fp32"


def make_session(
    path: str | os.PathLike[str],
    *,
    threads: int | None = None,
    providers: list[str] | None = None,
    fake_quant: bool | None = None,
    spinning: bool = True,
) -> Any:
    """An InferenceSession; `fake_quant=None` turns it on automatically for Q/DQ graphs.

    `spinning=False` sets `session.intra_op.allow_spinning=0`: idle intra-op threads sleep instead of
    spin-waiting for the next parallel section (what a pool that claims every vCPU costs everyone else).
    """
    ort = require("onnxruntime")
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"ONNX file {p}: no such file")
    try:
        kind = graph_kind(p)
    except Exception as exc:
        raise UsageError(f"ONNX file {p}: not a readable ONNX model ({type(exc).__name__})") from None
    if fake_quant is None:
        fake_quant = kind == "int8"
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    if fake_quant:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    # FP16 graphs load with the default optimisation level: their FP32 island is built so that ORT's
    # fusions do not trip on it (precision.graph.attention_scores), as users' own sessions will be.
    try:
        return ort.InferenceSession(str(p), sess_options=opts, providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"ONNX file {p}: ONNX Runtime cannot load it ({first})") from None


def run(session: Any, images: np.ndarray, batch_size: int = 8) -> dict[str, np.ndarray]:
    """Run `image` -> {uv, vertices} in batches (outputs as float32 numpy)."""
    outs: dict[str, list[np.ndarray]] = {"uv": [], "vertices": []}
    for i in range(0, len(images), batch_size):
        res = session.run(["uv", "vertices"], {"image": np.ascontiguousarray(images[i : i + batch_size])})
        outs["uv"].append(np.asarray(res[0], dtype=np.float32))
        outs["vertices"].append(np.asarray(res[1], dtype=np.float32))
    return {k: np.concatenate(v) for k, v in outs.items()}
