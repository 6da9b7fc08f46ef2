"""simplehand-deploy: SimpleHand to ONNX, FP16/INT8 and TensorRT, with drift and latency measured.

Every command is also a Python function; the main path (load -> export -> FP16/INT8 -> drift -> engine) is
exported here, and README.md's "Python" section walks it. The names load on first use (PEP 562):
`import simplehand_deploy` imports neither torch nor onnx, so the command line's `--help` stays instant.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that owns it
_EXPORTS = {
    "create_model": "model",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "build_calibration_set": "calibration",
    "load_calibration_set": "calibration",
    "export_onnx": "export",
    "convert_fp16": "precision",
    "quantize_int8": "precision",
    "measure_drift": "drift",
    "run_model": "predict",
    "build_engine": "trt.build",
    "TrtEngine": "trt.runtime",
    "get_runner": "runners",
    "measure": "timing",
    "run_engine_job": "pipeline",
    "fingerprint": "env",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # what type checkers and IDEs see (explicit re-exports); at run time __getattr__ imports
    from .calibration import build_calibration_set as build_calibration_set
    from .calibration import load_calibration_set as load_calibration_set
    from .checkpoint import load_checkpoint as load_checkpoint
    from .checkpoint import save_checkpoint as save_checkpoint
    from .drift import measure_drift as measure_drift
    from .env import fingerprint as fingerprint
    from .export import export_onnx as export_onnx
    from .model import create_model as create_model
    from .pipeline import run_engine_job as run_engine_job
    from .precision import convert_fp16 as convert_fp16
    from .precision import quantize_int8 as quantize_int8
    from .predict import run_model as run_model
    from .runners import get_runner as get_runner
    from .timing import measure as measure
    from .trt.build import build_engine as build_engine
    from .trt.runtime import TrtEngine as TrtEngine


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'simplehand_deploy' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
