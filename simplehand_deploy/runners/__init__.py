"""Runners: one protocol over torch eager/compile, ONNX Runtime and TensorRT (imported lazily)."""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from .base import Runner

KNOWN = ("torch", "torch_compile", "onnxruntime", "tensorrt")


def get_runner(name: str, **kwargs: Any) -> Runner:
    """Build a runner by name; heavy imports happen only for the one asked for."""
    if name == "torch":
        from .torch_eager import TorchRunner

        return TorchRunner(**kwargs)
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


__all__ = ["KNOWN", "Runner", "get_runner"]
