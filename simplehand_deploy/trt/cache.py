"""Content keys for TensorRT engines: rebuild when anything that changes the engine changes.

An engine is only valid for the exact TensorRT build, GPU (and compute capability), CUDA major,
OS/arch and the exact ONNX bytes, precision recipe and builder settings that made it. The key is a
sha256 over all of them, so a cache hit is proof of sameness, not a guess from a file name.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..artifact import EngineArtifact, OnnxArtifact, plan_sidecar_path
from ..defaults import DEFAULT_PROFILE, DEFAULT_WORKSPACE_MB
from ..env import l4t_release, slug
from ..fileio import sha256_file


@dataclass(frozen=True)
class KeyInputs:
    onnx_sha256: str
    precision: str  # fp32 | fp16 | int8
    typing: str  # "weak" (TRT < 10, builder flags) | "strong" (TRT >= 10, precision from the graph)
    profile: tuple[int, int, int]  # min / opt / max batch
    trt_version: str
    gpu_name: str
    gpu_sm: str
    cuda_major: str
    os_arch: str
    l4t_release: str = ""
    workspace_mb: int = 0
    opt_level: int | None = None
    hardware_compat: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # quantisation recipe, plugins, flags
    toolkit_version: str = __version__
    # Device identity beyond name + SM (AGX Orin, Orin NX and Orin Nano are all "Orin", SM 8.7):
    gpu_sm_count: int = 0
    gpu_memory_mb: int = 0
    board_model: str = ""  # /proc/device-tree/model on Jetson
    trt_cuda: str = "unknown"  # TensorRT's own CUDA flavour ("cu12", "cu13"), not torch's
    tf32: bool = True  # TensorRT enables TF32 by default, also for the "fp32" engine (`--no-tf32` clears it)


def engine_key(inputs: KeyInputs) -> str:
    """24 hex characters of sha256 over a canonical JSON of every input."""
    payload = json.dumps(asdict(inputs), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def os_arch() -> str:
    return f"{platform.system().lower()}-{platform.machine()}"


def cuda_flavour_from_dists(names: Iterable[str]) -> str | None:
    """'cu12' / 'cu13' from installed distribution names (tensorrt-cu12, tensorrt_cu13_libs, ...)."""
    found = sorted({m.group(1) for n in names
                    if (m := re.fullmatch(r"tensorrt[-_.]cu(\d+)(?:[-_.](?:libs|bindings))?", n.strip().lower()))})
    return "+".join(f"cu{v}" for v in found) if found else None


def cuda_flavour_from_dpkg(status_text: str) -> str | None:
    """'cu12' from dpkg's status of JetPack's libnvinfer (version '10.3.0.30-1+cuda12.5'), None without it."""
    for block in status_text.split("\n\n"):
        if re.search(r"^Package: (?:python3-)?libnvinfer", block, flags=re.M):
            m = re.search(r"^Version: \S*\+cuda(\d+)", block, flags=re.M)
            if m:
                return f"cu{m.group(1)}"
    return None


def trt_cuda_flavour(dpkg_status: str = "/var/lib/dpkg/status") -> str:
    """TensorRT's own CUDA flavour: the installed tensorrt-cu12/-cu13 wheel, else the CUDA build of JetPack's
    libnvinfer package, else 'unknown'. Never torch's CUDA (they can differ)."""
    from importlib import metadata

    got = cuda_flavour_from_dists(str(d.metadata["Name"] or "") for d in metadata.distributions())
    if got:
        return got
    try:
        return cuda_flavour_from_dpkg(Path(dpkg_status).read_text(errors="replace")) or "unknown"
    except OSError:
        return "unknown"


# Fields of the key that say which machine a plan belongs to; a plan whose sidecar differs in one is skipped.
MACHINE_FIELDS = (("trt_version", "TensorRT"), ("trt_cuda", "TensorRT CUDA"), ("gpu_name", "GPU"), ("gpu_sm", "SM"),
                  ("gpu_sm_count", "SM count"), ("gpu_memory_mb", "GPU memory MB"), ("board_model", "board"))
_UNKNOWN = (None, "", 0, "unknown")  # a field one side does not know is not compared


def plan_skip_reason(plan: EngineArtifact | None, *, onnx_shas: Collection[str] | None,
                     machine: dict[str, Any]) -> str | None:
    """None when a plan may be benchmarked here; else why not (the `skipped: <reason>` of its one row).

    `plan`: the plan as its sidecar describes it (None: no readable sidecar); `onnx_shas`: sha256 of the
    current ONNX artifacts (None: do not check staleness, e.g. plans named by the user); `machine`: this
    machine's key inputs (fields absent from either side are not compared).
    """
    if plan is None or plan.key_inputs is None:
        return "no readable sidecar (<key>.json): not built by simplehand-deploy build"
    if onnx_shas is not None and plan.built_with("onnx_sha256") not in onnx_shas:
        sha = str(plan.built_with("onnx_sha256") or "?")[:12]
        return (f"stale: built from ONNX sha256 {sha}..., not one of the current ONNX artifacts of this model "
                "(rebuild: make engine)")
    for key, label in MACHINE_FIELDS:
        was, here = plan.built_with(key), machine.get(key)
        if was in _UNKNOWN or here in _UNKNOWN:
            continue
        if str(was) != str(here):
            return f"built for {label} {was}, this machine has {here}"
    return None


# Timing cache -----------------------------------------------------------------------------------------------


def merge_timing_cache(on_disk: bytes | None, built: bytes | None, create: Callable[[bytes], Any],
                       combine: Callable[[Any, Any], bool]) -> bytes | None:
    """The bytes to write back to a shared timing-cache file after a build (None: leave it alone).

    `on_disk` is the file's content read *under its lock* (another build may have added entries since
    ours started), `built` the serialised cache of our build (None when TensorRT gave none back).
    `create(bytes)` makes a cache object (with `.serialize()`), `combine(into, other)` merges `other` into
    `into` ignoring mismatched entries and returns success. A cache that cannot be read or combined
    never costs the other side's entries: an unreadable file is replaced by ours, a failed combine keeps ours.
    """
    if not built:
        return None
    ours = create(built)
    if ours is None:
        return None
    if not on_disk:
        return bytes(ours.serialize())
    try:
        base = create(on_disk)
    except Exception:
        base = None
    if base is None:
        return bytes(ours.serialize())
    try:
        merged = bool(combine(base, ours))
    except Exception:
        merged = False
    return bytes(base.serialize()) if merged else bytes(ours.serialize())


def timing_cache_name(trt_version: str, device: dict[str, Any]) -> str:
    """One timing-cache file per TensorRT build and device identity (tactic timings are per GPU model)."""
    ident = "-".join(str(device.get(k) or "") for k in ("name", "sm_count", "memory_mb", "board"))
    return f"trt{trt_version}-{slug(ident)}-sm{device.get('sm', '')}.cache"


def plan_paths(key: str, out_dir: str | os.PathLike[str] = "engines") -> tuple[Path, Path]:
    plan = Path(out_dir) / f"{key}.plan"
    return plan, plan_sidecar_path(plan)


def recipe(onnx_path: str | os.PathLike[str], precision: str) -> dict[str, Any]:
    """The precision recipe recorded in the ONNX artifact's sidecar (quantiser, method, calibration hash)."""
    art = OnnxArtifact.read_or_none(onnx_path)
    return art.recipe(precision) if art is not None else {}


def current_key_inputs(
    onnx_path: str | os.PathLike[str],
    precision: str,
    profile: tuple[int, int, int] = DEFAULT_PROFILE,
    *,
    workspace_mb: int = DEFAULT_WORKSPACE_MB,
    opt_level: int | None = None,
    trt_version: str,
    device: dict[str, Any],
    tf32: bool = True,
    trt_cuda: str | None = None,
    preview: Sequence[str] = (),
) -> KeyInputs:
    """The key inputs for this graph, TensorRT version and device (the caller probes them: build_engine, with
    env.require_cuda_device); the OS, L4T release and TensorRT's CUDA flavour are read here unless given.
    `preview`: build-time preview features set (recorded only when there are any, so keys made without
    them are unchanged)."""
    major = int(trt_version.split(".")[0])
    extra: dict[str, Any] = {"recipe": recipe(onnx_path, precision)}
    if preview:
        extra["preview_features"] = sorted(preview)
    return KeyInputs(
        onnx_sha256=sha256_file(onnx_path), precision=precision, typing="strong" if major >= 10 else "weak",
        profile=(int(profile[0]), int(profile[1]), int(profile[2])), trt_version=trt_version,
        gpu_name=device["name"], gpu_sm=device["sm"], cuda_major=device.get("cuda_major", ""), os_arch=os_arch(),
        l4t_release=l4t_release(), workspace_mb=workspace_mb, opt_level=opt_level,
        extra=extra,
        gpu_sm_count=int(device.get("sm_count") or 0), gpu_memory_mb=int(device.get("memory_mb") or 0),
        board_model=str(device.get("board") or ""), trt_cuda=trt_cuda if trt_cuda is not None else trt_cuda_flavour(),
        tf32=bool(tf32),
    )


def machine_key_fields(trt_version: str, device: dict[str, Any], trt_cuda: str | None = None) -> dict[str, Any]:
    """This machine in the vocabulary of KeyInputs (what plan_skip_reason compares); TensorRT's CUDA flavour
    is read here unless given."""
    return {"trt_version": trt_version, "gpu_name": device.get("name"), "gpu_sm": device.get("sm"),
            "gpu_sm_count": device.get("sm_count"), "gpu_memory_mb": device.get("memory_mb"),
            "board_model": device.get("board"), "trt_cuda": trt_cuda if trt_cuda is not None else trt_cuda_flavour()}
