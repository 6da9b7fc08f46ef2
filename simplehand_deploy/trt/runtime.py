"""Run a TensorRT plan: name-based I/O, `execute_async_v3`, torch CUDA buffers, CUDA graphs per batch.

Buffers are torch CUDA tensors (zero-copy against the eager baseline; NVIDIA's own samples
dropped pycuda). Each batch size gets its own captured CUDA graph, because a graph bakes in shapes
and addresses; capture is preceded by one plain enqueue so TensorRT's lazy initialisation is not
captured, and falls back to plain enqueue if capture fails.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from .build import cuda_device, require_tensorrt

OUTPUTS = ("uv", "vertices")


class TrtEngine:
    """A deserialised plan with one execution context, ready for `infer(images)`."""

    def __init__(self, plan_path: str | os.PathLike[str], *, cuda_graphs: bool = True) -> None:
        import tensorrt as trt
        import torch

        self.trt = require_tensorrt()
        cuda_device()
        self.path = Path(plan_path)
        if not self.path.is_file():
            raise UsageError(f"engine {self.path}: no such file (build one with `simplehand-deploy build`)")
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise UsageError(f"engine {self.path}: this TensorRT ({self.trt.__version__}) or GPU cannot load it "
                             "(built elsewhere?); rebuild with `simplehand-deploy build --force`")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        self.cuda_graphs = cuda_graphs
        self._graphs: dict[int, Any] = {}
        self._buffers: dict[int, dict[str, Any]] = {}
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        lo, _, hi = self.engine.get_tensor_profile_shape("image", 0)
        self.min_batch, self.max_batch = int(lo[0]), int(hi[0])

    def _torch_dtype(self, name: str) -> Any:
        import torch

        dt = self.engine.get_tensor_dtype(name)
        return {self.trt.DataType.FLOAT: torch.float32, self.trt.DataType.HALF: torch.float16}.get(dt, torch.float32)

    def prepare(self, batch: int) -> dict[str, Any]:
        """Allocate I/O for one batch size and bind it (and capture a CUDA graph when enabled)."""
        import torch

        if not self.min_batch <= batch <= self.max_batch:
            raise UsageError(f"batch {batch} is outside the engine profile [{self.min_batch}, {self.max_batch}]; "
                             "rebuild with a wider --max")
        if batch in self._buffers:
            return self._buffers[batch]
        self.context.set_input_shape("image", self.trt.Dims([batch, 3, 224, 224]))
        bufs = {"image": torch.empty((batch, 3, 224, 224), dtype=self._torch_dtype("image"), device="cuda")}
        for name in OUTPUTS:
            dims = self.context.get_tensor_shape(name)
            shape = tuple(int(dims[i]) for i in range(len(dims)))
            bufs[name] = torch.empty(shape, dtype=self._torch_dtype(name), device="cuda")
        self._buffers[batch] = bufs
        if self.cuda_graphs:
            self._capture(batch)
        return bufs

    def _bind(self, batch: int) -> None:
        self.context.set_input_shape("image", self.trt.Dims([batch, 3, 224, 224]))
        for name, t in self._buffers[batch].items():
            self.context.set_tensor_address(name, t.data_ptr())

    def _capture(self, batch: int) -> None:
        import torch

        self._bind(batch)
        with torch.cuda.stream(self.stream):
            self.context.execute_async_v3(self.stream.cuda_stream)  # lazy init outside the capture
        self.stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=self.stream):
                self.context.execute_async_v3(self.stream.cuda_stream)
            self._graphs[batch] = graph
        except Exception:  # some engines hold non-capturable ops: plain enqueue then
            self._graphs.pop(batch, None)

    def enqueue(self, batch: int) -> None:
        """Launch one inference on the engine's stream for already-bound buffers (no sync)."""
        graph = self._graphs.get(batch)
        if graph is not None:
            graph.replay()
        else:
            self._bind(batch)
            self.context.execute_async_v3(self.stream.cuda_stream)

    def infer(self, images: Any) -> dict[str, np.ndarray]:
        import torch

        x = torch.as_tensor(images)
        bufs = self.prepare(int(x.shape[0]))
        bufs["image"].copy_(x.to(bufs["image"].dtype), non_blocking=False)
        self.enqueue(int(x.shape[0]))
        self.stream.synchronize()
        return {k: bufs[k].float().cpu().numpy() for k in OUTPUTS}

    def layer_times(self, batch: int, runs: int = 10) -> dict[str, float]:
        """Per-layer mean milliseconds from an IProfiler run, separate from any timed run."""
        trt = self.trt

        class _Profiler(trt.IProfiler):  # type: ignore[misc, name-defined]
            def __init__(self) -> None:
                trt.IProfiler.__init__(self)
                self.times: dict[str, float] = {}

            def report_layer_time(self, layer_name: str, ms: float) -> None:
                self.times[layer_name] = self.times.get(layer_name, 0.0) + ms

        bufs = self.prepare(batch)
        prof = _Profiler()
        ctx = self.engine.create_execution_context()  # its own context: timed runs never carry a profiler
        ctx.profiler = prof
        ctx.set_input_shape("image", trt.Dims([batch, 3, 224, 224]))
        for name, t in bufs.items():
            ctx.set_tensor_address(name, t.data_ptr())
        for _ in range(runs):
            ctx.execute_async_v3(self.stream.cuda_stream)
            self.stream.synchronize()
        return {k: v / runs for k, v in prof.times.items()}
