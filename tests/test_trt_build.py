"""trt/build.build_engine's steps that need no TensorRT: request checks, which graph suits which
TensorRT, the FP32-island decision, verdict enforcement and the engine record. TensorRT itself is never
imported here; the GPU path is tests/test_trt_gpu.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from simplehand_deploy.artifact import EngineArtifact, plan_layers_path, rejected_layers_path
from simplehand_deploy.errors import UsageError, VerificationError
from simplehand_deploy.trt.build import (
    _cached_engine,
    _enforce_verdict,
    _write_engine,
    check_request,
    check_source_graph,
    needs_fp32_pins,
)
from simplehand_deploy.trt.cache import plan_paths
from simplehand_deploy.trt.inspect import Verdict


def test_check_request_names_the_option_to_fix(tmp_path: Path) -> None:
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    assert check_request(str(onnx), "fp16", (1, 8, 64)) == onnx
    with pytest.raises(UsageError, match="--precision 'bf16'"):
        check_request(onnx, "bf16", (1, 8, 64))
    with pytest.raises(UsageError, match=r"--onnx .*missing\.onnx: no such file"):
        check_request(tmp_path / "missing.onnx", "fp16", (1, 8, 64))
    for bad in ((0, 1, 1), (1, 8, 4), (8, 1, 64)):
        with pytest.raises(UsageError, match="need 1 <= min <= opt <= max"):
            check_request(onnx, "fp32", bad)
    assert check_request(onnx, "int8", (4, 4, 4)) == onnx


@pytest.mark.parametrize("version", ["10.3.0", "11.0.1"])
def test_strongly_typed_tensorrt_needs_the_graph_of_that_precision(version: str) -> None:
    for precision in ("fp32", "fp16", "int8"):
        check_source_graph(precision, precision, version)
    with pytest.raises(UsageError, match=f"TensorRT {version} builds strongly typed: fp16 needs the fp16 ONNX "
                                         r"\(this graph is fp32\); make it with `simplehand-deploy fp16"):
        check_source_graph("fp16", "fp32", version)
    with pytest.raises(UsageError, match="int8 needs the int8 ONNX"):
        check_source_graph("int8", "fp16", version)


def test_weakly_typed_tensorrt_takes_precision_from_flags() -> None:
    ok = {("fp32", "fp32"), ("fp16", "fp32"), ("fp16", "fp16"), ("int8", "int8")}
    for precision in ("fp32", "fp16", "int8"):
        for kind in ("fp32", "fp16", "int8"):
            if (precision, kind) in ok:
                check_source_graph(precision, kind, "8.6.2")
            else:
                with pytest.raises(UsageError, match=f"TensorRT 8.6.2 \\({precision} by builder flag\\)"):
                    check_source_graph(precision, kind, "8.6.2")
    with pytest.raises(UsageError, match="the Q/DQ graph from `simplehand-deploy int8`; no implicit calibration"):
        check_source_graph("int8", "fp32", "8.6.2")


def test_fp32_island_is_pinned_only_under_weak_typing_with_reduced_precision() -> None:
    assert needs_fp32_pins("fp16", 8) and needs_fp32_pins("int8", 8)
    assert not needs_fp32_pins("fp32", 8)
    assert not any(needs_fp32_pins(p, major) for p in ("fp32", "fp16", "int8") for major in (10, 11))


def test_failed_verdict_keeps_the_layer_dump_and_writes_no_plan(tmp_path: Path) -> None:
    plan, _ = plan_paths("k" * 16, tmp_path)
    layers = {"Layers": [{"Name": "conv"}]}
    with pytest.raises(VerificationError, match=r"built m\.onnx as int8 in name only: 10% int8 .*GPU X.*layer dump"):
        _enforce_verdict(Verdict(False, 0.1, "10% int8"), layers, plan, Path("m.onnx"), "int8", context="GPU X")
    assert json.loads(rejected_layers_path(plan).read_text()) == layers
    assert not plan.exists()


def test_unverifiable_verdict_warns_and_a_passing_one_is_silent(tmp_path: Path, capsys) -> None:
    plan, _ = plan_paths("k" * 16, tmp_path)
    _enforce_verdict(Verdict(False, None, "no compute layer"), {}, plan, Path("m.onnx"), "fp16", context="")
    assert "fp16 precision UNVERIFIED: no compute layer" in capsys.readouterr().err
    _enforce_verdict(Verdict(True, 0.9, "90% fp16"), {}, plan, Path("m.onnx"), "fp16", context="")
    assert capsys.readouterr().err == ""
    assert not rejected_layers_path(plan).exists()


def test_write_engine_records_plan_layers_and_sidecar(tmp_path: Path) -> None:
    plan, sidecar = plan_paths("a" * 16, tmp_path)
    layers = {"error": "no engine inspector"}
    art = _write_engine(plan, b"PLAN", layers, key="a" * 16, precision="fp16", onnx_path=Path("m.onnx"),
                        profile=(1, 8, 64), key_inputs={"precision": "fp16"}, started=0.0, tf32=False,
                        verdict=Verdict(False, None, "unverifiable"), need=0.5, island_size=3, engine_mem=12.5)
    assert plan.read_bytes() == b"PLAN" and sidecar.is_file()
    assert json.loads(plan_layers_path(plan).read_text()) == layers
    assert not art.cached and art.seconds > 0
    back = EngineArtifact.read(plan)
    assert (back.key, back.precision, back.onnx, back.tf32) == ("a" * 16, "fp16", "m.onnx", False)
    assert back.precision_verified is None and back.precision_check == "unverifiable"
    assert (back.precision_share_required, back.fp32_island_layers, back.engine_device_memory_mb) == (0.5, 3, 12.5)
    assert back.layers_file == plan_layers_path(plan).name and back.precision_mix is None
    assert back.extra["profile"] == {"image": {"min": 1, "opt": 8, "max": 64}}


def test_no_cached_engine_without_plan_and_sidecar(tmp_path: Path) -> None:
    plan, sidecar = plan_paths("b" * 16, tmp_path)
    assert _cached_engine(plan, sidecar) is None  # nothing there: a miss before TensorRT is asked
    plan.write_bytes(b"PLAN")
    assert _cached_engine(plan, sidecar) is None  # a plan without its sidecar never counts


def test_profile_text_and_build_config_from_the_command_line(tmp_path: Path) -> None:
    from simplehand_deploy.trt.build import DEFAULT_PROFILE, BuildConfig, parse_profile

    assert parse_profile("1,8,64") == (1, 8, 64) and parse_profile(" 2, 2 ,4") == (2, 2, 4)
    for bad in ("8,1", "1,8,x", ""):
        with pytest.raises(UsageError, match=f"--profile {bad!r}: expected MIN,OPT,MAX batch sizes, e.g. 1,8,64"):
            parse_profile(bad)
    with pytest.raises(UsageError, match=r"--profile '8,1,1': need 1 <= MIN <= OPT <= MAX"):
        parse_profile("8,1,1")
    cfg = BuildConfig.from_cli(onnx=tmp_path / "m.onnx", profile="2,4,8", opt_level=None, force=True)
    assert cfg.profile == (2, 4, 8) and cfg.force and cfg.opt_level is None
    default = BuildConfig.from_cli(onnx=tmp_path / "m.onnx", precision=None, profile=None)
    assert (default.precision, default.profile, default.out, default.tf32) == ("fp16", DEFAULT_PROFILE,
                                                                                Path("engines"), True)


# --- the INT8 artifact must match the installed TensorRT --------------------------------------------------------


def test_int8_target_mismatch_is_refused_in_both_directions() -> None:
    from simplehand_deploy.trt.build import int8_target_for

    assert int8_target_for("10.3.0.30") == "trt10" and int8_target_for("8.6.2.3") == "trt8"
    check_source_graph("int8", "int8", "10.3.0", int8_target="trt10")
    check_source_graph("int8", "int8", "8.6.2", int8_target="trt8")
    with pytest.raises(UsageError, match=r"m-int8-trt8\.onnx is the INT8 artifact for trt8 \(opset 17 .*FP32 scales: "
                                         r"for TensorRT 8\.5 to 9\.x"
                                         r".*TensorRT 10\.3\.0 needs the trt10 one: use the \*-int8-trt10\.onnx"):
        check_source_graph("int8", "int8", "10.3.0", int8_target="trt8", name="m-int8-trt8.onnx")
    with pytest.raises(UsageError, match=r"artifact for trt10 .*TensorRT 8\.6\.2 needs the trt8 one.*--target trt8"):
        check_source_graph("int8", "int8", "8.6.2", int8_target="trt10", name="m.onnx")


def _qdq_graph(path: Path, opset: int, scale: Any) -> Path:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    s = numpy_helper.from_array(np.array(0.1, scale), "s")
    z = numpy_helper.from_array(np.array(0, np.int8), "z")
    w = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    cast = [helper.make_node("Cast", ["x"], ["xc"], to=TensorProto.FLOAT16)] if scale == np.float16 else []
    nodes = [*cast, helper.make_node("QuantizeLinear", ["xc" if cast else "x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"]),
             helper.make_node("Cast", ["dq"], ["dqf"], to=TensorProto.FLOAT),
             helper.make_node("MatMul", ["dqf", "w"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [s, z, w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


def test_int8_target_is_read_from_the_sidecar_else_inferred_from_the_graph(tmp_path: Path) -> None:
    import numpy as np

    from simplehand_deploy.trt.build import infer_int8_target, int8_target_of

    assert infer_int8_target(17, {"float32"}) == "trt8"
    assert infer_int8_target(19, {"float16"}) == "trt10" and infer_int8_target(19, {"float32"}) == "trt10"
    assert infer_int8_target(13, {"float16"}) == "trt10"
    assert int8_target_of(_qdq_graph(tmp_path / "a.onnx", 17, np.float32)) == ("trt8", "opset 17, float32 scales")
    assert int8_target_of(_qdq_graph(tmp_path / "b.onnx", 19, np.float16)) == ("trt10", "opset 19, float16 scales")
    (tmp_path / "a.json").write_text(json.dumps({"precision": "int8", "int8_target": "trt10"}))
    assert int8_target_of(tmp_path / "a.onnx") == ("trt10", "sidecar")  # the record wins over the guess


def test_int8_targets_of_the_engine_job_artifacts_without_sidecars(trained_engines, tmp_path: Path) -> None:
    """`make engine`'s two INT8 artifacts, their sidecars removed: the graph alone says which TensorRT each is for."""
    import shutil

    from simplehand_deploy.trt.build import int8_target_of

    for target in ("trt10", "trt8"):
        bare = shutil.copy(trained_engines[f"int8-{target}"], tmp_path / f"{target}.onnx")
        assert int8_target_of(Path(bare))[0] == target


def test_preview_profile_sharing_only_before_10_and_only_where_it_exists() -> None:
    from simplehand_deploy.trt.build import preview_features

    names = {"PROFILE_SHARING_0806": 0, "ALIASED_PLUGIN_IO_10_03": 1}
    assert preview_features(8, names) == ("PROFILE_SHARING_0806",) and preview_features(9, names)
    assert preview_features(8, {}) == ()  # 8.5 has no such feature: the runtime falls back to one context
    assert preview_features(10, names) == () and preview_features(11, names) == ()


# --- one FP32 island --------------------------------------------------------------------------------------------


def test_builder_pins_exactly_what_the_fp16_graph_keeps_fp32(trained_engines) -> None:
    """On the exported graph: the node set the TensorRT < 10 builder pins FP32 equals the set of float nodes
    the FP16 artifact computes in FP32 (attention scores included)."""
    import onnx

    from simplehand_deploy.trt.build import fp32_island

    fp16 = onnx.shape_inference.infer_shapes(onnx.load(str(trained_engines["fp16"])))
    g = fp16.graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in [*g.value_info, *g.input, *g.output]}
    original = {n.name for n in onnx.load(str(trained_engines["fp32"])).graph.node}
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    float_nodes = {n.name: n for n in g.node if n.name in original and any(types.get(o) in floats for o in n.output)}
    kept_fp32 = {name for name, n in float_nodes.items()
                 if all(types.get(o) != onnx.TensorProto.FLOAT16 for o in n.output)}
    pinned = fp32_island(trained_engines["fp32"]) & set(float_nodes)
    assert any("token_mixer/Mul" in n for n in pinned)  # the attention scale, missing from the old builder set
    assert pinned == kept_fp32
