"""The Runner protocol every backend implements (after Polygraphy's runners)."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Runner(Protocol):
    name: str  # runner column: torch_eager | torch_compile | onnxruntime | tensorrt
    precision: str  # fp32 | fp16 | bf16 | int8
    artifact: str  # path of the artifact run ("" for eager)
    device: str  # "cpu" or "cuda"

    def prepare(self, batch: int) -> None:
        """Allocate/bind whatever one batch size needs (outside the timed region)."""

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Images (B,3,224,224) float32 BGR 0..255 -> {uv (B,21,2), vertices (B,778,3)} as numpy."""

    def launch(self, batch: int) -> None:
        """One inference on pre-staged inputs, for timing (may be asynchronous on GPU)."""

    def synchronize(self) -> None:
        """Wait for launched work (no-op on CPU)."""

    def describe(self) -> dict[str, Any]:
        """Columns this runner contributes: fused, cuda_graphs, timing_scope, artifact_sha256, ..."""
