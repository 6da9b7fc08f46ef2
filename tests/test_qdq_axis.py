"""Per-channel weight scales run along the output-channel axis of every quantised Gemm and MatMul.

TensorRT folds a per-channel weight scale into a per-output-channel INT8 GEMM; a scale along the reduced (input)
axis has no such form. A Gemm without transB and a MatMul store their weight as (K, N) = (in, out), so their
output axis is 1; a Gemm with transB=1 stores (N, K), output axis 0. Exported graphs hold all three (onnxsim
folds MatMul + Add into Gemm with transB=0), so a quantiser that put the Gemm axis at 0 regardless of transB
would scale 14 of tiny's 15 Gemm weights along their reduced axis.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from simplehand_deploy.ort import make_session
from simplehand_deploy.precision.qdq import ort_quantize

K, N = 16, 12
OUT_AXIS = {"gemm_kn": 1, "matmul_kn": 1, "gemm_nk": 0}  # where each layer's output channels are in its weight


def _graph(path: Path) -> None:
    """image (B, K) read by three layers side by side: Gemm transB=0 with W (K, N), MatMul with W (K, N), Gemm
    transB=1 with W (N, K); each writes its own (B, N) output.

    Each weight's output channels span four decades of magnitude, so scales along the input axis (set by the
    largest output channel) round the small channels to zero and the float comparison below fails."""
    rng = np.random.default_rng(0)
    mag = np.logspace(-4, 0, N).astype(np.float32)
    w_kn = rng.standard_normal((K, N)).astype(np.float32) * mag[None, :]
    inits = [
        numpy_helper.from_array(w_kn, "w_gemm_kn"),
        numpy_helper.from_array(np.zeros(N, np.float32), "b_gemm_kn"),
        numpy_helper.from_array(rng.standard_normal((K, N)).astype(np.float32) * mag[None, :], "w_matmul_kn"),
        numpy_helper.from_array(np.ascontiguousarray(rng.standard_normal((K, N)).astype(np.float32).T
                                                     * mag[:, None]), "w_gemm_nk"),
        numpy_helper.from_array(np.zeros(N, np.float32), "b_gemm_nk"),
    ]
    nodes = [
        helper.make_node("Gemm", ["image", "w_gemm_kn", "b_gemm_kn"], ["gemm_kn"], name="gemm_kn"),  # transB = 0
        helper.make_node("MatMul", ["image", "w_matmul_kn"], ["matmul_kn"], name="matmul_kn"),
        helper.make_node("Gemm", ["image", "w_gemm_nk", "b_gemm_nk"], ["gemm_nk"], name="gemm_nk", transB=1),
    ]
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["B", N]) for name in OUT_AXIS]
    graph = helper.make_graph(nodes, "axes", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["B", K])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _weight_dq(model: onnx.ModelProto) -> dict[str, tuple[int, np.ndarray]]:
    """Per quantised layer: (its weight DQ's axis, the DQ's scales)."""
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    out = {}
    for n in g.node:
        dq = producer.get(n.input[1])
        if n.op_type in ("Gemm", "MatMul") and dq is not None and dq.op_type == "DequantizeLinear":
            q = producer.get(dq.input[0])
            if dq.input[0] in inits or (q is not None and q.input[0] in inits):  # a weight, not an activation
                out[n.name] = (next((a.i for a in dq.attribute if a.name == "axis"), 1), inits[dq.input[1]])
    return out


def test_weight_scales_run_along_the_output_channels(tmp_path):
    src, dst = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    _graph(src)
    images = np.random.default_rng(1).standard_normal((32, K)).astype(np.float32)
    ort_quantize(src, dst, images, "minmax", [], 8, False)
    axes = _weight_dq(onnx.load(str(dst)))
    assert set(axes) == set(OUT_AXIS), axes
    for name, (axis, scale) in axes.items():
        assert axis == OUT_AXIS[name], (name, axis)
        assert scale.shape == (N,), (name, scale.shape)

    # the quantised graph computes what the float one does, channel by channel (the smallest output channels are
    # ~1e-4 of the largest: with input-axis scales they come out as 0, an error of 100% of their size)
    x = np.random.default_rng(2).standard_normal((16, K)).astype(np.float32)
    names = list(OUT_AXIS)
    ref = dict(zip(names, make_session(src).run(names, {"image": x}), strict=True))
    got = dict(zip(names, make_session(dst).run(names, {"image": x}), strict=True))
    for name in names:
        per_channel = np.abs(got[name] - ref[name]).max(axis=0) / np.abs(ref[name]).max(axis=0)
        assert per_channel.max() < 0.1, (name, per_channel)
