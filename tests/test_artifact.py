"""Artifacts as values: sidecars of every writer read back typed, written back unchanged, bad ones named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simplehand_deploy.artifact import (
    EngineArtifact,
    Int8Recipe,
    OnnxArtifact,
    Profile,
    engine_artifact,
    onnx_sidecar_path,
    plan_sidecar_path,
)
from simplehand_deploy.errors import UsageError

FP32 = {"kind": "simplehand-onnx", "artifact_format": 2, "precision": "fp32", "config": "tiny",
        "model_config": {"name": "tiny"}, "weights_kind": "seed", "weights_sha256": None, "weights_short": "seed0",
        "opset": 17, "exporter": "legacy", "simplified": True, "fused": True,
        "inputs": {"image": ["batch", 3, 224, 224]}, "outputs": {"uv": ["batch", 21, 2]},
        "parity_max_abs": {"uv": 1e-6, "vertices": 2e-7}, "versions": {"torch": "2.9"}, "seconds": 3.1,
        "created": "2026-12-01T20:00:00Z", "exporter_opset": 17, "onnx_sha256": "a" * 64}
INT8_ORT = {**FP32, "artifact_format": 3, "precision": "int8", "source_onnx": "engines/x-fp32.onnx",
            "source_sha256": "a" * 64, "opset": 19, "int8_target": "trt10", "onnx_sha256": "b" * 64,
            "int8": {"quantizer": "onnxruntime.quantize_static", "format": "QDQ", "method": "minmax",
                     "placement": "dense", "target": "trt10", "int8_mac_share": 0.95, "remainder": "fp16",
                     "fp32_island": ["/a", "/b"], "excluded_nodes": ["/c"], "ort_patches_verified": True,
                     "sensitivity_repair": {"budget_mm": 1.0, "drift_all_quantised_mm": 2.5, "final_drift_mm": 0.9,
                                            "excluded_groups": [3, 1], "excluded_nodes": ["/c"], "met": True,
                                            "layers_int8": 40, "layers_weighted": 44,
                                            "checked_on": {"crops": 16, "calibration_crops": 48}},
                     "calibration": {"path": "calibration/s-64", "num": 64, "used": 48, "fingerprint": "f"}}}
INT8_MODELOPT = {**FP32, "precision": "int8", "int8": {
    "quantizer": "modelopt.onnx.quantization", "format": "QDQ", "method": "minmax", "modelopt_method": "max",
    "placement": "modelopt", "target": "trt10", "high_precision_dtype": "fp16", "calibration_eps": ["cpu"],
    "opset": 19, "int8_mac_share": 0.91, "qdq_nodes": 412, "versions": {"nvidia-modelopt": "0.47.0"},
    "excluded_nodes": [], "seconds": 80.2, "calibration": {"path": "c", "num": 64, "fingerprint": "f"}}}
FP16 = {**FP32, "precision": "fp16", "fp16": {"fp32_op_types": ["LayerNormalization"], "fp32_nodes": ["/x"],
                                              "io": "float32"}}
PLAN = {"kind": "simplehand-trt-plan", "key": "k" * 24, "precision": "int8", "onnx": "engines/x-int8.onnx",
        "profile": {"image": {"min": 1, "opt": 8, "max": 64}},
        "key_inputs": {"onnx_sha256": "b" * 64, "trt_version": "10.13.0.35", "gpu_name": "H100", "tf32": True},
        "build_seconds": 61.2, "tf32": True, "precision_verified": None, "precision_check": "ok",
        "precision_share_required": 0.75, "precision_mix": "int8 88%, fp16 12%", "precision_summary": None,
        "fp32_island_layers": 0, "engine_device_memory_mb": 96.5, "layers_file": "kkk.layers.json",
        "created": "2026-12-01T21:00:00Z"}


def _write(path: Path, doc: dict) -> Path:
    path.write_bytes(b"graph or plan bytes")
    side = plan_sidecar_path(path) if path.suffix == ".plan" else onnx_sidecar_path(path)
    side.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("doc", [FP32, FP16, INT8_ORT, INT8_MODELOPT], ids=["fp32", "fp16", "int8", "modelopt"])
def test_onnx_sidecars_round_trip_unchanged(tmp_path, doc):
    art = OnnxArtifact.read(_write(tmp_path / "m.onnx", doc))
    assert art.to_json() == doc  # same content: unknown keys and explicit nulls kept
    again = OnnxArtifact.read(_write(tmp_path / "n.onnx", art.write().to_json()))
    assert again == art.__class__(**{**art.__dict__, "path": again.path})
    assert json.loads((tmp_path / "m.json").read_text()) == doc


def test_typed_fields_of_our_int8_sidecar(tmp_path):
    art = OnnxArtifact.read(_write(tmp_path / "x-int8-trt10.onnx", INT8_ORT))
    assert art.sidecar == tmp_path / "x-int8-trt10.json"
    assert (art.precision, art.int8_target, art.artifact_format, art.source_sha256) == ("int8", "trt10", 3, "a" * 64)
    assert isinstance(art.int8, Int8Recipe) and art.int8.placement == "dense" and art.int8.excluded_nodes == ("/c",)
    rep = art.int8.sensitivity_repair
    assert rep is not None and rep.excluded_groups == (3, 1) and rep.met is True and rep.checked_on_crops == 16
    assert art.int8_share == 0.95 and "placement dense, 95.0%" in art.int8.describe()
    assert art.recipe("int8") == INT8_ORT["int8"] and art.recipe("fp16") == {} and art.recipe("fp32") == {}


def test_modelopt_sidecar_and_its_older_top_level_share(tmp_path):
    art = OnnxArtifact.read(_write(tmp_path / "mo.onnx", INT8_MODELOPT))
    assert art.int8 is not None and art.int8.is_modelopt and art.int8.qdq_nodes == 412
    assert art.int8.describe().startswith("ModelOpt 0.47.0 max, fp16 remainder, 412 Q/DQ nodes, 91.0%")
    older = OnnxArtifact.read(_write(tmp_path / "old.onnx", {"precision": "int8", "int8_mac_share": 0.62}))
    assert older.int8 is None and older.int8_share == 0.62


def test_derive_carries_the_source_records(tmp_path):
    src = OnnxArtifact.read(_write(tmp_path / "x-fp32.onnx", FP32))
    out = src.derive(tmp_path / "x-int8.onnx", precision="int8", int8=Int8Recipe(method="entropy")).write()
    back = OnnxArtifact.read(tmp_path / "x-int8.onnx")
    assert back == out and back.source_onnx == str(src.path) and back.config == "tiny"
    assert back.extra["parity_max_abs"] == FP32["parity_max_abs"] and back.recipe("int8") == {"method": "entropy"}


def test_engine_sidecar_of_the_builder(tmp_path):
    plan = _write(tmp_path / f"{'k' * 24}.plan", PLAN)
    art = EngineArtifact.read(plan)
    assert art.to_json() == PLAN and art.plan == plan and art.sidecar == tmp_path / f"{'k' * 24}.json"
    assert art.profile == Profile(1, 8, 64) and art.max_batch == 64
    assert art.built_with("trt_version") == "10.13.0.35" and art.built_with("board_model") is None
    assert art.precision_mix == "int8 88%, fp16 12%" and art.engine_device_memory_mb == 96.5
    made = engine_artifact(tmp_path / "n.plan", key="n", precision="fp16", onnx="m.onnx", profile=(1, 4, 16),
                           key_inputs={"trt_version": "10"}, tf32=False).write()
    assert EngineArtifact.read(tmp_path / "n.plan") == made and made.max_batch == 16 and made.tf32 is False


def test_older_plan_sidecar_layouts(tmp_path):
    shapes = {"profiles": [{"image": {"min": [1, 3, 224, 224], "opt": [8, 3, 224, 224], "max": [16, 3, 224, 224]}}]}
    assert EngineArtifact.read(_write(tmp_path / "a.plan", shapes)).max_batch == 16
    assert EngineArtifact.read(_write(tmp_path / "b.plan", {"max_batch_size": 12})).max_batch == 12
    assert EngineArtifact.read(_write(tmp_path / "c.plan", {"precision": "fp16"})).max_batch is None


@pytest.mark.parametrize("text,match", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({"precision": "fp8"}), "field 'precision' is 'fp8'"),
    (json.dumps({"int8_target": "trt7"}), "field 'int8_target'"),
    (json.dumps({"int8": {"int8_mac_share": 1.5}}), "int8_mac_share"),
    (json.dumps({"int8": [1]}), "field 'int8' is list"),
    (json.dumps({"fp16": {"fp32_nodes": "x"}}), "field 'fp32_nodes' is str"),
])
def test_bad_sidecars_are_one_line_usage_errors(tmp_path, text, match):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    (tmp_path / "m.json").write_text(text)
    with pytest.raises(UsageError, match=match) as err:
        OnnxArtifact.read(onnx)
    assert "m.json" in str(err.value) and "\n" not in str(err.value)
    assert OnnxArtifact.read_or_none(onnx) is None


def test_missing_sidecar(tmp_path):
    with pytest.raises(UsageError, match="no sidecar"):
        OnnxArtifact.read(tmp_path / "m.onnx")
    assert OnnxArtifact.read_or_none(tmp_path / "m.onnx") is None and not OnnxArtifact.has_sidecar(tmp_path / "m.onnx")
    assert EngineArtifact.read_or_none(tmp_path / "k.plan") is None
    assert onnx_sidecar_path("a/b.onnx") == Path("a/b.json")
    assert onnx_sidecar_path("a/b.graph") == Path("a/b.graph.json")
