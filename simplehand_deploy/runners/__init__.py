"""Runners: one protocol over torch eager/compile, ONNX Runtime and TensorRT (imported lazily).

`get_runner` returns an unopened runner: open it (`with runner:`) before prepare/infer/launch.
"""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from .base import Lifecycle, Runner, Unavailable

KNOWN = ("torch", "torch_unfused", "torch_compile", "onnxruntime", "tensorrt")


def get_runner(name: str, **kwargs: Any) -> Runner:
    """Build a runner by name; heavy imports happen only for the one asked for (and only at open())."""
    if name == "torch":
        from .torch_eager import TorchRunner

        return TorchRunner(**kwargs)
    if name == "torch_unfused":
        from .torch_eager import TorchRunner

        return TorchRunner(fused=False, **kwargs)
    if name == "torch_compile":
        from .torch_eager import TorchRunner

        return TorchRunner(compile=True, **kwargs)
    if name == "onnxruntime":
        from .onnxruntime import OrtRunner

        return OrtRunner(**kwargs)
    if name == "tensorrt":
        from .tensorrt import TrtRunner

        return TrtRunner(**kwargs)
    raise UsageError(f"unknown runner {name!r}: choose from {', '.join(KNOWN)}")


__all__ = ["KNOWN", "Lifecycle", "Runner", "Unavailable", "get_runner"]
