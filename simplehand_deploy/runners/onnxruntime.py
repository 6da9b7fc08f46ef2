"""ONNX Runtime runner over any of our ONNX artifacts (CPU or CUDA execution provider)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .base import Lifecycle


class OrtRunner(Lifecycle):
    def __init__(self, onnx: str | os.PathLike[str], *, device: str = "cpu", threads: int | None = None,
                 spinning: bool = True) -> None:
        from ..errors import UsageError

        if not Path(onnx).is_file():
            raise UsageError(f"ONNX file {onnx}: no such file")
        self.name = "onnxruntime"
        self.precision = ""  # read from the graph at open()
        self.artifact = str(onnx)
        self.device = device
        self._threads = threads
        self._spinning = spinning  # False: session.intra_op.allow_spinning=0
        self.session: Any = None
        self._sha = ""
        self._staged: dict[int, dict[str, np.ndarray]] = {}

    def _open(self) -> None:
        from ..fileio import sha256_file
        from ..ort import graph_kind, make_session

        providers = None
        if self.device.startswith("cuda"):
            import onnxruntime as ort

            if "CUDAExecutionProvider" not in ort.get_available_providers():
                from .base import Unavailable

                raise Unavailable("ONNX Runtime has no CUDAExecutionProvider here (install onnxruntime-gpu)")
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        self.session = make_session(self.artifact, threads=self._threads, providers=providers,
                                    spinning=self._spinning)
        self.precision = graph_kind(self.artifact)
        self._sha = sha256_file(self.artifact)

    def _close(self) -> None:
        self._staged.clear()
        self.session = None

    def prepare(self, batch: int) -> None:
        self._require_open()
        rng = np.random.default_rng(batch)
        self._staged[batch] = {"image": (rng.random((batch, 3, 224, 224)) * 255).astype(np.float32)}
        self.launch(batch)

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        self._require_open()
        uv, v = self.session.run(["uv", "vertices"], {"image": np.ascontiguousarray(images, dtype=np.float32)})
        return {"uv": np.asarray(uv, np.float32), "vertices": np.asarray(v, np.float32)}

    def launch(self, batch: int) -> None:
        self.session.run(None, self._staged[batch])

    def synchronize(self) -> None:
        pass

    def threads(self) -> int | None:
        """Explicit --threads, else ONNX Runtime's default intra-op pool: one thread per physical core."""
        if self._threads:
            return int(self._threads)
        from ..env import physical_cores

        return physical_cores()

    def describe(self) -> dict[str, Any]:
        note = "CPU simulation of TensorRT precision" if self.precision not in ("fp32", "") else ""
        return {"fused": True, "cuda_graphs": False, "artifact_sha256": self._sha, "note": note,
                "timing_scope": "end_to_end" if self.device.startswith("cuda") else "host"}
