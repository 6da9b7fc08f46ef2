"""FP16 and INT8 (Q/DQ) artifacts: structure TensorRT requires, ONNX Runtime execution, drift, bad input."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from simplehand_deploy.cli import _run, deploy
from simplehand_deploy.drift import measure_drift
from simplehand_deploy.export import export_onnx
from simplehand_deploy.model import create_model
from simplehand_deploy.ort import make_session, run
from simplehand_deploy.precision import convert_fp16, quantize_int8, sensitive_nodes


@pytest.fixture(scope="module")
def arts(tmp_path_factory):
    from simplehand_deploy.calibration import build_calibration_set

    root = tmp_path_factory.mktemp("prec")
    fp32 = export_onnx(create_model("tiny", seed=0), root / "m-fp32.onnx", progress=False)
    calib = build_calibration_set(root / "cal", synthetic=True, num=8, seed=1, progress=False)
    fp16 = convert_fp16(fp32, root / "m-fp16.onnx")
    int8 = quantize_int8(fp32, calib, root / "m-int8.onnx", progress=False)
    return {"fp32": fp32, "fp16": fp16, "int8": int8, "calib": calib, "root": root}


def test_int8_qdq_is_what_tensorrt_accepts(arts):
    model = onnx.load(arts["int8"])
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) <= 17
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in model.graph.node if n.op_type == "Constant"}
    values = {**inits, **consts}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(qdq) > 20
    for n in qdq:
        zp = values[n.input[2]]
        assert zp.dtype == np.int8 and not zp.any(), n.name  # symmetric: zero point int8 0
        assert values[n.input[1]].dtype == np.float32  # FP32 scales
    producers = {o: n for n in model.graph.node for o in n.output}
    seen = set()
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose"):
            continue
        dq = producers.get(node.input[1])
        depthwise = any(a.name == "group" and a.i > 1 for a in node.attribute)
        if depthwise:  # the `dense` placement keeps depthwise convs float ...
            assert dq is None, node.name
            continue
        assert dq is not None and dq.op_type == "DequantizeLinear", node.name  # ... and quantises every other conv
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        scale = values[dq.input[1]]
        assert scale.ndim == 1 and scale.size > 1  # per-channel
        expected = 0 if node.op_type == "Conv" else 1
        assert axis == expected, (node.name, axis)
        seen.add(node.op_type)
    assert seen == {"Conv", "ConvTranspose"}


def test_sensitive_parts_stay_float(arts):
    src = onnx.load(arts["fp32"])
    marks = sensitive_nodes(src.graph)
    assert marks["vertex_head"] and marks["grid_path"]
    head = {n.name for n in src.graph.node if n.name in marks["vertex_head"] and n.op_type in ("MatMul", "Gemm")}
    assert len(head) == 2  # final token upsample (336 -> 778) and the 64 -> 3 projection
    weights = {n.name: [i for i in n.input if i in {t.name for t in src.graph.initializer}] for n in src.graph.node
               if n.name in head}
    model = onnx.load(arts["int8"])
    producers = {o: n for n in model.graph.node for o in n.output}
    int8_head = [n for n in model.graph.node if n.name in head]
    assert len(int8_head) == 2
    assert not any(producers.get(i) is not None and producers[i].op_type == "DequantizeLinear"
                   for n in int8_head for i in n.input)
    fp16 = onnx.load(arts["fp16"])
    f32_inits = {t.name for t in fp16.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    assert all(w in f32_inits for ws in weights.values() for w in ws) and any(weights.values())  # head FP32
    assert {i.type.tensor_type.elem_type for i in [*fp16.graph.input, *fp16.graph.output]} == {onnx.TensorProto.FLOAT}
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in fp16.graph.initializer)
    ln = [n for n in fp16.graph.node if n.op_type == "LayerNormalization"]
    f16_inits = {t.name for t in fp16.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16}
    assert ln and not any(i in f16_inits for n in ln for i in n.input)  # norms stay FP32


def test_graphs_run_and_drift_is_small(arts):
    x = np.load(arts["calib"] / "images.npy")
    ref = run(make_session(arts["fp32"]), x)
    for p, bound_mm in (("fp16", 0.5), ("int8", 25.0)):  # untrained seed weights: loose, but not noise
        out = run(make_session(arts[p]), x)
        drift = np.linalg.norm(out["vertices"] - ref["vertices"], axis=-1).mean() * 1000
        assert 0 < drift < bound_mm, (p, drift)
    df = measure_drift([arts["fp32"], arts["fp16"], arts["int8"]], arts["calib"], model=create_model("tiny", seed=0))
    rows = {r["precision"]: r for r in df.iter_rows(named=True)}
    assert rows["fp32"]["vertex_drift_mean_mm"] < 1e-3
    assert rows["fp32"]["vertex_drift_mean_mm"] < rows["fp16"]["vertex_drift_mean_mm"]
    # The backbone runs in both FP16 and INT8, so its output (uv) drifts more in INT8. The vertices need not:
    # on seed weights they come mostly from the token regressor, which the `dense` INT8 keeps in FP32.
    assert rows["fp32"]["uv_drift_mean_px"] < rows["fp16"]["uv_drift_mean_px"] < rows["int8"]["uv_drift_mean_px"]
    assert rows["int8"]["vertex_drift_mean_mm"] > rows["fp32"]["vertex_drift_mean_mm"]
    assert rows["int8"]["pa_mpvpe_mm"] > 0 and rows["int8"]["num_samples"] == 8


def test_int8_bad_inputs_leave_nothing(arts, tmp_path, capsys):
    out = tmp_path / "q.onnx"
    code = _run(deploy, ["int8", "--onnx", str(arts["fp32"]), "--calib", str(arts["calib"]), "--out", str(out),
                         "--method", "kl", "--quiet"])
    assert code == 2 and "kl" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    code = _run(deploy, ["int8", "--onnx", str(arts["fp32"]), "--calib", str(empty), "--out", str(out), "--quiet"])
    assert code == 2 and "manifest" in capsys.readouterr().err
    (arts["root"] / "corrupt.onnx").write_bytes(b"\x00" * 10)
    code = _run(deploy, ["int8", "--onnx", str(arts["root"] / "corrupt.onnx"), "--calib", str(arts["calib"]),
                         "--out", str(out), "--quiet"])
    assert code == 2 and "corrupt.onnx" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".q.onnx*"))


def test_sensitivity_repair_meets_budget(arts, tmp_path):
    import json

    quantize_int8(arts["fp32"], arts["calib"], tmp_path / "d.onnx", max_drift_mm=1.0, progress=False)
    rep = json.loads((tmp_path / "d.json").read_text())["int8"]["sensitivity_repair"]
    assert rep["met"] and rep["excluded_groups"] == [] and rep["drift_all_quantised_mm"] <= 1.0  # dense: in budget
    out = quantize_int8(arts["fp32"], arts["calib"], tmp_path / "r.onnx", max_drift_mm=1.0, progress=False,
                        placement="all")
    rep = json.loads((tmp_path / "r.json").read_text())["int8"]["sensitivity_repair"]
    assert rep["drift_all_quantised_mm"] > 1.0  # untrained tiny, every layer INT8: over budget ...
    assert rep["met"] and rep["final_drift_mm"] <= 1.0 and rep["excluded_groups"]  # ... repair brings it under
    assert len(rep["group_sensitivity_mm"]) == 8 and {"cpu_ms_all_int8", "cpu_ms_repaired"} <= set(rep)
    assert 0 < rep["layers_int8"] < rep["layers_weighted"]  # some layers stay INT8, some were made float
    x = np.load(arts["calib"] / "images.npy")
    ref = run(make_session(arts["fp32"]), x[:16])
    drift = np.linalg.norm(run(make_session(out), x[:16])["vertices"] - ref["vertices"], axis=-1).mean() * 1000
    assert drift == pytest.approx(rep["final_drift_mm"], rel=1e-4)


def test_exclude_by_op_type_and_unknown_name(arts, tmp_path, capsys):
    def dq_matmuls(path):
        model = onnx.load(path)
        producers = {o: n for n in model.graph.node for o in n.output}
        mm = [n for n in model.graph.node if n.op_type == "MatMul"]
        return sum(any(producers.get(i) is not None and producers[i].op_type == "DequantizeLinear" for i in n.input)
                   for n in mm), model

    assert dq_matmuls(arts["int8"])[0] > 0  # by default MatMuls are quantised ...
    out = quantize_int8(arts["fp32"], arts["calib"], tmp_path / "nomm.onnx", exclude=["MatMul"], progress=False)
    count, model = dq_matmuls(out)
    assert count == 0  # ... and --exclude MatMul keeps every one of them float
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)  # convs still quantised
    bad = tmp_path / "bad.onnx"
    code = _run(deploy, ["int8", "--onnx", str(arts["fp32"]), "--calib", str(arts["calib"]), "--out", str(bad),
                         "--exclude", "NoSuchNode", "--quiet"])
    assert code == 2 and "NoSuchNode" in capsys.readouterr().err and not bad.exists()


def test_entropy_is_not_minmax(arts, tmp_path):
    """ORT's entropy calibrator degenerates to MinMax unless given a real histogram (see _entropy_bins)."""
    def scales(path):
        model = onnx.load(path)
        inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        return np.array([float(inits[n.input[1]]) for n in model.graph.node
                         if n.op_type == "QuantizeLinear" and inits[n.input[1]].size == 1])

    ent = quantize_int8(arts["fp32"], arts["calib"], tmp_path / "e.onnx", method="entropy", progress=False)
    mm, es = scales(arts["int8"]), scales(ent)
    assert mm.shape == es.shape and (es < mm - 1e-9).sum() > len(mm) // 4  # entropy clips: many smaller scales
    assert (es <= mm * (1 + 1e-6)).all()  # and never widens the range


def _qdq_consumers(path):
    """For each activation DQ: the (op_type, name) of the nodes reading it; and the weighted nodes with a DQ input."""
    model = onnx.load(path)
    inits = {t.name for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    readers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    act_dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in producers
              and producers[n.input[0]].input[0] not in inits]
    quantised = {n.name for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm")
                 and any(producers.get(i) is not None and producers[i].op_type == "DequantizeLinear" for i in n.input)}
    return {dq.name: [(r.op_type, r.name) for r in readers.get(dq.output[0], [])] for dq in act_dq}, quantised


def test_qdq_only_on_inputs_of_quantised_layers(arts):
    """TensorRT's placement: no Q/DQ on layer outputs (in front of GELU, softmax, residual adds), and no
    float layer reading a DQ it shares with a quantised one (ORT's default does both)."""
    readers, quantised = _qdq_consumers(arts["int8"])
    assert readers and quantised
    for dq, users in readers.items():
        assert users and all(op in ("Conv", "ConvTranspose", "MatMul", "Gemm") and name in quantised
                             for op, name in users), (dq, users)
    # the uv head's pooling reads the same feature map as the (quantised) deconvolution, but in float
    model = onnx.load(arts["int8"])
    producers = {o: n for n in model.graph.node for o in n.output}
    deconv = next(n for n in model.graph.node if n.op_type == "ConvTranspose")
    assert producers[deconv.input[0]].op_type == "DequantizeLinear"
    feature = producers[producers[deconv.input[0]].input[0]].input[0]
    pools = [n for n in model.graph.node if n.op_type == "ReduceMean" and feature in n.input]
    assert pools  # float path to the uv head


def test_placement_dense_vs_all(arts, tmp_path, capsys):
    import json

    src = onnx.load(arts["fp32"])
    marks = sensitive_nodes(src.graph)
    weighted = {n.name for n in src.graph.node if n.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm")}
    token = marks["token_regressor"] & weighted
    assert len(token) > 10 and marks["depthwise"]  # the three encoder stages' layers; RepMixer depthwise convs
    _, dense_q = _qdq_consumers(arts["int8"])
    assert not dense_q & (token | marks["depthwise"])
    out = tmp_path / "all.onnx"
    code = _run(deploy, ["int8", "--onnx", str(arts["fp32"]), "--calib", str(arts["calib"]), "--out", str(out),
                         "--placement", "all"])
    assert code == 0 and "of weighted-layer MACs in INT8" in capsys.readouterr().err  # messages go to stderr
    _, all_q = _qdq_consumers(out)
    assert dense_q < all_q and (token - marks["vertex_head"]) <= all_q and marks["depthwise"] <= all_q
    assert not all_q & (marks["grid_path"] | marks["vertex_head"])  # always float, whatever the placement
    share = {p: json.loads(path.with_suffix(".json").read_text())["int8"]["int8_mac_share"]
             for p, path in (("dense", arts["int8"]), ("all", out))}
    assert 0.3 < share["dense"] < share["all"] < 1.0, share
    bad = tmp_path / "bad.onnx"
    code = _run(deploy, ["int8", "--onnx", str(arts["fp32"]), "--calib", str(arts["calib"]), "--out", str(bad),
                         "--placement", "everything", "--quiet"])
    assert code == 2 and "--placement" in capsys.readouterr().err and not bad.exists()
