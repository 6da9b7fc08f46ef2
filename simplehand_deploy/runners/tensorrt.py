"""TensorRT runner: a thin wrapper over `trt.runtime.TrtEngine` (GPU compute timing, CUDA graphs)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .base import Lifecycle


class TrtRunner(Lifecycle):
    def __init__(self, plan: str | os.PathLike[str], *, cuda_graphs: bool = True) -> None:
        side = Path(plan).with_suffix(".json")
        meta = json.loads(side.read_text()) if side.is_file() else {}
        self.name = "tensorrt"
        self.precision = meta.get("precision", "fp32")
        self.artifact = str(plan)
        self.device = "cuda"
        self.cuda_graphs = cuda_graphs
        self.engine: Any = None
        self._sha = ""

    def _open(self) -> None:
        from .._deps import tensorrt_or_none
        from ..fileio import sha256_file
        from .base import Unavailable

        if tensorrt_or_none() is None:
            raise Unavailable("TensorRT is not installed")
        from ..trt.runtime import TrtEngine

        self.engine = TrtEngine(self.artifact, cuda_graphs=self.cuda_graphs)
        self._sha = sha256_file(self.artifact)

    def _close(self) -> None:
        self.engine = None  # TrtEngine frees its context, graphs and buffers when dropped

    def prepare(self, batch: int) -> None:
        self._require_open()
        bufs = self.engine.prepare(batch)
        bufs["image"].uniform_(0, 255)

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        self._require_open()
        return self.engine.infer(images)

    def launch(self, batch: int) -> None:
        self.engine.enqueue(batch)

    def synchronize(self) -> None:
        self.engine.stream.synchronize()

    def threads(self) -> int | None:
        import torch

        return int(torch.get_num_threads())

    def describe(self) -> dict[str, Any]:
        graphs = bool(getattr(self.engine, "_graphs", False)) if self.engine is not None else False
        return {"fused": True, "cuda_graphs": graphs, "artifact_sha256": self._sha, "timing_scope": "gpu_compute"}
