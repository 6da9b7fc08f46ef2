"""PyTorch eager (and torch.compile) runner: the reference every speed-up and drift figure is measured against.

Eager runs the *fused* (re-parameterised) model by default, as the ONNX/TensorRT graphs are fused:
comparing a fused graph with the training-time model would credit FastViT's re-parameterisation to
deployment. `fused=False` (runner `torch_unfused`) times the training-time model as its own row.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Lifecycle


def state_sha256(model: Any) -> str:
    """sha256 over the state dict (names, dtypes, shapes, bytes): the eager model's graph identity."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class TorchRunner(Lifecycle):
    def __init__(self, model: Any, *, precision: str = "fp32", device: str | None = None, compile: bool = False,
                 channels_last: bool = False, fused: bool = True, threads: int | None = None) -> None:
        from ..errors import UsageError

        self._source = model
        self.device = device or _default_device()
        if precision in ("fp16", "bf16") and self.device == "cpu":
            raise UsageError(f"torch {precision} autocast is benchmarked on CUDA only (this run is on CPU)")
        if not fused and bool(getattr(model, "is_fused", False)):
            raise UsageError("torch_unfused needs the training-time model, but the model given is already fused "
                             "(load it with fused=False)")
        self.name = "torch_compile" if compile else ("torch_eager" if fused else "torch_unfused")
        self.precision = precision
        self.artifact = ""
        self.fused = fused
        self.compile = compile
        self.channels_last = channels_last
        self._threads = threads
        self.model: Any = None
        self.fn: Any = None
        self._sha = ""
        self._staged: dict[int, Any] = {}

    def _open(self) -> None:
        import copy

        import torch

        if self.device.startswith("cuda") and not torch.cuda.is_available():
            from .base import Unavailable

            raise Unavailable("CUDA is not available to torch on this machine")
        if self._threads:
            torch.set_num_threads(self._threads)  # intra-op, process-wide; before the first call
        model = copy.deepcopy(self._source).eval()  # never change the caller's model
        if self.fused and not bool(getattr(model, "is_fused", False)):
            from ..model import fuse

            fuse(model)
        self._sha = state_sha256(model)
        self.model = model.to(self.device)
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.fn = torch.compile(self.model) if self.compile else self.model

    def _close(self) -> None:
        on_gpu = self.device.startswith("cuda")
        self._staged.clear()
        self.model = self.fn = None
        if on_gpu:
            import gc

            import torch

            gc.collect()
            torch.cuda.empty_cache()

    def _autocast(self) -> Any:
        import contextlib

        import torch

        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(device_type=self.device.split(":")[0], dtype=dtype)

    def prepare(self, batch: int) -> None:
        import torch

        self._require_open()
        x = torch.rand(batch, 3, 224, 224, generator=torch.Generator().manual_seed(batch)) * 255
        self._staged[batch] = x.to(self.device).contiguous(memory_format=self.memory_format)
        self.launch(batch)  # first call compiles / allocates outside the timed region
        self.synchronize()

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        self._require_open()
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

    def threads(self) -> int | None:
        import torch

        return int(torch.get_num_threads())

    def describe(self) -> dict[str, Any]:
        return {"fused": self.fused, "cuda_graphs": False, "artifact_sha256": self._sha,
                "timing_scope": "gpu_compute" if self.device.startswith("cuda") else "host"}


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
