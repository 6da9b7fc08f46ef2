"""PyTorch eager (and torch.compile) runner: the reference every drift figure is measured against."""

from __future__ import annotations

from typing import Any

import numpy as np


class TorchRunner:
    def __init__(self, model: Any, *, precision: str = "fp32", device: str | None = None, compile: bool = False,
                 channels_last: bool = False) -> None:
        import torch

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if precision in ("fp16", "bf16") and self.device == "cpu":
            from ..errors import UsageError

            raise UsageError(f"torch {precision} autocast is benchmarked on CUDA only (this run is on CPU)")
        self.name = "torch_compile" if compile else "torch_eager"
        self.precision = precision
        self.artifact = ""
        self.fused = bool(getattr(model, "is_fused", False))
        import copy

        self.model = copy.deepcopy(model).to(self.device).eval()  # never move the caller's model
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.fn = torch.compile(self.model) if compile else self.model
        self._staged: dict[int, Any] = {}

    def _autocast(self) -> Any:
        import contextlib

        import torch

        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(device_type=self.device.split(":")[0], dtype=dtype)

    def prepare(self, batch: int) -> None:
        import torch

        x = torch.rand(batch, 3, 224, 224, generator=torch.Generator().manual_seed(batch)) * 255
        self._staged[batch] = x.to(self.device).contiguous(memory_format=self.memory_format)
        self.launch(batch)  # first call compiles / allocates outside the timed region
        self.synchronize()

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device).contiguous(memory_format=self.memory_format)
        with torch.no_grad(), self._autocast():
            uv, v = self.fn(x)
        return {"uv": uv.float().cpu().numpy(), "vertices": v.float().cpu().numpy()}

    def launch(self, batch: int) -> None:
        import torch

        with torch.no_grad(), self._autocast():
            self.fn(self._staged[batch])

    def synchronize(self) -> None:
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def describe(self) -> dict[str, Any]:
        return {"fused": self.fused, "cuda_graphs": False, "artifact_sha256": "",
                "timing_scope": "gpu_compute" if self.device.startswith("cuda") else "host"}
