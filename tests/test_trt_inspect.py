"""Engine precision from inspector dumps (`check-engine`): datatypes decide, names never do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simplehand_deploy.cli import _run, deploy
from simplehand_deploy.errors import UsageError
from simplehand_deploy.trt.inspect import (
    analyse,
    check_engine,
    expected_share,
    judge,
    layer_kind,
    layer_precision,
    load_dump,
    onnx_int8_weight_share,
    parse_datatype,
    tensor_datatype,
)

FIX = Path(__file__).parent / "fixtures" / "trt"


def _dump(name: str) -> dict:
    return load_dump(FIX / name)


@pytest.mark.parametrize("text, want", [
    ("Channel major INT8 format where channel % 32 == 0", "int8"),
    ("Row major Int8 format", "int8"),
    ("Row major linear FP32", "fp32"),
    ("Channel major FP16 format where channel % 8 == 0", "fp16"),
    ("Half", "fp16"), ("Float", "fp32"), ("INT8", "int8"),
    ("Two wide channel vectorized row major FP16 format", "fp16"),
    ("Channel major format where channel % 32 == 0", None), (None, None),
])
def test_datatype_strings(text, want):
    assert parse_datatype(text) == want


def test_tensor_fields_read_case_insensitively_and_split_or_joined():
    assert tensor_datatype({"Format/Datatype": "Row major Int8 format"}) == "int8"
    assert tensor_datatype({"format/datatype": "Row major linear FP32"}) == "fp32"
    assert tensor_datatype({"Format": "Channel major format where channel % 8 == 0", "DataType": "Half"}) == "fp16"
    assert tensor_datatype({"FORMAT": "Row major linear", "datatype": "Int8"}) == "int8"
    assert tensor_datatype({"Name": "x_to_fp16_int8"}) is None  # the name is not a datatype field


def test_compute_layer_rules():
    assert layer_kind({"ParameterType": "Convolution", "LayerType": "whatever"}) == "compute"
    assert layer_kind({"parametertype": "FullyConnected"}) == "compute"
    assert layer_kind({"LayerType": "CaskGemmMatrixMultiply"}) == "compute"
    assert layer_kind({"LayerType": "CaskDeconvolutionV2"}) == "compute"
    assert layer_kind({"LayerType": "Myelin", "ParameterType": "Convolution"}) == "hidden"
    assert layer_kind({"LayerType": "Reformat", "Name": "conv_int8_gemm"}) == "other"  # names are not evidence
    assert layer_kind({"LayerType": "Scale", "ParameterType": "Scale"}) == "other"
    # first input decides; weights of another precision make it the wider one (Int8 input, Float weights != INT8)
    i8 = {"Inputs": [{"Format/Datatype": "Row major Int8 format"}], "Weights": {"Type": "Int8", "Count": 9}}
    assert layer_precision(i8) == "int8"
    assert layer_precision({**i8, "Weights": {"Type": "Float", "Count": 9}}) == "fp32"
    assert layer_precision({"Inputs": [{"Format/Datatype": "Half"}, {"Format/Datatype": "Row major Int8 format"}]}) \
        == "fp16"


def test_real_int8_dump_passes_and_reports_weighted_shares():
    report = analyse(_dump("int8_trt86.json"))
    assert report.layout == "8.6-10"
    assert report.counts == {"int8": 3, "fp16": 2}
    assert report.share("int8") == pytest.approx((1728 + 16384 * 2) / (1728 + 16384 * 2 + 576 + 28224))
    assert len(report.hidden) == 1 and report.other == 2  # Myelin apart; reformat + DQ scale are not compute
    assert judge(report, "int8").ok
    assert not judge(report, "int8", min_share=0.6).ok
    assert report.mix == "int8+fp16"


def test_fake_int8_dump_fails():
    """Float convolutions with only Q/DQ layers in Int8 (and 'int8' in every name) are not an INT8 engine."""
    report = analyse(_dump("fake_int8_trt86.json"))
    verdict = judge(report, "int8")
    assert not verdict.ok and verdict.share == 0.0
    assert "/stem/conv/Conv_int8" in verdict.message
    assert report.mix == "fp32"


def test_fp16_names_with_float_convolutions_fail_in_11_layout():
    report = analyse(_dump("fp16_names_fp32_trt11.json"))
    assert report.layout == "11"
    assert not judge(report, "fp16").ok and report.share("fp16") == 0.0


def test_fp16_dump_in_11_layout_passes_with_fp32_island_and_hidden_myelin():
    report = analyse(_dump("fp16_trt11.json"))
    assert report.layout == "11" and report.hidden == ["__myl_MulAddSoftMax_0"]
    assert report.share("fp16") == pytest.approx(18112 / (18112 + 2336))
    assert judge(report, "fp16").ok and report.mix == "fp16+fp32"
    assert not judge(report, "int8").ok


def test_names_only_dump_is_unverifiable():
    verdict = judge(analyse(_dump("names_only.json")), "int8")
    assert not verdict.ok and verdict.share is None and "unverifiable" in verdict.message


def test_no_layers_list_or_not_json_is_a_usage_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UsageError, match="not JSON"):
        check_engine(bad, "int8")
    bad.write_text(json.dumps({"Bindings": []}))
    with pytest.raises(UsageError, match='no "Layers" list'):
        check_engine(bad, "int8")


def test_check_engine_exit_codes(tmp_path, capsys):
    assert _run(deploy, ["check-engine", str(FIX / "int8_trt86.json"), "--precision", "int8"]) == 0
    out = capsys.readouterr().out
    assert "int8" in out and "54.5%" in out and "Myelin" in out
    assert _run(deploy, ["check-engine", str(FIX / "fake_int8_trt86.json"), "--precision", "int8"]) == 1
    err = capsys.readouterr().err
    assert "Conv_int8" in err and err.count("\n") == 1
    assert _run(deploy, ["check-engine", str(FIX / "int8_trt86.json"), "--precision", "int8",
                         "--min-share", "0.9"]) == 1
    assert _run(deploy, ["check-engine", str(FIX / "names_only.json"), "--precision", "int8"]) == 1
    assert _run(deploy, ["check-engine", str(FIX / "fp16_trt11.json"), "--precision", "fp16"]) == 0
    bad = tmp_path / "x.json"
    bad.write_text("[1, 2")
    capsys.readouterr()
    assert _run(deploy, ["check-engine", str(bad), "--precision", "int8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and str(bad) in err
    bad.write_text(json.dumps({"layers": []}))
    assert _run(deploy, ["check-engine", str(bad), "--precision", "int8"]) == 2
    assert _run(deploy, ["check-engine", str(tmp_path / "absent.json"), "--precision", "int8"]) == 2
    assert _run(deploy, ["check-engine", str(FIX / "int8_trt86.json"), "--precision", "int4"]) == 2


def test_expected_share_from_artifact_sidecar(tmp_path):
    from simplehand_deploy.artifact import OnnxArtifact

    def share(doc):
        (tmp_path / "m.json").write_text(json.dumps(doc))
        return OnnxArtifact.read(tmp_path / "m.onnx").int8_share

    assert expected_share("int8", share({"int8": {"int8_mac_share": 0.95}})) == pytest.approx(0.75)
    assert expected_share("int8", share({"int8_mac_share": 0.62})) == pytest.approx(0.42)  # ModelOpt sidecar layout
    assert expected_share("int8", share({})) == 0.5 and expected_share("fp16", 0.9) == 0.5


def test_no_tf32_reaches_the_builder(monkeypatch, tmp_path):
    """`build --no-tf32` and `engine --no-tf32` clear TF32 (the builder records it in key and sidecar)."""
    import simplehand_deploy.pipeline as pipeline
    import simplehand_deploy.trt.build as build

    seen: dict[str, object] = {}

    def fake_build(onnx, **kw):
        seen["build"] = kw["tf32"]
        return build.EngineArtifact(tmp_path / "k.plan", key="k", cached=True)

    def fake_job(cfg=None, /, **kw):  # the CLI passes one EngineJobConfig
        seen["engine"] = cfg.tf32 if cfg is not None else kw["tf32"]
        return pipeline.EngineJob(())

    monkeypatch.setattr(build, "build_engine", fake_build)
    monkeypatch.setattr(pipeline, "run_engine_job", fake_job)
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    assert _run(deploy, ["build", "--onnx", str(onnx), "--no-tf32"]) == 0 and seen["build"] is False
    assert _run(deploy, ["build", "--onnx", str(onnx)]) == 0 and seen["build"] is True
    assert _run(deploy, ["engine", "--no-tf32", "--quiet"]) == 0 and seen["engine"] is False


def test_onnx_int8_weight_share_counts_quantised_layers_by_weight(tmp_path):
    """Two MatMuls: one reads a DequantizeLinear (INT8 in TensorRT), one reads float; weights 6 and 2 elements."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w_q = numpy_helper.from_array(np.ones((3, 2), np.float32), "w_q")
    w_f = numpy_helper.from_array(np.ones((2, 1), np.float32), "w_f")
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    zero = numpy_helper.from_array(np.array(0, np.int8), "z")
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xdq"]),
             helper.make_node("QuantizeLinear", ["w_q", "s", "z"], ["wq"]),
             helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["wdq"]),
             helper.make_node("MatMul", ["xdq", "wdq"], ["h"]),
             helper.make_node("MatMul", ["h", "w_f"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
                              [w_q, w_f, scale, zero])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert onnx_int8_weight_share(path) == pytest.approx(6 / 8)
    # the builder's expectation: the lower of sidecar MAC share and weight share, minus the margin
    assert expected_share("int8", 0.9, 0.75) == pytest.approx(0.55)
    assert expected_share("int8", 0.6, 0.75) == pytest.approx(0.4)


# --- weighing engine layers by the ONNX graph's MACs (`check-engine --onnx`) -----------------------------------


def _myelin_onnx(path: Path) -> Path:
    """The graph behind the *_myelin_gemm_trt10.json dumps: an INT8 stem conv (432 weights, 110,592 MACs), two
    INT8 MLP MatMuls (8,192 weights, 2,097,152 MACs each) and a float head (4,096 weights and MACs)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(a, n) for n, a in (
        ("w1", rng.normal(size=(16, 3, 3, 3)).astype(np.float32)),
        ("w2", rng.normal(size=(16, 512)).astype(np.float32)), ("w3", rng.normal(size=(512, 16)).astype(np.float32)),
        ("w4", rng.normal(size=(16, 256)).astype(np.float32)),
        ("s", np.array(0.05, np.float32)), ("z", np.array(0, np.int8)), ("zc", np.zeros(16, np.int8)),
        ("sc", np.full(16, 0.01, np.float32)), ("zm", np.zeros(512, np.int8)), ("sm", np.full(512, 0.01, np.float32)),
        ("tok", np.array([1, 16, 256], np.int64)))]

    def qdq(x: str, s: str = "s", z: str = "z", axis: int | None = None) -> list:
        kw = {} if axis is None else {"axis": axis}
        return [helper.make_node("QuantizeLinear", [x, s, z], [x + "_q"], name=f"/q/{x}", **kw),
                helper.make_node("DequantizeLinear", [x + "_q", s, z], [x + "_dq"], name=f"/dq/{x}", **kw)]

    nodes = [*qdq("x"), *qdq("w1", "sc", "zc", 0),
             helper.make_node("Conv", ["x_dq", "w1_dq"], ["c"], name="/stem/conv/Conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="/stem/act/Relu"),
             helper.make_node("Reshape", ["r", "tok"], ["t0"], name="/to_tokens/Reshape"),
             helper.make_node("Transpose", ["t0"], ["t"], name="/to_tokens/Transpose", perm=[0, 2, 1]),
             *qdq("t"), *qdq("w2", "sm", "zm", 1),
             helper.make_node("MatMul", ["t_dq", "w2_dq"], ["h"], name="/blocks.0/mlp/fc1/MatMul"),
             *qdq("h"), *qdq("w3", "sc", "zc", 1),
             helper.make_node("MatMul", ["h_dq", "w3_dq"], ["h2"], name="/blocks.0/mlp/fc2/MatMul"),
             helper.make_node("ReduceMean", ["h2"], ["p"], name="/head/ReduceMean", axes=[1], keepdims=0),
             helper.make_node("MatMul", ["p", "w4"], ["y"], name="/head/MatMul")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_layer_names_locate_onnx_nodes():
    from simplehand_deploy.trt.inspect import mac_weights, matched_nodes

    nodes = {"/a/Conv": 10, "/a/Conv_1": 20, "/b/MatMul": 40, "/c/Gemm": 8}
    assert matched_nodes("/a/Conv + /a/act/Relu", nodes) == ["/a/Conv"]
    assert matched_nodes("/a/Conv_1", nodes) == ["/a/Conv_1"]  # a longer node name is not its prefix's
    assert matched_nodes("{ForeignNode[/a/Conv_1.../b/MatMul]}", nodes) == ["/a/Conv_1", "/b/MatMul"]
    assert matched_nodes("/c/Gemm_MatMul", nodes) == ["/c/Gemm"]  # an extra layer the parser made for one node
    assert matched_nodes("/stem/conv/Conv_int8", nodes) == []
    # a node inside two layers is split between them; a layer matching nothing weighs 0
    assert mac_weights(["/b/MatMul", "/b/MatMul + /c/Gemm", "other"], nodes) == [20, 28, 0]


def test_weightless_myelin_gemms_weigh_their_onnx_macs(tmp_path):
    """TensorRT >= 9 may show Myelin-compiled GEMMs without Weights.Count: by weight count an honest INT8 engine
    looks 10% INT8 (refused); by the ONNX graph's MACs it is 99.9% INT8, and a fake one stays at 0%."""
    from simplehand_deploy.trt.build import required_share, verify_built
    from simplehand_deploy.trt.inspect import onnx_macs

    onnx_path = _myelin_onnx(tmp_path / "m.onnx")
    honest, fake = _dump("int8_myelin_gemm_trt10.json"), _dump("fake_int8_myelin_gemm_trt10.json")
    by_weights = analyse(honest)
    assert by_weights.share("int8") == pytest.approx(434 / (434 + 4096))
    assert not judge(by_weights, "int8", required_share(onnx_path, "int8", by_weights=True)).ok  # today's refusal
    macs = onnx_macs(onnx_path)
    assert macs["/blocks.0/mlp/fc1/MatMul"] == 2_097_152 and macs["/head/MatMul"] == 4096
    report = analyse(honest, macs=macs)
    int8 = 110_592 + 2 * 2_097_152
    assert report.share("int8") == pytest.approx(int8 / (int8 + 4096), abs=1e-6) and report.unmatched == []
    need = required_share(onnx_path, "int8")
    assert need == pytest.approx(int8 / (int8 + 4096) - 0.2)
    verdict, built_need = verify_built(honest, "int8", onnx_path)
    assert verdict.ok and built_need == pytest.approx(need) and "weighted by the ONNX graph's MACs" in verdict.message
    fake_verdict, _ = verify_built(fake, "int8", onnx_path)
    assert not fake_verdict.ok and fake_verdict.share == 0.0 and analyse(fake, macs=macs).mix == "fp16+fp32"


def test_check_engine_onnx_option(tmp_path, capsys):
    onnx_path = _myelin_onnx(tmp_path / "m.onnx")
    honest, fake = FIX / "int8_myelin_gemm_trt10.json", FIX / "fake_int8_myelin_gemm_trt10.json"
    assert _run(deploy, ["check-engine", str(honest), "--precision", "int8"]) == 1  # Weights.Count: 9.6%
    capsys.readouterr()
    assert _run(deploy, ["check-engine", str(honest), "--precision", "int8", "--onnx", str(onnx_path)]) == 0
    out = capsys.readouterr().out
    assert "weighted by the ONNX graph's MACs" in out and ">= 79.9%" in out  # the graph's own share minus 0.2
    assert _run(deploy, ["check-engine", str(fake), "--precision", "int8", "--onnx", str(onnx_path)]) == 1
    assert _run(deploy, ["check-engine", str(honest), "--precision", "int8", "--onnx", str(onnx_path),
                         "--min-share", "0.9995"]) == 1
    assert _run(deploy, ["check-engine", str(honest), "--precision", "int8", "--onnx", str(tmp_path / "no.onnx")]) == 2
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    capsys.readouterr()
    assert _run(deploy, ["check-engine", str(honest), "--precision", "int8", "--onnx", str(tmp_path / "bad.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.onnx: not a readable ONNX graph" in err


def test_layers_matching_no_onnx_node_are_reported(tmp_path):
    onnx_path = _myelin_onnx(tmp_path / "m.onnx")
    dump = _dump("int8_myelin_gemm_trt10.json")
    dump["Layers"].append({"Name": "foreign_gemm", "LayerType": "gemm",
                           "Inputs": [{"Format/Datatype": "Row major linear FP32"}]})
    from simplehand_deploy.trt.inspect import format_report, onnx_macs

    report = analyse(dump, macs=onnx_macs(onnx_path))
    assert report.unmatched == ["foreign_gemm"] and report.counts["fp32"] == 1 and report.weights["fp32"] == 0
    assert any("foreign_gemm" in line and "match no ONNX node" in line for line in format_report(report))
    assert "1 compute layer(s) match no ONNX node (weight 0): foreign_gemm" in judge(report, "int8").message
