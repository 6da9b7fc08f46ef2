"""The Runner protocol every backend implements, and the lifecycle they share (after Polygraphy's runners).

A runner is cheap to construct (it records what to run) and does its heavy work in `open()` (load the
model, build the session or engine) and gives it back in `close()` (drop the session, staged inputs
and device memory, deterministically, not whenever the garbage collector gets round to it). Use it as
a context manager: `with get_runner("onnxruntime", onnx=p) as r: r.prepare(1); r.launch(1)`.
`prepare/infer/launch` on a runner that is not open raise, so a forgotten `open()` is loud.
"""

from __future__ import annotations

import gc
from typing import Any, Protocol

import numpy as np

from ..errors import UsageError


class Unavailable(UsageError):
    """This runner cannot run on this machine (library or device absent): reported as a `skipped:` row."""


class Runner(Protocol):
    name: str  # runner column: torch_eager | torch_unfused | torch_compile | onnxruntime | tensorrt
    precision: str  # fp32 | fp16 | bf16 | int8
    artifact: str  # path of the artifact run ("" for eager)
    device: str  # "cpu" or "cuda"

    def open(self) -> None:
        """Load/build what running needs (session, engine, device copy of the model); idempotent."""

    def close(self) -> None:
        """Free everything open() and prepare() allocated; the runner may be opened again."""

    def prepare(self, batch: int) -> None:
        """Allocate/bind whatever one batch size needs (outside the timed region)."""

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Images (B,3,224,224) float32 BGR 0..255 -> {uv (B,21,2), vertices (B,778,3)} as numpy."""

    def launch(self, batch: int) -> None:
        """One inference on pre-staged inputs, for timing (may be asynchronous on GPU)."""

    def synchronize(self) -> None:
        """Wait for launched work (no-op on CPU)."""

    def threads(self) -> int | None:
        """CPU intra-op threads in effect for this runner (the `cpu_threads` column)."""

    def describe(self) -> dict[str, Any]:
        """Columns this runner contributes: fused, cuda_graphs, timing_scope, artifact_sha256, ..."""


class Lifecycle:
    """open/close bookkeeping and the context-manager protocol; subclasses implement _open/_close."""

    _is_open = False

    @property
    def is_open(self) -> bool:
        return self._is_open

    def open(self) -> None:
        if not self._is_open:
            self._open()
            self._is_open = True

    def close(self) -> None:
        if self._is_open:
            try:
                self._close()
            finally:
                self._is_open = False
                gc.collect()  # free sessions/tensors now, before the next runner allocates

    def __enter__(self) -> Any:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _require_open(self) -> None:
        if not self._is_open:
            raise RuntimeError(f"{type(self).__name__} is not open: use `with runner:` or call runner.open() first")

    def _open(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError
