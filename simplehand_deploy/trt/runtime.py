"""Run a TensorRT plan: name-based I/O, `execute_async_v3`, device buffers, CUDA graphs per batch size.

Buffers are torch CUDA tensors by default (zero-copy against the eager baseline, no extra
dependency; NVIDIA's own samples dropped pycuda). Where torch has no CUDA (e.g. a Jetson without
NVIDIA's torch wheel) cuda-python's runtime bindings take over; pycuda only when asked for.
Each batch size gets its own captured CUDA graph, because a graph bakes in shapes and addresses;
capture is preceded by one plain enqueue so TensorRT's lazy initialisation is not captured, runs
on a non-default stream, and falls back to plain enqueue if capture fails.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._deps import INSTALL_HINTS
from ..errors import UsageError
from .build import cuda_device, require_tensorrt

OUTPUTS = ("uv", "vertices")
BUFFERS = ("auto", "torch", "cuda-python", "pycuda")
IMAGE = (3, 224, 224)


def _np_dtype(trt: Any, dt: Any) -> Any:
    table = {"FLOAT": np.float32, "HALF": np.float16, "INT32": np.int32, "INT8": np.int8, "BOOL": np.bool_}
    for name, np_dt in table.items():
        if dt == getattr(trt.DataType, name, None):
            return np_dt
    return np.float32


# Buffer backends ------------------------------------------------------------------------------------------------
# Each one owns a non-default stream and offers: empty, ptr, upload, download, synchronize, capture.


class _TorchMem:
    """torch CUDA tensors and a torch stream; graphs via torch.cuda.CUDAGraph."""

    name = "torch"

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.stream = torch.cuda.Stream()
        self.handle = int(self.stream.cuda_stream)

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        t = self.torch
        return t.empty(shape, dtype=t.from_numpy(np.zeros(0, dtype)).dtype, device="cuda")

    def ptr(self, buf: Any) -> int:
        return int(buf.data_ptr())

    def upload(self, buf: Any, data: Any) -> None:
        with self.torch.cuda.stream(self.stream):
            buf.copy_(self.torch.as_tensor(data).to(buf.dtype), non_blocking=False)

    def download(self, buf: Any) -> np.ndarray:
        self.stream.synchronize()
        return np.asarray(buf.float().cpu().numpy())

    def synchronize(self) -> None:
        self.stream.synchronize()

    def capture(self, launch: Callable[[], None]) -> Callable[[], None] | None:
        graph = self.torch.cuda.CUDAGraph()
        try:
            with self.torch.cuda.graph(graph, stream=self.stream):
                launch()
        except Exception:
            return None
        return graph.replay


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6 (the only path in 13)
    except ImportError:
        try:
            from cuda import cudart  # cuda-python 11.8 on JetPack 5
        except ImportError:
            raise UsageError(INSTALL_HINTS["cuda"]) from None
    return cudart


class _CudaPythonMem:
    """Raw cudaMalloc'd buffers through cuda-python's runtime bindings."""

    name = "cuda-python"

    def __init__(self) -> None:
        self.rt = _cudart()
        self.stream_obj = self._ok(self.rt.cudaStreamCreate())
        self.handle = int(self.stream_obj)
        self.stream = self  # `.stream.synchronize()` works for every backend

    def _ok(self, result: Any) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise RuntimeError(f"CUDA runtime call failed: {err}")
        return rest[0] if len(rest) == 1 else rest

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return {"ptr": int(self._ok(self.rt.cudaMalloc(nbytes))), "shape": shape, "dtype": np.dtype(dtype),
                "nbytes": nbytes}

    def ptr(self, buf: Any) -> int:
        return int(buf["ptr"])

    def upload(self, buf: Any, data: Any) -> None:
        host = np.ascontiguousarray(np.asarray(data), dtype=buf["dtype"])
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._ok(self.rt.cudaMemcpyAsync(buf["ptr"], host.ctypes.data, buf["nbytes"], kind, self.stream_obj))
        self.synchronize()  # `host` must outlive the copy

    def download(self, buf: Any) -> np.ndarray:
        out = np.empty(buf["shape"], dtype=buf["dtype"])
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._ok(self.rt.cudaMemcpyAsync(out.ctypes.data, buf["ptr"], buf["nbytes"], kind, self.stream_obj))
        self.synchronize()
        return out.astype(np.float32)

    def synchronize(self) -> None:
        self._ok(self.rt.cudaStreamSynchronize(self.stream_obj))

    def capture(self, launch: Callable[[], None]) -> Callable[[], None] | None:
        rt = self.rt
        try:
            mode = rt.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal
            self._ok(rt.cudaStreamBeginCapture(self.stream_obj, mode))
            launch()
            graph = self._ok(rt.cudaStreamEndCapture(self.stream_obj))
            graph_exec = self._ok(rt.cudaGraphInstantiate(graph, 0))
        except Exception:
            return None
        return lambda: self._ok(rt.cudaGraphLaunch(graph_exec, self.stream_obj))


class _PycudaMem:
    """pycuda, only on request (sdist-only on PyPI: it compiles against a CUDA toolkit). No graph capture."""

    name = "pycuda"

    def __init__(self) -> None:
        try:
            import pycuda.autoinit  # noqa: F401  (creates the context)
            import pycuda.driver as drv
        except ImportError:
            raise UsageError(INSTALL_HINTS["pycuda"]) from None
        self.drv = drv
        self.stream = drv.Stream()
        self.handle = int(self.stream.handle)

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return {"mem": self.drv.mem_alloc(nbytes), "shape": shape, "dtype": np.dtype(dtype)}

    def ptr(self, buf: Any) -> int:
        return int(buf["mem"])

    def upload(self, buf: Any, data: Any) -> None:
        host = np.ascontiguousarray(np.asarray(data), dtype=buf["dtype"])
        self.drv.memcpy_htod_async(buf["mem"], host, self.stream)
        self.stream.synchronize()

    def download(self, buf: Any) -> np.ndarray:
        out = np.empty(buf["shape"], dtype=buf["dtype"])
        self.drv.memcpy_dtoh_async(out, buf["mem"], self.stream)
        self.stream.synchronize()
        return out.astype(np.float32)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def capture(self, launch: Callable[[], None]) -> Callable[[], None] | None:
        return None


def _memory(buffers: str) -> Any:
    if buffers not in BUFFERS:
        raise UsageError(f"buffers {buffers!r}: choose one of {', '.join(BUFFERS)}")
    if buffers == "auto":
        import torch

        buffers = "torch" if torch.cuda.is_available() else "cuda-python"
    return {"torch": _TorchMem, "cuda-python": _CudaPythonMem, "pycuda": _PycudaMem}[buffers]()


def _mismatch(plan: Path, trt: Any, device: dict[str, str]) -> str:
    """What differs between the plan's sidecar and this machine (why deserialisation failed)."""
    side = plan.with_suffix(".json")
    try:
        built = json.loads(side.read_text()).get("key_inputs", {})
    except (OSError, ValueError):
        return "built elsewhere?"
    diffs = [f"{label} {built.get(k)!r} != {here!r}" for label, k, here in
             (("TensorRT", "trt_version", str(trt.__version__)), ("GPU", "gpu_name", device.get("name")),
              ("SM", "gpu_sm", device.get("sm"))) if built.get(k) not in (None, here)]
    return "built with " + ", ".join(diffs) if diffs else "corrupt or built elsewhere?"


class TrtEngine:
    """A deserialised plan with one execution context, ready for `infer(images)`.

    `prepare(batch)` allocates and binds I/O for one batch size (capturing its CUDA graph);
    `enqueue(batch)` launches on `self.stream` without syncing (for timing loops); `infer(images)`
    does copy-in, launch, sync, copy-out. With the torch backend `prepare` returns torch tensors.
    """

    def __init__(self, plan_path: str | os.PathLike[str], *, cuda_graphs: bool = True, buffers: str = "auto") -> None:
        require_tensorrt()
        import tensorrt as trt  # the real module from here on (also what mypy checks against the stubs)

        self.trt = trt
        device = cuda_device()
        self.path = Path(plan_path)
        if not self.path.is_file():
            raise UsageError(f"engine {self.path}: no such file (build one with `simplehand-deploy build`)")
        self.mem = _memory(buffers)
        self.stream = self.mem.stream
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise UsageError(f"engine {self.path}: TensorRT {trt.__version__} on {device['name']} cannot load it "
                             f"({_mismatch(self.path, trt, device)}); rebuild it here with "
                             "`simplehand-deploy build --onnx <its ONNX> --precision <p> --force`")
        self.context = self.engine.create_execution_context()
        self.cuda_graphs = cuda_graphs
        self._graphs: dict[int, Callable[[], None]] = {}
        self._buffers: dict[int, dict[str, Any]] = {}
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if self.inputs != ["image"] or any(o not in names for o in OUTPUTS):
            raise UsageError(f"engine {self.path}: I/O {names} is not SimpleHand's (image -> uv, vertices)")
        lo, _, hi = self.engine.get_tensor_profile_shape("image", 0)
        self.min_batch, self.max_batch = int(lo[0]), int(hi[0])

    @property
    def buffers(self) -> str:
        return str(self.mem.name)

    def prepare(self, batch: int) -> dict[str, Any]:
        """Allocate I/O for one batch size and bind it (and capture a CUDA graph when enabled)."""
        if not self.min_batch <= batch <= self.max_batch:
            raise UsageError(f"batch {batch} is outside the engine profile [{self.min_batch}, {self.max_batch}]; "
                             "rebuild with a wider `--profile MIN,OPT,MAX`")
        if batch in self._buffers:
            return self._buffers[batch]
        self.context.set_input_shape("image", (batch, *IMAGE))
        bufs = {"image": self.mem.empty((batch, *IMAGE), _np_dtype(self.trt, self.engine.get_tensor_dtype("image")))}
        for name in OUTPUTS:
            dims = self.context.get_tensor_shape(name)
            shape = tuple(int(dims[i]) for i in range(len(dims)))
            bufs[name] = self.mem.empty(shape, _np_dtype(self.trt, self.engine.get_tensor_dtype(name)))
        self._buffers[batch] = bufs
        if self.cuda_graphs:
            self._capture(batch)
        return bufs

    def _bind(self, batch: int) -> None:
        self.context.set_input_shape("image", (batch, *IMAGE))
        for name, buf in self._buffers[batch].items():
            self.context.set_tensor_address(name, self.mem.ptr(buf))

    def _launch(self) -> None:
        if not self.context.execute_async_v3(self.mem.handle):
            raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log)")

    def _capture(self, batch: int) -> None:
        self._bind(batch)
        self._launch()  # lazy initialisation outside the capture
        self.mem.synchronize()
        replay = self.mem.capture(self._launch)
        if replay is not None:
            self._graphs[batch] = replay

    def enqueue(self, batch: int) -> None:
        """Launch one inference on `self.stream` for already-prepared buffers (no sync)."""
        replay = self._graphs.get(batch)
        if replay is not None:
            replay()
        else:
            self._bind(batch)
            self._launch()

    def infer(self, images: Any) -> dict[str, np.ndarray]:
        """(B,3,224,224) normalised images (numpy or torch) -> {"uv": (B,21,2), "vertices": (B,778,3)} float32."""
        batch = int(images.shape[0])
        if tuple(images.shape[1:]) != IMAGE:
            raise UsageError(f"images: shape {tuple(images.shape)}; expected (B, 3, 224, 224)")
        bufs = self.prepare(batch)
        self.mem.upload(bufs["image"], images)
        self.enqueue(batch)
        self.mem.synchronize()
        return {k: self.mem.download(bufs[k]) for k in OUTPUTS}

    def layer_times(self, batch: int, runs: int = 10) -> dict[str, float]:
        """Per-layer mean milliseconds from an IProfiler run on its own context, never during a timed run."""
        trt = self.trt

        class _Profiler(trt.IProfiler):  # type: ignore[misc, name-defined]
            def __init__(self) -> None:
                trt.IProfiler.__init__(self)
                self.times: dict[str, float] = {}

            def report_layer_time(self, layer_name: str, ms: float) -> None:
                self.times[layer_name] = self.times.get(layer_name, 0.0) + ms

        bufs = self.prepare(batch)
        prof = _Profiler()
        ctx = self.engine.create_execution_context()
        ctx.profiler = prof
        ctx.set_input_shape("image", (batch, *IMAGE))
        for name, buf in bufs.items():
            ctx.set_tensor_address(name, self.mem.ptr(buf))
        for _ in range(runs):
            ctx.execute_async_v3(self.mem.handle)
            self.mem.synchronize()
        return {k: v / runs for k, v in prof.times.items()}
