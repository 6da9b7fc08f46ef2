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
