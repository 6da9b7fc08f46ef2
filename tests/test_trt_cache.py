"""Engine cache keys: every input that changes an engine changes the key; nothing else does."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from simplehand_deploy.env import l4t_release
from simplehand_deploy.trt.cache import KeyInputs, engine_key, plan_paths

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
        # device identity beyond name + SM: Orin AGX / NX / Nano are all "Orin" 8.7
        {"gpu_sm_count": 8},
        {"gpu_memory_mb": 7620},
        {"board_model": "NVIDIA Jetson Orin Nano Developer Kit"},
        {"trt_cuda": "cu13"},
        {"tf32": False},  # item 10
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
    assert ki.tf32 is True and ki.gpu_sm_count == 0 and ki.trt_cuda == "unknown"
    full = {**dev, "sm_count": 8, "memory_mb": 7620, "board": "Jetson Orin Nano"}
    kf = current_key_inputs(onnx, "int8", (1, 4, 8), trt_version="8.6.2.3", device=full, tf32=False, trt_cuda="cu12")
    assert (kf.gpu_sm_count, kf.gpu_memory_mb, kf.board_model, kf.tf32, kf.trt_cuda) == (
        8, 7620, "Jetson Orin Nano", False, "cu12")
    assert ki.typing == "weak" and ki.extra == {"recipe": {"method": "minmax"}} and ki.profile == (1, 4, 8)
    assert current_key_inputs(onnx, "int8", (1, 4, 8), trt_version="10.3.0", device=dev).typing == "strong"
    k1 = engine_key(ki)
    onnx.with_suffix(".json").write_text(json.dumps({"int8": {"method": "entropy"}}))
    k2 = engine_key(current_key_inputs(onnx, "int8", (1, 4, 8), trt_version="8.6.2.3", device=dev))
    onnx.write_bytes(b"\x08\x07qdQ")
    k3 = engine_key(current_key_inputs(onnx, "int8", (1, 4, 8), trt_version="8.6.2.3", device=dev))
    assert len({k1, k2, k3}) == 3


def test_builder_verdict_uses_check_engine_rules():
    """A build whose compute layers are not in the requested precision is refused; names never count."""
    from simplehand_deploy.trt.build import verify_precision

    def conv(name, dtype, wtype):
        return {"Name": name, "LayerType": "CaskConvolution", "ParameterType": "Convolution",
                "Inputs": [{"Format/Datatype": dtype}], "Weights": {"Type": wtype, "Count": 100}}

    fp32_named_half = {"Layers": [conv("conv_to_fp16", "Row major linear FP32", "Float")], "Bindings": []}
    half = {"Layers": [conv("conv", "Channel major FP16 format where channel % 8 == 0", "Half")], "Bindings": []}
    q = {"Name": "q", "LayerType": "Scale", "Outputs": [{"Format/Datatype": "Row major Int8 format"}]}
    qdq_only = {"Layers": [conv("conv", "Row major linear FP32", "Float"), q]}
    assert not verify_precision(fp32_named_half, "fp16", 0.5).ok
    assert verify_precision(half, "fp16", 0.5).ok
    assert not verify_precision(qdq_only, "int8", 0.5).ok and verify_precision(qdq_only, "int8", 0.5).share == 0.0
    unusable = [verify_precision(d, "fp16", 0.5) for d in ({"Layers": ["conv", "relu"]}, {"error": "x"}, None)]
    assert all(v.share is None and not v.ok for v in unusable)  # unverifiable, never a silent pass


def test_island_layers_match_parser_names():
    from simplehand_deploy.trt.build import island_layers

    names = ["/head/proj/MatMul", "/head/proj/MatMul_1", "/head/proj/MatMulX", "/norm/LayerNormalization", "other"]
    assert island_layers(names, {"/head/proj/MatMul", "/norm/LayerNormalization"}) == [0, 1, 3]


class _Cache:
    """A plain stand-in for ITimingCache: a set of entries; bytes are comma-joined entries prefixed by a device."""

    def __init__(self, data: bytes) -> None:
        text = data.decode()
        self.device, _, body = text.partition(":") if text else ("", "", "")
        self.entries = {e for e in body.split(",") if e}

    def serialize(self) -> bytes:
        return f"{self.device}:{','.join(sorted(self.entries))}".encode() if self.device else b""


def _create(data: bytes):
    if data.startswith(b"corrupt"):
        raise ValueError("bad cache")
    return _Cache(data)


def _combine(into: _Cache, other: _Cache) -> bool:
    if into.device and other.device and into.device != other.device:
        return False  # TensorRT's combine refuses caches of another device
    into.entries |= other.entries
    into.device = into.device or other.device
    return True


def test_timing_cache_merge_keeps_both_builds_entries():
    from simplehand_deploy.trt.cache import merge_timing_cache

    # two builds with different keys wrote the same file: the second must keep the first's entries
    assert merge_timing_cache(b"gpu:a,b", b"gpu:c", _create, _combine) == b"gpu:a,b,c"
    assert merge_timing_cache(None, b"gpu:c", _create, _combine) == b"gpu:c"
    assert merge_timing_cache(b"", b"gpu:c", _create, _combine) == b"gpu:c"
    # a None cache after the build (get_timing_cache() gave nothing) leaves the file alone
    assert merge_timing_cache(b"gpu:a", None, _create, _combine) is None
    # unreadable file: ours replaces it; a combine that fails (other device) keeps ours
    assert merge_timing_cache(b"corrupt", b"gpu:c", _create, _combine) == b"gpu:c"
    assert merge_timing_cache(b"other:x", b"gpu:c", _create, _combine) == b"gpu:c"
    assert merge_timing_cache(b"gpu:a", b"gpu:c", lambda d: None, _combine) is None


def test_timing_cache_name_tells_devices_apart():
    from simplehand_deploy.trt.cache import timing_cache_name

    nano = {"name": "Orin", "sm": "8.7", "sm_count": 8, "memory_mb": 7620, "board": "Jetson Orin Nano"}
    agx = {**nano, "sm_count": 16, "memory_mb": 62800, "board": "Jetson AGX Orin"}
    assert timing_cache_name("10.3.0.30", nano) != timing_cache_name("10.3.0.30", agx)
    assert "/" not in timing_cache_name("10.3.0.30", {**nano, "name": "A/B C"})


def test_trt_cuda_flavour_sources(tmp_path):
    from simplehand_deploy.trt.cache import cuda_flavour_from_dists, cuda_flavour_from_dpkg, trt_cuda_flavour

    assert cuda_flavour_from_dists(["numpy", "tensorrt_cu13", "tensorrt-cu13-libs"]) == "cu13"
    assert cuda_flavour_from_dists(["tensorrt-cu12-bindings", "torch"]) == "cu12"
    assert cuda_flavour_from_dists(["tensorrt", "nvidia-cuda-runtime-cu12"]) is None  # torch's CUDA is not TRT's
    status = ("Package: libnvinfer10\nStatus: install ok installed\nVersion: 10.3.0.30-1+cuda12.5\n\n"
              "Package: other\nVersion: 1.0\n")
    assert cuda_flavour_from_dpkg(status) == "cu12" and cuda_flavour_from_dpkg("Package: x\nVersion: 1+cuda9\n") is None
    # this machine has no tensorrt-cuXX wheel and no dpkg libnvinfer: "unknown"
    assert trt_cuda_flavour(str(tmp_path / "no-dpkg")) == "unknown"


def test_board_model(tmp_path):
    from simplehand_deploy.env import board_model

    f = tmp_path / "model"
    f.write_bytes(b"NVIDIA Jetson Orin Nano Developer Kit\x00")
    assert board_model(str(f)) == "NVIDIA Jetson Orin Nano Developer Kit"
    assert board_model(str(tmp_path / "absent")) == ""


def test_plan_selection_skips_stale_and_foreign_plans():
    from simplehand_deploy.artifact import EngineArtifact
    from simplehand_deploy.trt.cache import plan_skip_reason as skip_reason

    def plan_skip_reason(sidecar, **kw):  # the sidecar as the plan's reader gives it
        art = None if sidecar is None else EngineArtifact.from_json(sidecar, "k.json", path=Path("k.plan"))
        return skip_reason(art, **kw)

    built = {"key_inputs": {**dataclasses.asdict(BASE), "gpu_sm_count": 132, "gpu_memory_mb": 81000}}
    here = {"trt_version": "10.13.0.35", "gpu_name": "NVIDIA H100 80GB HBM3", "gpu_sm": "9.0", "gpu_sm_count": 132,
            "gpu_memory_mb": 81000, "board_model": ""}
    assert plan_skip_reason(built, onnx_shas={"a" * 64}, machine=here) is None
    assert plan_skip_reason(built, onnx_shas=None, machine=here) is None  # plans named by the user: no sha check
    assert "stale" in plan_skip_reason(built, onnx_shas={"b" * 64}, machine=here)
    assert "TensorRT 10.13.0.35" in plan_skip_reason(built, onnx_shas={"a" * 64},
                                                    machine={**here, "trt_version": "10.14.1.48"})
    assert "GPU" in plan_skip_reason(built, onnx_shas={"a" * 64}, machine={**here, "gpu_name": "NVIDIA L4"})
    assert "SM 9.0" in plan_skip_reason(built, onnx_shas={"a" * 64}, machine={**here, "gpu_sm": "8.9"})
    assert "SM count" in plan_skip_reason(built, onnx_shas={"a" * 64}, machine={**here, "gpu_sm_count": 114})
    assert "memory" in plan_skip_reason(built, onnx_shas={"a" * 64}, machine={**here, "gpu_memory_mb": 94000})
    orin = {"key_inputs": {**built["key_inputs"], "board_model": "NVIDIA Jetson AGX Orin"}}
    assert "board" in plan_skip_reason(orin, onnx_shas={"a" * 64},
                                       machine={**here, "board_model": "NVIDIA Jetson Orin Nano Developer Kit"})
    assert "sidecar" in plan_skip_reason(None, onnx_shas={"a" * 64}, machine=here)
    assert "sidecar" in plan_skip_reason({"precision": "fp16"}, onnx_shas={"a" * 64}, machine=here)
    # an older sidecar without the new fields is compared on what it has
    old = {"key_inputs": {k: v for k, v in built["key_inputs"].items() if k not in ("gpu_sm_count", "gpu_memory_mb")}}
    assert plan_skip_reason(old, onnx_shas={"a" * 64}, machine=here) is None


def test_a_plan_for_another_tensorrt_cuda_flavour_is_a_clean_skip():
    """A cu12 plan under a cu13 TensorRT of the same version: one skipped row, not an error row at load time."""
    from simplehand_deploy.artifact import EngineArtifact
    from simplehand_deploy.trt.cache import machine_key_fields, plan_skip_reason

    def sidecar(trt_cuda: str) -> EngineArtifact:
        doc = {"key_inputs": {**dataclasses.asdict(BASE), "trt_cuda": trt_cuda}}
        return EngineArtifact.from_json(doc, "k.json", path=Path("k.plan"))

    dev = {"name": BASE.gpu_name, "sm": BASE.gpu_sm}
    here = machine_key_fields(BASE.trt_version, dev, trt_cuda="cu13")
    assert here["trt_cuda"] == "cu13"
    assert plan_skip_reason(sidecar("cu12"), onnx_shas=None, machine=here) == (
        "built for TensorRT CUDA cu12, this machine has cu13")
    assert plan_skip_reason(sidecar("cu13"), onnx_shas=None, machine=here) is None
    # a side that does not know its flavour ("unknown": no wheel, no dpkg record) is not compared
    assert plan_skip_reason(sidecar("unknown"), onnx_shas=None, machine=here) is None
    assert plan_skip_reason(sidecar("cu12"), onnx_shas=None, machine={**here, "trt_cuda": "unknown"}) is None


def test_preview_features_enter_the_key_only_when_set(tmp_path):
    from simplehand_deploy.trt.cache import current_key_inputs

    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"\x08\x07")
    dev = {"name": "Orin", "sm": "8.7", "cuda_major": "11"}
    plain = current_key_inputs(onnx, "fp16", trt_version="8.6.2.3", device=dev, trt_cuda="cu11")
    shared = current_key_inputs(onnx, "fp16", trt_version="8.6.2.3", device=dev, trt_cuda="cu11",
                                preview=("PROFILE_SHARING_0806",))
    assert plain.extra == {"recipe": {}}  # every key made without a preview feature is unchanged
    assert shared.extra["preview_features"] == ["PROFILE_SHARING_0806"]
    assert engine_key(plain) != engine_key(shared)
