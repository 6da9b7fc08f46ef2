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
