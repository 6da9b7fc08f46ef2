"""FP16 and INT8 (explicit Q/DQ) versions of an FP32 ONNX graph, for TensorRT 8.6 .. 11.

TensorRT 11 dropped precision flags and calibrators, so precision lives in the graph. Both
artifacts are built and *executed* on CPU (ONNX Runtime), which is how drift is measured here.

One job per module:
* `graph`: which nodes are sensitive, found by structure (onnxsim renames nodes): the uv head and the
  grid-coordinate path, the vertex head, the token regressor after grid sampling, depthwise convs;
* `fp16`: the FP16 graph with an FP32 island (norms, softmax, grid path, vertex head);
* `qdq`: INT8 Q/DQ quantisation (ONNX Runtime's quantiser, TensorRT-style placement);
* `repair`: sensitivity repair of an INT8 graph against a drift budget;
* `macs`: INT8 MAC share, read from a quantised graph (ours or anyone's);
* `scale_search`: output-aware search of the activation scales against the FP32 graph (`int8 --scale-search`);
* `ort_patches`: the pinned ONNX Runtime calibrator patches.
"""

from __future__ import annotations

from .fp16 import FP16_BLOCK_OPS, Fp16Config, convert_fp16, run_fp16
from .graph import INT8_OPS, sensitive_nodes
from .macs import int8_mac_share
from .qdq import (
    DEFAULT_PLACEMENT,
    DEFAULT_TARGET,
    METHODS,
    PLACEMENTS,
    TARGET_OPSET,
    TARGETS,
    Int8Config,
    Int8Result,
    quantize_int8,
    run_int8,
)

__all__ = ["DEFAULT_PLACEMENT", "DEFAULT_TARGET", "FP16_BLOCK_OPS", "INT8_OPS", "METHODS", "PLACEMENTS",
           "TARGETS", "TARGET_OPSET", "Fp16Config", "Int8Config", "Int8Result", "convert_fp16", "int8_mac_share",
           "quantize_int8", "run_fp16", "run_int8", "sensitive_nodes"]
