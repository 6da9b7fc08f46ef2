"""Engine cache keys: every input that changes an engine changes the key; nothing else does."""

from __future__ import annotations

import dataclasses

import pytest

from simplehand_deploy.trt.cache import KeyInputs, engine_key, l4t_release, plan_paths

BASE = KeyInputs(onnx_sha256="a" * 64, precision="fp16", typing="strong", profile=(1, 8, 64),
                 trt_version="10.13.0.35", gpu_name="NVIDIA H100 80GB HBM3", gpu_sm="9.0", cuda_major="12",
                 os_arch="linux-x86_64")


def test_identical_inputs_identical_key():
    assert engine_key(BASE) == engine_key(dataclasses.replace(BASE))
    assert len(engine_key(BASE)) == 24


@pytest.mark.parametrize(
    "change",
    [
        {"onnx_sha256": "a" * 63 + "b"},  # one ONNX byte changes the hash
        {"profile": (1, 8, 32)},
        {"precision": "int8"},
        {"trt_version": "10.13.0.36"},
        {"gpu_name": "NVIDIA RTX 4090"},
        {"gpu_sm": "8.9"},
        {"cuda_major": "13"},
        {"os_arch": "linux-aarch64"},
        {"l4t_release": "R36 (release), REVISION: 4.0"},
        {"typing": "weak"},
        {"workspace_mb": 2048},
        {"opt_level": 5},
        {"extra": {"recipe": {"method": "entropy"}}},
        {"toolkit_version": "9.9.9"},
    ],
)
def test_any_single_change_changes_key(change):
    assert engine_key(dataclasses.replace(BASE, **change)) != engine_key(BASE)


def test_key_from_real_onnx_bytes(tmp_path):
    from simplehand_deploy.fileio import sha256_file

    a = tmp_path / "a.onnx"
    a.write_bytes(b"\x08\x07onnx-bytes")
    k1 = engine_key(dataclasses.replace(BASE, onnx_sha256=sha256_file(a)))
    a.write_bytes(b"\x08\x07onnx-byteS")
    assert engine_key(dataclasses.replace(BASE, onnx_sha256=sha256_file(a))) != k1


def test_l4t_release_and_paths(tmp_path):
    f = tmp_path / "nv_tegra_release"
    f.write_text("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64\n")
    assert l4t_release(str(f)) == "R35 (release), REVISION: 4.1"
    assert l4t_release(str(tmp_path / "absent")) == ""
    plan, side = plan_paths("abc", tmp_path)
    assert plan.name == "abc.plan" and side.name == "abc.json"


def test_current_key_inputs_with_explicit_machine(tmp_path):
    """Gathering on 'this machine' with TRT version and GPU given: ONNX bytes and recipe feed the key."""
    import json

    from simplehand_deploy.trt.cache import current_key_inputs

    onnx = tmp_path / "m-int8.onnx"
    onnx.write_bytes(b"\x08\x07qdq")
    onnx.with_suffix(".json").write_text(json.dumps({"int8": {"method": "minmax"}}))
    dev = {"name": "Orin", "sm": "8.7", "cuda_major": "12"}
    ki = current_key_inputs(onnx, "int8", (1, 4, 8), trt_version="8.6.2.3", device=dev)
    assert ki.typing == "weak" and ki.extra == {"recipe": {"method": "minmax"}} and ki.profile == (1, 4, 8)
    assert current_key_inputs(onnx, "int8", (1, 4, 8), trt_version="10.3.0", device=dev).typing == "strong"
    k1 = engine_key(ki)
    onnx.with_suffix(".json").write_text(json.dumps({"int8": {"method": "entropy"}}))
    k2 = engine_key(current_key_inputs(onnx, "int8", (1, 4, 8), trt_version="8.6.2.3", device=dev))
    onnx.write_bytes(b"\x08\x07qdQ")
    k3 = engine_key(current_key_inputs(onnx, "int8", (1, 4, 8), trt_version="8.6.2.3", device=dev))
    assert len({k1, k2, k3}) == 3


def test_precision_honoured_reads_inspector_dump():
    """A build whose inspector shows no FP16/INT8 layer is refused, never passed off as that precision."""
    from simplehand_deploy.trt.build import precision_honoured

    fp32_only = {"Layers": [{"Name": "conv", "Outputs": [{"Format/Datatype": "Row major linear FP32"}]}]}
    half = {"Layers": [{"Name": "conv", "Outputs": [{"Format/Datatype": "Channel major FP16 format"}]}]}
    int8 = {"Layers": [{"Name": "q", "Outputs": [{"Format/Datatype": "Int8 NC32HW32"}]}]}
    assert precision_honoured(fp32_only, "fp16") is False and precision_honoured(fp32_only, "int8") is False
    assert precision_honoured(half, "fp16") is True and precision_honoured(int8, "int8") is True
    assert precision_honoured({"Layers": ["conv", "relu"]}, "fp16") is None  # names only: cannot tell
    assert precision_honoured({"error": "x"}, "int8") is None and precision_honoured(fp32_only, "fp32") is True
