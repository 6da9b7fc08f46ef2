"""TensorRT runner: a thin wrapper over `trt.runtime.TrtEngine` (GPU compute timing, CUDA graphs)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np


class TrtRunner:
    def __init__(self, plan: str | os.PathLike[str], *, cuda_graphs: bool = True) -> None:
        from ..fileio import sha256_file
        from ..trt.runtime import TrtEngine

        self.engine = TrtEngine(plan, cuda_graphs=cuda_graphs)
        side = Path(plan).with_suffix(".json")
        meta = json.loads(side.read_text()) if side.is_file() else {}
        self.name = "tensorrt"
        self.precision = meta.get("precision", "fp32")
        self.artifact = str(plan)
        self.device = "cuda"
        self._sha = sha256_file(plan)

    def prepare(self, batch: int) -> None:
        bufs = self.engine.prepare(batch)
        bufs["image"].uniform_(0, 255)

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return self.engine.infer(images)

    def launch(self, batch: int) -> None:
        self.engine.enqueue(batch)

    def synchronize(self) -> None:
        self.engine.stream.synchronize()

    def describe(self) -> dict[str, Any]:
        return {"fused": True, "cuda_graphs": bool(self.engine._graphs), "artifact_sha256": self._sha,
                "timing_scope": "gpu_compute"}
