"""Heavy optional dependencies are imported here, inside the functions that need them."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import UsageError

INSTALL_HINTS = {
    "tensorrt": (
        "TensorRT is not installed. Desktop: `pip install 'simplehand-deploy[trt]'` (needs NVIDIA's index, "
        "pypi.nvidia.com, for the libraries). Jetson: use JetPack's `python3-libnvinfer` from apt, never pip."
    ),
    "onnxruntime": "ONNX Runtime is not installed: `pip install onnxruntime` (or onnxruntime-gpu on CUDA machines).",
    "onnxsim": "onnxsim is not installed: `pip install onnxsim`.",
    "onnxscript": "the dynamo exporter needs onnxscript: `pip install 'simplehand-deploy[dynamo]'`.",
    "modelopt": "ModelOpt runs in its own venv (its onnx/onnxruntime pins clash with ours): `make modelopt`.",
    "pycuda": "pycuda is not installed: `pip install 'simplehand-deploy[pycuda]'` (compiles against a CUDA toolkit).",
    "cuda": "cuda-python is not installed: `pip install cuda-python`.",
}


def require(module: str) -> ModuleType:
    """Import `module` or raise a UsageError carrying the install command."""
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        hint = INSTALL_HINTS.get(top, f"`pip install {top}`")
        raise UsageError(f"{hint} ({exc})") from None


def require_tensorrt() -> ModuleType:
    """The real tensorrt module, or a UsageError with the install route (desktop and JetPack)."""
    trt = tensorrt_or_none()
    if trt is None:
        raise UsageError(INSTALL_HINTS["tensorrt"])
    return trt


def tensorrt_or_none() -> ModuleType | None:
    """The real TensorRT module, or None.

    `tensorrt-stubs` installs a stub-only `tensorrt/` folder that imports as an empty namespace
    package, so a bare `import tensorrt` is not proof of TensorRT: require `Builder` and a version.
    """
    try:
        trt = importlib.import_module("tensorrt")
    except Exception:
        return None
    if not hasattr(trt, "Builder") or not hasattr(trt, "__version__"):
        return None
    return trt
