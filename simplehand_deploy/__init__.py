"""simplehand-deploy: SimpleHand to ONNX, FP16/INT8 and TensorRT, with drift and latency measured."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
