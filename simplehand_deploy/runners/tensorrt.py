"""TensorRT runner: a thin wrapper over `trt.runtime.TrtEngine` (GPU compute timing, CUDA graphs).

Timing uses the engine's own buffer backend: its stream and its events (torch, cuda-python or pycuda),
so a Jetson without CUDA torch is timed as well. TensorRT allocates device memory outside torch's
allocator: rows carry `engine_device_memory_mb` and `device_memory_delta_mb` instead of torch's peak.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..artifact import EngineArtifact
from .base import Lifecycle


class TrtRunner(Lifecycle):
    torch_allocator = False  # timing.measure: torch's peak-memory counters say nothing about TensorRT

    def __init__(self, plan: str | os.PathLike[str], *, cuda_graphs: bool = True, buffers: str = "auto") -> None:
        self.meta: EngineArtifact | None = EngineArtifact.read_or_none(plan)
        self.name = "tensorrt"
        self.precision: str = (self.meta.precision if self.meta else None) or "fp32"
        self.artifact = str(plan)
        self.device = "cuda"
        self.cuda_graphs = cuda_graphs
        self.buffers = buffers
        self.engine: Any = None
        self._sha = ""
        self._batch: int | None = None

    def _open(self) -> None:
        from .._deps import tensorrt_or_none
        from ..fileio import sha256_file
        from .base import Unavailable

        if tensorrt_or_none() is None:
            raise Unavailable("TensorRT is not installed")
        from ..trt.runtime import TrtEngine

        self.engine = TrtEngine(self.artifact, cuda_graphs=self.cuda_graphs, buffers=self.buffers)
        self._sha = sha256_file(self.artifact)

    def _close(self) -> None:
        if self.engine is not None:
            self.engine.close()
        self.engine = None

    def prepare(self, batch: int) -> None:
        self._require_open()
        self.engine.fill_random(batch)  # through the backend: torch tensors or cuda-python/pycuda buffers
        self._batch = batch

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        self._require_open()
        return self.engine.infer(images)

    def launch(self, batch: int) -> None:
        self.engine.enqueue(batch)

    def synchronize(self) -> None:
        self.engine.stream.synchronize()

    def event(self) -> Any:
        """A timing event of the engine's backend on the engine's stream (timing.time_gpu)."""
        return self.engine.event()

    def threads(self) -> int | None:
        import torch

        return int(torch.get_num_threads())

    def trtexec_command(self, batch: int, *, duration: float = 3.0, iterations: int = 10,
                        warmup: float = 0.2) -> str:
        from .._deps import tensorrt_or_none
        from ..timing import trtexec_command

        trt = tensorrt_or_none()
        recorded = self.meta.built_with("trt_version") if self.meta else None
        version = str(getattr(trt, "__version__", "")) or str(recorded or "")
        graphs = self.engine is not None and batch in getattr(self.engine, "_graphs", {})
        return trtexec_command(self.artifact, batch, version, cuda_graphs=graphs, duration=duration,
                               iterations=iterations, warmup=warmup)

    def describe(self) -> dict[str, Any]:
        engine = self.engine
        graphs = bool(getattr(engine, "_graphs", False)) if engine is not None else False
        meta = self.meta
        out = {"fused": True, "cuda_graphs": graphs, "artifact_sha256": self._sha, "timing_scope": "gpu_compute",
               "precision_mix": meta.precision_mix if meta else None,
               "precision_verified": meta.precision_verified if meta else None,
               "engine_device_memory_mb": getattr(engine, "engine_device_memory_mb", None)
               if engine is not None else meta.engine_device_memory_mb if meta else None,
               "device_memory_delta_mb": getattr(engine, "device_memory_delta_mb", None)}
        if self._batch is not None and engine is not None:
            out["trtexec_command"] = self.trtexec_command(self._batch)
        return out
