"""ONNX Runtime runner over any of our ONNX artifacts (CPU or CUDA execution provider)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np


class OrtRunner:
    def __init__(self, onnx: str | os.PathLike[str], *, device: str = "cpu", threads: int | None = None) -> None:
        from ..fileio import sha256_file
        from ..ort import graph_kind, make_session

        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda") else None
        self.session = make_session(onnx, threads=threads, providers=providers)
        self.name = "onnxruntime"
        self.precision = graph_kind(onnx)
        self.artifact = str(onnx)
        self.device = device
        self._sha = sha256_file(onnx)
        self._staged: dict[int, dict[str, np.ndarray]] = {}

    def prepare(self, batch: int) -> None:
        rng = np.random.default_rng(batch)
        self._staged[batch] = {"image": (rng.random((batch, 3, 224, 224)) * 255).astype(np.float32)}
        self.launch(batch)

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        uv, v = self.session.run(["uv", "vertices"], {"image": np.ascontiguousarray(images, dtype=np.float32)})
        return {"uv": np.asarray(uv, np.float32), "vertices": np.asarray(v, np.float32)}

    def launch(self, batch: int) -> None:
        self.session.run(None, self._staged[batch])

    def synchronize(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        note = "CPU simulation of TensorRT precision" if self.precision != "fp32" else ""
        return {"fused": True, "cuda_graphs": False, "artifact_sha256": self._sha, "note": note,
                "timing_scope": "end_to_end" if self.device.startswith("cuda") else "host"}
