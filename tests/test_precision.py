"""FP16 and INT8 (Q/DQ) artifacts: structure TensorRT requires, ONNX Runtime execution, drift, bad input."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from teeth import assert_discriminates

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
    fp32 = export_onnx(create_model("tiny", seed=0), root / "m-fp32.onnx", progress=False).path
    calib = build_calibration_set(root / "cal", synthetic=True, num=8, seed=1, progress=False)
    fp16 = convert_fp16(fp32, root / "m-fp16.onnx").path
    int8 = quantize_int8(fp32, calib, root / "m-int8.onnx", progress=False, target="trt8").path
    trt10 = quantize_int8(fp32, calib, root / "m-int8-trt10.onnx", progress=False).path  # the default target
    return {"fp32": fp32, "fp16": fp16, "int8": int8, "trt10": trt10, "calib": calib, "root": root}


def test_int8_qdq_is_what_tensorrt_accepts(arts):
    """--target trt8: TensorRT 8.6's form, opset <= 17 and FP32 scales."""
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


def test_graphs_run_and_drift_is_small(trained_engines):
    """On the trained tiny (seed weights' vertices hardly depend on the image, so no vertex bound bites there)."""
    from simplehand_deploy.checkpoint import load_checkpoint

    arts, held_out = trained_engines, trained_engines["held_out"]
    x = np.load(held_out / "images.npy")
    ref = run(make_session(arts["fp32"]), x)
    # targets 0.05 and 1.0 mm; the trained tiny's images differ by >= 1.3 mm, so INT8 gets no looser bound
    bounds_mm = {"fp16": 0.1, "int8-trt10": 1.0, "int8-trt8": 1.0}
    assert_discriminates(ref["vertices"], max(bounds_mm.values()), "mean_dist_mm")
    for p, bound_mm in bounds_mm.items():
        out = run(make_session(arts[p]), x)
        drift = np.linalg.norm(out["vertices"] - ref["vertices"], axis=-1).mean() * 1000
        assert 0 < drift < bound_mm, (p, drift)
    model, _ = load_checkpoint(arts["checkpoint"])
    df = measure_drift([arts[p] for p in ("fp32", "fp16", "int8-trt10", "int8-trt8")], held_out, model=model)
    rows = dict(zip(("fp32", "fp16", "trt10", "trt8"), df.iter_rows(named=True), strict=True))
    assert rows["fp32"]["vertex_drift_mean_mm"] < 1e-3
    # FP16 keeps more of the network exact than INT8 does: both outputs drift in that order, for either target
    for int8 in ("trt10", "trt8"):
        for col in ("vertex_drift_mean_mm", "uv_drift_mean_px"):
            assert rows["fp32"][col] < rows["fp16"][col] < rows[int8][col], (int8, col)
        assert rows[int8]["pa_mpvpe_mm"] == pytest.approx(rows["fp32"]["pa_mpvpe_mm"], rel=0.15)
        assert rows[int8]["num_samples"] == 8 and rows[int8]["int8_target"] == int8  # drift rows name the target
    assert rows["fp16"]["int8_target"] is None


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


@pytest.fixture(scope="module")
def calib16(arts):
    from simplehand_deploy.calibration import build_calibration_set

    return build_calibration_set(arts["root"] / "cal16", synthetic=True, num=16, seed=2, progress=False)


def test_sensitivity_repair_meets_budget_on_held_out_crops(arts, calib16, tmp_path):
    """The budget is checked on the last 25% of the calibration set (at least 8), which never calibrates."""
    import json

    quantize_int8(arts["fp32"], calib16, tmp_path / "d.onnx", max_drift_mm=1.0, progress=False, target="trt8")
    side = json.loads((tmp_path / "d.json").read_text())["int8"]
    rep = side["sensitivity_repair"]
    assert rep["met"] and rep["excluded_groups"] == [] and rep["drift_all_quantised_mm"] <= 1.0  # dense: in budget
    assert rep["checked_on"]["crops"] == 8 and rep["checked_on"]["calibration_crops"] == 8
    assert "held out" in rep["checked_on"]["note"] and side["calibration"]["used"] == 8
    out = quantize_int8(arts["fp32"], calib16, tmp_path / "r.onnx", max_drift_mm=1.0, progress=False,
                        placement="all", target="trt8").path
    rep = json.loads((tmp_path / "r.json").read_text())["int8"]["sensitivity_repair"]
    assert rep["drift_all_quantised_mm"] > 1.0  # untrained tiny, every layer INT8: over budget ...
    assert rep["met"] and rep["final_drift_mm"] <= 1.0 and rep["excluded_groups"]  # ... repair brings it under
    assert len(rep["group_sensitivity_mm"]) == 8 and {"cpu_ms_all_int8", "cpu_ms_repaired"} <= set(rep)
    assert 0 < rep["layers_int8"] < rep["layers_weighted"]  # some layers stay INT8, some were made float
    x = np.load(calib16 / "images.npy")
    for crops, same in ((x[8:], True), (x[:8], False)):  # the figure is the held-out crops', not in-sample
        ref = run(make_session(arts["fp32"]), crops)
        drift = np.linalg.norm(run(make_session(out), crops)["vertices"] - ref["vertices"], axis=-1).mean() * 1000
        assert bool(drift == pytest.approx(rep["final_drift_mm"], rel=1e-4)) is same


def test_repair_that_misses_its_budget_exits_1(arts, calib16, tmp_path, capsys):
    out = tmp_path / "miss.onnx"  # trt10: the FP16 remainder drifts even with every layer group float
    code = _run(deploy, ["int8", "--onnx", str(arts["fp32"]), "--calib", str(calib16), "--out", str(out),
                         "--max-drift-mm", "0.000001", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "missed its budget" in err and "held-out" in err
    assert out.is_file()  # the artifact is kept, its sidecar says the budget was not met
    import json

    assert json.loads(out.with_suffix(".json").read_text())["int8"]["sensitivity_repair"]["met"] is False


def test_repair_needs_enough_crops_to_hold_some_out(arts, tmp_path, capsys):
    out = tmp_path / "few.onnx"
    code = _run(deploy, ["int8", "--onnx", str(arts["fp32"]), "--calib", str(arts["calib"]), "--out", str(out),
                         "--max-drift-mm", "1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "--max-drift-mm" in err and "--num 16" in err and not out.exists()


def test_exclude_by_op_type_and_unknown_name(arts, tmp_path, capsys):
    def dq_matmuls(path):
        model = onnx.load(path)
        producers = {o: n for n in model.graph.node for o in n.output}
        mm = [n for n in model.graph.node if n.op_type == "MatMul"]
        return sum(any(producers.get(i) is not None and producers[i].op_type == "DequantizeLinear" for i in n.input)
                   for n in mm), model

    assert dq_matmuls(arts["int8"])[0] > 0  # by default MatMuls are quantised ...
    out = quantize_int8(arts["fp32"], arts["calib"], tmp_path / "nomm.onnx", exclude=["MatMul"], progress=False).path
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

    ent = quantize_int8(arts["fp32"], arts["calib"], tmp_path / "e.onnx", method="entropy", progress=False,
                        target="trt8").path
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


def _gemm_weight_axes(path):
    """(op_type, transB) of each Gemm / MatMul with a weight DQ, asserting its scales run along the output
    channels, never the reduced axis (tests/test_qdq_axis.py): axis 1 of a (K, N) weight, 0 of an (N, K) one."""
    model = onnx.load(path)
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    seen = []
    for node in model.graph.node:
        dq = producers.get(node.input[1]) if node.op_type in ("Gemm", "MatMul") else None
        if dq is None or dq.op_type != "DequantizeLinear":
            continue  # float
        q = producers.get(dq.input[0])
        weight = dq.input[0] if q is None else q.input[0]  # int8 data, or the FP32 weight of its Q (Q/DQ pair)
        if weight not in values:
            continue  # activation x activation
        trans_b = any(a.name == "transB" and a.i for a in node.attribute)
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        assert axis == (0 if trans_b else 1), (node.name, trans_b, axis)
        assert values[dq.input[1]].size == values[weight].shape[axis] > 1, node.name
        seen.append((node.op_type, trans_b))
    return seen


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
    # onnxsim folds the Linear layers' MatMul + Add into transB=0 Gemms with (K, N) weights: scales on axis 1
    assert ("Gemm", False) in _gemm_weight_axes(out) and ("MatMul", False) in _gemm_weight_axes(out)
    share = {p: json.loads(path.with_suffix(".json").read_text())["int8"]["int8_mac_share"]
             for p, path in (("dense", arts["int8"]), ("all", out))}
    assert 0.3 < share["dense"] < share["all"] < 1.0, share
    bad = tmp_path / "bad.onnx"
    code = _run(deploy, ["int8", "--onnx", str(arts["fp32"]), "--calib", str(arts["calib"]), "--out", str(bad),
                         "--placement", "everything", "--quiet"])
    assert code == 2 and "--placement" in capsys.readouterr().err and not bad.exists()


def test_trt10_target_has_fp16_remainder_and_fp32_island(arts):
    """--target trt10 (default): opset 19, DQs feeding FP16 layers carry FP16 scales, the FP32 island
    (norms, softmax + attention scores, grid path, heads) stays FP32, the same Q/DQ placement as trt8."""
    import json

    from simplehand_deploy.precision import int8_mac_share
    from simplehand_deploy.precision.fp16 import island

    model = onnx.load(arts["trt10"])
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 19
    g = model.graph
    elem = {t.name: t.data_type for t in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    readers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    half, single = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    fp32_nodes = island(onnx.load(arts["fp32"]).graph)
    dqs = [n for n in g.node if n.op_type == "DequantizeLinear"]
    assert len(dqs) > 20
    for dq in dqs:  # FP16 scales where the DQ feeds FP16 layers; FP32 where it feeds the island (Q @ K^T)
        in_island = all(r.name in fp32_nodes for r in readers[dq.output[0]])
        assert elem[dq.input[1]] == (single if in_island else half), dq.name
    assert sum(elem[dq.input[1]] == half for dq in dqs) > len(dqs) // 2
    for n in g.node:  # a Q shares its DQ's scale, of one type
        if n.op_type == "QuantizeLinear":
            assert {elem[d.input[1]] for d in readers[n.output[0]]} == {elem[n.input[1]]}
    # weighted layers outside the island and not quantised (depthwise convs: `dense`) run FP16 ...
    convs = [n for n in g.node if n.op_type == "Conv" and n.input[1] in elem and n.name not in fp32_nodes]
    assert convs and all(elem[n.input[1]] == half for n in convs)
    # ... the island keeps FP32 weights and norms
    island_w = [n.input[1] for n in g.node if n.name in fp32_nodes and n.op_type in ("MatMul", "Gemm", "Conv")
                and n.input[1] in elem]
    assert island_w and all(elem[w] == single for w in island_w)
    ln = [n for n in g.node if n.op_type == "LayerNormalization"]
    assert ln and all(elem[n.input[1]] == single for n in ln)
    side = json.loads(arts["trt10"].with_suffix(".json").read_text())
    trt8 = json.loads(arts["int8"].with_suffix(".json").read_text())
    assert side["int8_target"] == "trt10" and side["opset"] == 19 and trt8["int8_target"] == "trt8"
    assert side["int8"]["excluded_nodes"] == trt8["int8"]["excluded_nodes"]
    assert side["int8"]["int8_mac_share"] == pytest.approx(int8_mac_share(arts["int8"])) == pytest.approx(
        int8_mac_share(model))
    assert producers  # graph walked
    x = np.load(arts["calib"] / "images.npy")
    ref = run(make_session(arts["fp32"]), x)
    d10, d8 = (np.linalg.norm(run(make_session(arts[k]), x)["vertices"] - ref["vertices"], axis=-1).mean()
               for k in ("trt10", "int8"))
    assert 0 < d8 < d10 < 0.005  # metres: the FP16 remainder adds drift (seed weights), still the same model


def test_int8_bad_target_is_a_usage_error(arts, tmp_path, capsys):
    out = tmp_path / "t.onnx"
    code = _run(deploy, ["int8", "--onnx", str(arts["fp32"]), "--calib", str(arts["calib"]), "--out", str(out),
                         "--target", "trt11", "--quiet"])
    assert code == 2 and "--target" in capsys.readouterr().err and not out.exists()


def test_int8_sidecar_records_the_graphs_own_opset(arts, tmp_path):
    """A trt8 graph quantised from an opset-16 export (TensorRT 8.5) stays opset 16, and its sidecar says 16."""
    from simplehand_deploy.artifact import OnnxArtifact

    src = export_onnx(create_model("tiny", seed=0), tmp_path / "m16.onnx", opset=16, progress=False).path
    out = quantize_int8(src, arts["calib"], tmp_path / "m16-int8.onnx", progress=False, target="trt8").path
    graph_opset = next(o.version for o in onnx.load(out).opset_import if o.domain in ("", "ai.onnx"))
    assert graph_opset == 16
    assert OnnxArtifact.read(out).opset == 16
    assert OnnxArtifact.read(arts["trt10"]).opset == 19 and OnnxArtifact.read(arts["int8"]).opset == 17
