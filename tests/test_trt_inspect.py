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
