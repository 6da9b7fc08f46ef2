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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__


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


def engine_key(inputs: KeyInputs) -> str:
    """24 hex characters of sha256 over a canonical JSON of every input."""
    payload = json.dumps(asdict(inputs), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def os_arch() -> str:
    return f"{platform.system().lower()}-{platform.machine()}"


def l4t_release(path: str = "/etc/nv_tegra_release") -> str:
    """Jetson L4T release line (e.g. 'R35 (release), REVISION: 4.1'), '' elsewhere."""
    try:
        first = Path(path).read_text().splitlines()[0]
    except (OSError, IndexError):
        return ""
    return first.lstrip("# ").split(", GCID")[0].strip()


def plan_paths(key: str, out_dir: str | os.PathLike[str] = "engines") -> tuple[Path, Path]:
    d = Path(out_dir)
    return d / f"{key}.plan", d / f"{key}.json"


def file_sha256(path: str | os.PathLike[str]) -> str:
    from ..fileio import sha256_file

    return sha256_file(path)


def recipe(onnx_path: str | os.PathLike[str], precision: str) -> dict[str, Any]:
    """The precision recipe recorded in the ONNX artifact's sidecar (quantiser, method, calibration hash)."""
    side = Path(onnx_path).with_suffix(".json")
    try:
        meta = json.loads(side.read_text())
    except (OSError, ValueError):
        return {}
    got = meta.get(precision, {}) if isinstance(meta, dict) else {}
    return got if isinstance(got, dict) else {}


def current_key_inputs(
    onnx_path: str | os.PathLike[str],
    precision: str,
    profile: tuple[int, int, int] = (1, 8, 64),
    *,
    workspace_mb: int = 4096,
    opt_level: int | None = None,
    trt_version: str | None = None,
    device: dict[str, str] | None = None,
) -> KeyInputs:
    """Gather the key inputs on this machine; TensorRT and the GPU are only queried when not given."""
    if trt_version is None:
        from .build import require_tensorrt

        trt_version = str(require_tensorrt().__version__)
    if device is None:
        from .build import cuda_device

        device = cuda_device()
    major = int(trt_version.split(".")[0])
    return KeyInputs(
        onnx_sha256=file_sha256(onnx_path), precision=precision, typing="strong" if major >= 10 else "weak",
        profile=(int(profile[0]), int(profile[1]), int(profile[2])), trt_version=trt_version,
        gpu_name=device["name"], gpu_sm=device["sm"], cuda_major=device.get("cuda_major", ""), os_arch=os_arch(),
        l4t_release=l4t_release(), workspace_mb=workspace_mb, opt_level=opt_level,
        extra={"recipe": recipe(onnx_path, precision)},
    )
