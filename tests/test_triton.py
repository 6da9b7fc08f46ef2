"""Triton model repository export: config.pbtxt checked against Triton's own ModelConfig schema."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simplehand_deploy.cli import _run, deploy
from simplehand_deploy.errors import UsageError
from simplehand_deploy.triton import export_triton, validate_config

pytest.importorskip("tritonclient", reason="tritonclient (dev extra) carries Triton's model-config schema")


def tiny_onnx(path: Path, batch: int | str = "batch", uv_last: int = 2) -> Path:
    """A small valid graph with SimpleHand's I/O contract (image -> uv, vertices); runs in ONNX Runtime."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w_uv = numpy_helper.from_array(rng.standard_normal((3, 21 * uv_last)).astype(np.float32), "w_uv")
    w_v = numpy_helper.from_array(rng.standard_normal((3, 778 * 3)).astype(np.float32), "w_v")
    s_uv = numpy_helper.from_array(np.array([-1, 21, uv_last], np.int64), "s_uv")
    s_v = numpy_helper.from_array(np.array([-1, 778, 3], np.int64), "s_v")
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["pooled"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["pooled", "w_uv"], ["uv_flat"]),
        helper.make_node("Reshape", ["uv_flat", "s_uv"], ["uv"]),
        helper.make_node("MatMul", ["pooled", "w_v"], ["v_flat"]),
        helper.make_node("Reshape", ["v_flat", "s_v"], ["vertices"]),
    ]
    graph = helper.make_graph(
        nodes, "simplehand_stub",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, 224, 224])],
        [helper.make_tensor_value_info("uv", TensorProto.FLOAT, [batch, 21, uv_last]),
         helper.make_tensor_value_info("vertices", TensorProto.FLOAT, [batch, 778, 3])],
        [w_uv, w_v, s_uv, s_v],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_onnx_repository_parses_with_triton_schema(tmp_path: Path) -> None:
    src = tiny_onnx(tmp_path / "simplehand-tiny-seed0-fp32.onnx")
    model_dir = export_triton(tmp_path / "repo", onnx=src, name="hand", max_batch=8)
    assert model_dir == tmp_path / "repo" / "hand"
    assert (model_dir / "1" / "model.onnx").read_bytes() == src.read_bytes()
    assert model_dir.stat().st_mode & 0o755 == 0o755  # readable by a server running as another user
    cfg = validate_config((model_dir / "config.pbtxt").read_text())
    assert cfg.name == "hand" and cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == 8
    assert [(t.name, list(t.dims)) for t in cfg.input] == [("image", [3, 224, 224])]
    assert [(t.name, list(t.dims)) for t in cfg.output] == [("uv", [21, 2]), ("vertices", [778, 3])]
    from simplehand_deploy.triton import model_config_pb2

    fp32 = model_config_pb2().DataType.Value("TYPE_FP32")
    assert {t.data_type for t in (*cfg.input, *cfg.output)} == {fp32}
    assert cfg.HasField("dynamic_batching") and list(cfg.dynamic_batching.preferred_batch_size) == [1, 2, 4, 8]
    # default max batch for a dynamic-batch ONNX without a profile
    assert validate_config(
        (export_triton(tmp_path / "repo2", onnx=src) / "config.pbtxt").read_text()).max_batch_size == 32


def test_onnx_batch_axis_rules(tmp_path: Path) -> None:
    one = export_triton(tmp_path / "r1", onnx=tiny_onnx(tmp_path / "b1.onnx", batch=1))
    assert validate_config((one / "config.pbtxt").read_text()).max_batch_size == 1
    with pytest.raises(UsageError, match="fixed at 4"):
        export_triton(tmp_path / "r4", onnx=tiny_onnx(tmp_path / "b4.onnx", batch=4))
    with pytest.raises(UsageError, match="'uv' has dims \\[21, 3\\]"):
        export_triton(tmp_path / "rx", onnx=tiny_onnx(tmp_path / "bad.onnx", uv_last=3))
    assert not (tmp_path / "rx").exists() or not any((tmp_path / "rx").iterdir())


def test_plan_repository_takes_max_batch_from_sidecar(tmp_path: Path) -> None:
    plan = tmp_path / "0123abcd.plan"
    plan.write_bytes(b"opaque plan bytes (copied, never parsed without TensorRT)")
    (tmp_path / "0123abcd.json").write_text(json.dumps({"profiles": [{"image": {
        "min": [1, 3, 224, 224], "opt": [8, 3, 224, 224], "max": [16, 3, 224, 224]}}]}))
    model_dir = export_triton(tmp_path / "repo", engine=plan)
    cfg = validate_config((model_dir / "config.pbtxt").read_text())
    assert cfg.platform == "tensorrt_plan" and cfg.max_batch_size == 16
    assert cfg.instance_group[0].kind == cfg.instance_group[0].KIND_GPU
    assert (model_dir / "1" / "model.plan").read_bytes() == plan.read_bytes()
    assert validate_config((export_triton(tmp_path / "r2", engine=plan, max_batch=4) / "config.pbtxt")
                           .read_text()).max_batch_size == 4
    with pytest.raises(UsageError, match="only accepts batches up to 16"):
        export_triton(tmp_path / "r3", engine=plan, max_batch=32)


def test_plan_sidecar_written_by_the_engine_builder(tmp_path: Path) -> None:
    """The shape `trt.build` writes: {"profile": {"image": {"min": 1, "opt": 8, "max": 64}}} beside <key>.plan."""
    plan = tmp_path / "k.plan"
    plan.write_bytes(b"plan")
    (tmp_path / "k.json").write_text(json.dumps({"precision": "fp16", "profile": {"image": {"min": 1, "opt": 8,
                                                                                             "max": 64}}}))
    cfg = validate_config((export_triton(tmp_path / "repo", engine=plan) / "config.pbtxt").read_text())
    assert cfg.max_batch_size == 64
    assert list(cfg.dynamic_batching.preferred_batch_size) == [1, 2, 4, 8, 16, 32, 64]


def test_plan_without_profile_needs_max_batch(tmp_path: Path) -> None:
    plan = tmp_path / "x.plan"
    plan.write_bytes(b"plan")
    from simplehand_deploy._deps import tensorrt_or_none

    if tensorrt_or_none() is not None:
        pytest.skip("real TensorRT present: the plan would be deserialized instead")
    with pytest.raises(UsageError, match="--max-batch"):
        export_triton(tmp_path / "repo", engine=plan)


def test_invalid_text_is_rejected() -> None:
    with pytest.raises(UsageError, match="ModelConfig"):
        validate_config('name: "x"\nmax_batch_size: "many"\n')


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tiny_onnx(tmp_path / "m.onnx")
    assert _run(deploy, ["triton", "--onnx", str(src), "--out", str(tmp_path / "repo"), "--max-batch", "4"]) == 0
    assert "checked against Triton" in capsys.readouterr().err
    assert (tmp_path / "repo" / "simplehand" / "config.pbtxt").is_file()
    assert _run(deploy, ["triton", "--onnx", str(src), "--engine", str(src), "--out", str(tmp_path / "r")]) == 2
    assert _run(deploy, ["triton", "--onnx", str(tmp_path / "missing.onnx"), "--out", str(tmp_path / "r")]) == 2
    capsys.readouterr()
    assert _run(deploy, ["triton", "--onnx", str(src), "--out", str(tmp_path / "r5"), "--no-check"]) == 0
    assert capsys.readouterr().err.strip() == f"triton: wrote {tmp_path / 'r5' / 'simplehand'}"


def test_write_repository_checks_only_when_asked(tmp_path: Path) -> None:
    from simplehand_deploy.triton import TritonConfig, write_repository

    src = tiny_onnx(tmp_path / "m.onnx")
    cfg = TritonConfig.from_cli(out=tmp_path / "repo", onnx=src, max_batch=None, name=None)
    assert (cfg.name, cfg.max_batch, cfg.check) == ("simplehand", None, True)
    checked = write_repository(cfg)
    assert checked.model_dir == tmp_path / "repo" / "simplehand" and checked.checked  # tritonclient: here
    unchecked = write_repository(TritonConfig(out=tmp_path / "r2", onnx=src, check=False))
    assert not unchecked.checked and (unchecked.model_dir / "config.pbtxt").is_file()
