"""TensorRT runner: a thin wrapper over `trt.runtime.TrtEngine` (GPU compute timing, CUDA graphs).

Timing uses the engine's own buffer backend: its stream and its events (torch, cuda-python or pycuda),
so a Jetson without CUDA torch is timed as well. TensorRT allocates device memory outside torch's
allocator: rows carry `engine_device_memory_mb` and `device_memory_delta_mb` instead of torch's peak.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .base import Lifecycle


class TrtRunner(Lifecycle):
    torch_allocator = False  # bench.latency: torch's peak-memory counters say nothing about TensorRT

    def __init__(self, plan: str | os.PathLike[str], *, cuda_graphs: bool = True, buffers: str = "auto") -> None:
        side = Path(plan).with_suffix(".json")
        try:
            meta = json.loads(side.read_text()) if side.is_file() else {}
        except ValueError:
            meta = {}
        self.meta: dict[str, Any] = meta if isinstance(meta, dict) else {}
        self.name = "tensorrt"
        self.precision = self.meta.get("precision", "fp32")
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
        """A timing event of the engine's backend on the engine's stream (bench.latency.time_gpu)."""
        return self.engine.event()

    def threads(self) -> int | None:
        import torch

        return int(torch.get_num_threads())

    def trtexec_command(self, batch: int, *, duration: float = 3.0, iterations: int = 10,
                        warmup: float = 0.2) -> str:
        from .._deps import tensorrt_or_none
        from ..bench.latency import trtexec_command

        trt = tensorrt_or_none()
        version = str(getattr(trt, "__version__", "")) or str(self.meta.get("key_inputs", {}).get("trt_version", ""))
        graphs = self.engine is not None and batch in getattr(self.engine, "_graphs", {})
        return trtexec_command(self.artifact, batch, version, cuda_graphs=graphs, duration=duration,
                               iterations=iterations, warmup=warmup)

    def describe(self) -> dict[str, Any]:
        engine = self.engine
        graphs = bool(getattr(engine, "_graphs", False)) if engine is not None else False
        out = {"fused": True, "cuda_graphs": graphs, "artifact_sha256": self._sha, "timing_scope": "gpu_compute",
               "precision_mix": self.meta.get("precision_mix"),
               "precision_verified": self.meta.get("precision_verified"),
               "engine_device_memory_mb": getattr(engine, "engine_device_memory_mb", None)
               if engine is not None else self.meta.get("engine_device_memory_mb"),
               "device_memory_delta_mb": getattr(engine, "device_memory_delta_mb", None)}
        if self._batch is not None and engine is not None:
            out["trtexec_command"] = self.trtexec_command(self._batch)
        return out
