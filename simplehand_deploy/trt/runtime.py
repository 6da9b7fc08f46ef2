"""Run a TensorRT plan: name-based I/O, `execute_async_v3`, device buffers, CUDA graphs per batch size.

Buffers are torch CUDA tensors by default (zero-copy against the eager baseline, no extra
dependency; NVIDIA's own samples dropped pycuda). Where torch has no CUDA (e.g. a Jetson without
NVIDIA's torch wheel) cuda-python's runtime bindings take over; pycuda only when asked for.
Each batch size gets its own execution context (shape and addresses bound once) and its own captured
CUDA graph, because a graph bakes in shapes and addresses; the contexts share one device-memory block.
Capture is preceded by one plain enqueue so TensorRT's lazy initialisation is not captured, runs on a
non-default stream, and falls back to plain enqueue if capture fails. Graph replay happens on that
same stream (torch's `CUDAGraph.replay()` would otherwise launch on the current stream).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._deps import INSTALL_HINTS
from ..env import require_cuda_device
from ..errors import UsageError
from ..timing import TorchEvent
from .build import BUFFERS, check_buffers, require_tensorrt

OUTPUTS = ("uv", "vertices")
IMAGE = (3, 224, 224)


def _np_dtype(trt: Any, dt: Any, tensor: str = "?") -> Any:
    """numpy dtype of a TensorRT I/O dtype; UsageError for one we do not stage (never a silent float32,
    which would size and read the buffer wrongly)."""
    table = {"FLOAT": np.float32, "HALF": np.float16, "INT32": np.int32, "INT8": np.int8, "BOOL": np.bool_}
    for name, np_dt in table.items():
        if dt == getattr(trt.DataType, name, None):
            return np_dt
    raise UsageError(f"engine tensor {tensor!r} has TensorRT dtype {dt}; this runtime stages only "
                     f"{', '.join(table)} I/O (SimpleHand's engines take and give float32 or float16)")


def choose_buffers(requested: str, available: dict[str, bool]) -> str:
    """The buffer backend for `--buffers`: `auto` = torch (torch with CUDA), else cuda-python, else pycuda
    (a Jetson whose torch lacks CUDA); a named one as asked (its constructor says how to install it).
    `available`: backend -> usable here."""
    if check_buffers(requested) != "auto":
        return requested
    for name in BUFFERS[1:]:
        if available.get(name):
            return name
    raise UsageError("--buffers auto: no CUDA buffer backend here (torch has no CUDA; cuda-python and pycuda are "
                     "not installed): `pip install cuda-python`, or a torch build with CUDA")


def available_buffers() -> dict[str, bool]:
    """Which buffer backends this machine offers (imports nothing heavy but torch)."""
    import importlib.util

    def found(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            return False

    try:
        import torch

        has_torch = bool(torch.cuda.is_available())
    except ImportError:  # pragma: no cover - torch is a dependency
        has_torch = False
    return {"torch": has_torch, "cuda-python": found("cuda.bindings") or found("cuda.cudart"),
            "pycuda": found("pycuda")}


def clear_cuda_error() -> str | None:
    """Read (and so reset) the CUDA runtime's last error after a failed graph capture, as trtexec does after
    `endCaptureOnError`, so the next checked launch does not inherit it. The cleared error, or None."""
    try:
        err = _cudart().cudaGetLastError()
        err = err[0] if isinstance(err, tuple) else err
        return None if int(err) == 0 else str(err)
    except Exception:  # no cuda-python: the runtime library torch / TensorRT already loaded
        pass
    import ctypes

    for lib in ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"):
        try:
            cudart = ctypes.CDLL(lib, mode=getattr(os, "RTLD_NOLOAD", 0) | ctypes.RTLD_GLOBAL)
        except OSError:
            continue
        code = int(cudart.cudaGetLastError())
        return None if code == 0 else f"cudaError {code}"
    return None


def _cuda_source(data: Any, dtype: Any, nbytes: int) -> tuple[Any, int] | None:
    """(keep-alive, device pointer) of a torch CUDA tensor holding `nbytes` of `dtype`, finished by its
    producer; None for host data. Other device arrays: UsageError (say what is accepted)."""
    if not getattr(data, "is_cuda", False):
        if hasattr(data, "__cuda_array_interface__"):
            raise UsageError("images: this buffer backend takes numpy arrays or torch CUDA tensors, not "
                             f"{type(data).__name__}")
        return None
    import torch

    src = data.detach().to(dtype=torch.from_numpy(np.zeros(0, dtype)).dtype).contiguous()
    if src.numel() * src.element_size() != nbytes:
        raise UsageError(f"images: {tuple(data.shape)} does not fill the prepared {nbytes}-byte buffer")
    torch.cuda.current_stream(src.device).synchronize()  # the producer's work first
    return src, int(src.data_ptr())


# Buffer backends ------------------------------------------------------------------------------------------------
# Each one owns a non-default stream and offers: empty, free, ptr, upload, download, synchronize, capture,
# event (its own CUDA events, recorded on that stream, for `timing.time_gpu`) and mem_get_info.


class _TorchMem:
    """torch CUDA tensors and a torch stream; graphs via torch.cuda.CUDAGraph.

    `CUDAGraph.replay()` launches on the *current* stream, whatever stream it was captured on, and
    `torch.cuda.Stream()` is non-blocking (not ordered against the legacy default stream): replay therefore
    runs inside `torch.cuda.stream(self.stream)`, where the timing events are recorded too, and uploads of
    CUDA tensors made on another stream are ordered with `wait_stream`.
    """

    name = "torch"

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.stream = torch.cuda.Stream()
        self.handle = int(self.stream.cuda_stream)

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        t = self.torch
        return t.empty(shape, dtype=t.from_numpy(np.zeros(0, dtype)).dtype, device="cuda")

    def free(self, buf: Any) -> None:
        pass  # the caching allocator takes it back when the last reference goes

    def ptr(self, buf: Any) -> int:
        return int(buf.data_ptr())

    def upload(self, buf: Any, data: Any) -> None:
        torch = self.torch
        src = data if isinstance(data, torch.Tensor) else torch.as_tensor(np.ascontiguousarray(data))
        if src.is_cuda:
            self.stream.wait_stream(torch.cuda.current_stream(src.device))  # the producer's work first
        with torch.cuda.stream(self.stream):
            buf.copy_(src, non_blocking=False)  # converts dtype too
            if src.is_cuda:
                src.record_stream(self.stream)

    def download(self, buf: Any) -> np.ndarray:
        self.stream.synchronize()
        return np.asarray(buf.float().cpu().numpy())

    def synchronize(self) -> None:
        self.stream.synchronize()

    def capture(self, launch: Callable[[], None]) -> Callable[[], None] | None:
        torch = self.torch
        graph = torch.cuda.CUDAGraph()
        current = torch.cuda.current_stream()
        try:
            try:  # thread-local capture mode, like trtexec (the keyword is missing in older torch)
                capturing = torch.cuda.graph(graph, stream=self.stream, capture_error_mode="thread_local")
            except TypeError:
                capturing = torch.cuda.graph(graph, stream=self.stream)
            with capturing:
                launch()
        except Exception:
            clear_cuda_error()
            return None
        finally:  # a failed capture_end skips torch.cuda.graph's own stream restore
            torch.cuda.set_stream(current)

        def replay() -> None:
            with torch.cuda.stream(self.stream):  # replay() launches on the current stream
                graph.replay()

        replay.graph = graph  # type: ignore[attr-defined]  # keep the graph alive with its replay
        return replay

    def release_graph(self, replay: Callable[[], None]) -> None:
        graph = getattr(replay, "graph", None)
        if graph is not None:
            with contextlib.suppress(Exception):
                graph.reset()

    def event(self) -> TorchEvent:
        return TorchEvent(self.stream)

    def mem_get_info(self) -> tuple[int, int]:
        free, total = self.torch.cuda.mem_get_info()
        return int(free), int(total)


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6 (the only path in 13)
    except ImportError:
        try:
            from cuda import cudart  # cuda-python 11.8 on JetPack 5
        except ImportError:
            raise UsageError(INSTALL_HINTS["cuda"]) from None
    return cudart


def _ok(result: Any) -> Any:
    """cuda-python returns (err, *values): raise on err, unwrap the values."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA runtime call failed: {err}")
    return rest[0] if len(rest) == 1 else rest


class _CudaEvent:
    def __init__(self, rt: Any, stream: Any) -> None:
        self.rt, self.stream = rt, stream
        self.ev = _ok(rt.cudaEventCreate())

    def record(self) -> None:
        _ok(self.rt.cudaEventRecord(self.ev, self.stream))

    def synchronize(self) -> None:
        _ok(self.rt.cudaEventSynchronize(self.ev))

    def elapsed_ms(self, end: _CudaEvent) -> float:
        return float(_ok(self.rt.cudaEventElapsedTime(self.ev, end.ev)))

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.rt.cudaEventDestroy(self.ev)


class _CudaPythonMem:
    """Raw cudaMalloc'd buffers through cuda-python's runtime bindings."""

    name = "cuda-python"

    def __init__(self) -> None:
        self.rt = _cudart()
        self.stream_obj = _ok(self.rt.cudaStreamCreate())
        self.handle = int(self.stream_obj)
        self.stream = self  # `.stream.synchronize()` works for every backend

    def _ok(self, result: Any) -> Any:
        return _ok(result)

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        nbytes = max(int(np.prod(shape)) * np.dtype(dtype).itemsize, 1)
        return {"ptr": int(self._ok(self.rt.cudaMalloc(nbytes))), "shape": shape, "dtype": np.dtype(dtype),
                "nbytes": nbytes}

    def free(self, buf: Any) -> None:
        if buf.get("ptr"):
            self.rt.cudaFree(buf["ptr"])
            buf["ptr"] = 0

    def ptr(self, buf: Any) -> int:
        return int(buf["ptr"])

    def upload(self, buf: Any, data: Any) -> None:
        """numpy (host to device) or a torch CUDA tensor (device to device, after its producer finished)."""
        device = _cuda_source(data, buf["dtype"], buf["nbytes"])
        if device is not None:
            kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice
            self._ok(self.rt.cudaMemcpyAsync(buf["ptr"], device[1], buf["nbytes"], kind, self.stream_obj))
            self.synchronize()  # the source tensor must outlive the copy
            return
        host = np.ascontiguousarray(np.asarray(data), dtype=buf["dtype"])
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._ok(self.rt.cudaMemcpyAsync(buf["ptr"], host.ctypes.data, host.nbytes, kind, self.stream_obj))
        self.synchronize()  # `host` must outlive the copy

    def download(self, buf: Any) -> np.ndarray:
        out = np.empty(buf["shape"], dtype=buf["dtype"])
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._ok(self.rt.cudaMemcpyAsync(out.ctypes.data, buf["ptr"], out.nbytes, kind, self.stream_obj))
        self.synchronize()
        return out.astype(np.float32)

    def synchronize(self) -> None:
        self._ok(self.rt.cudaStreamSynchronize(self.stream_obj))

    def capture(self, launch: Callable[[], None]) -> Callable[[], None] | None:
        rt = self.rt
        graph = None
        try:
            mode = rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
            self._ok(rt.cudaStreamBeginCapture(self.stream_obj, mode))
            try:
                launch()
            except Exception:
                rt.cudaStreamEndCapture(self.stream_obj)  # end the failed capture: the stream is usable again
                raise
            graph = self._ok(rt.cudaStreamEndCapture(self.stream_obj))
            # one signature from CUDA 11.4 to 13 (plain cudaGraphInstantiate changed in 12)
            graph_exec = self._ok(rt.cudaGraphInstantiateWithFlags(graph, 0))
        except Exception:
            if graph is not None:
                rt.cudaGraphDestroy(graph)
            rt.cudaGetLastError()  # clear the capture's error, as trtexec does
            return None

        def replay() -> None:
            self._ok(rt.cudaGraphLaunch(graph_exec, self.stream_obj))

        replay.graph = (graph, graph_exec)  # type: ignore[attr-defined]
        return replay

    def release_graph(self, replay: Callable[[], None]) -> None:
        """Destroy the executable graph, then the graph (cuda-python owns nothing it does not free)."""
        graph, graph_exec = getattr(replay, "graph", (None, None))
        if graph_exec is not None:
            self.rt.cudaGraphExecDestroy(graph_exec)
        if graph is not None:
            self.rt.cudaGraphDestroy(graph)
        replay.graph = (None, None)  # type: ignore[attr-defined]

    def event(self) -> _CudaEvent:
        return _CudaEvent(self.rt, self.stream_obj)

    def mem_get_info(self) -> tuple[int, int]:
        free, total = self._ok(self.rt.cudaMemGetInfo())
        return int(free), int(total)


class _PycudaEvent:
    def __init__(self, drv: Any, stream: Any) -> None:
        self.ev, self.stream = drv.Event(), stream

    def record(self) -> None:
        self.ev.record(self.stream)

    def synchronize(self) -> None:
        self.ev.synchronize()

    def elapsed_ms(self, end: _PycudaEvent) -> float:
        return float(end.ev.time_since(self.ev))


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
        nbytes = max(int(np.prod(shape)) * np.dtype(dtype).itemsize, 1)
        return {"mem": self.drv.mem_alloc(nbytes), "shape": shape, "dtype": np.dtype(dtype)}

    def free(self, buf: Any) -> None:
        buf["mem"].free()

    def ptr(self, buf: Any) -> int:
        return int(buf["mem"])

    def upload(self, buf: Any, data: Any) -> None:
        """numpy (host to device) or a torch CUDA tensor (device to device, after its producer finished)."""
        nbytes = max(int(np.prod(buf["shape"])) * buf["dtype"].itemsize, 1)
        device = _cuda_source(data, buf["dtype"], nbytes)
        if device is not None:
            self.drv.memcpy_dtod_async(buf["mem"], device[1], nbytes, self.stream)
            self.stream.synchronize()
            return
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

    def release_graph(self, replay: Callable[[], None]) -> None:
        pass

    def event(self) -> _PycudaEvent:
        return _PycudaEvent(self.drv, self.stream)

    def mem_get_info(self) -> tuple[int, int]:
        free, total = self.drv.mem_get_info()
        return int(free), int(total)


def _memory(buffers: str) -> Any:
    """The backend object of a chosen (not `auto`) buffer backend name."""
    return {"torch": _TorchMem, "cuda-python": _CudaPythonMem, "pycuda": _PycudaMem}[buffers]()


def _mismatch(plan: Path, trt: Any, device: dict[str, str]) -> str:
    """What differs between the plan's sidecar and this machine (why deserialisation failed)."""
    from ..artifact import EngineArtifact

    art = EngineArtifact.read_or_none(plan)
    if art is None:
        return "built elsewhere?"
    diffs = [f"{label} {art.built_with(k)!r} != {here!r}" for label, k, here in
             (("TensorRT", "trt_version", str(trt.__version__)), ("GPU", "gpu_name", device.get("name")),
              ("SM", "gpu_sm", device.get("sm"))) if art.built_with(k) not in (None, here)]
    return "built with " + ", ".join(diffs) if diffs else "corrupt or built elsewhere?"


def _user_managed_context(engine: Any, trt: Any) -> Any:
    """A context without its own device memory: USER_MANAGED strategy (10.x, 11), else the 8.6 call (gone in 11)."""
    strategy = getattr(getattr(trt, "ExecutionContextAllocationStrategy", None), "USER_MANAGED", None)
    if strategy is not None:
        return engine.create_execution_context(strategy)
    make = getattr(engine, "create_execution_context_without_device_memory", None)
    return make() if make is not None else None


def _give_memory(context: Any, ptr: int, size: int) -> None:
    if hasattr(context, "set_device_memory"):  # 10.1+ (the only setter in 11)
        context.set_device_memory(ptr, size)
    else:  # 8.6 - 10.0: property setter
        setattr(context, "device_memory", ptr)  # noqa: B010  (a write-only pybind property)


class ContextPool:
    """Execution contexts per batch size, by the rules of the TensorRT version (tested on CPU).

    * >= 10: every new context is assigned optimisation profile 0: one context per batch size.
    * < 10 (8.5, 8.6, 9.x): a new context gets profile 0 only if no other context holds it. Each further
      context calls `set_optimization_profile_async(0, stream)`, which succeeds where the plan was built with
      the preview feature `PROFILE_SHARING_0806` (8.6, 9.x; the builder sets it). Where it is refused
      (8.5, or a plan built without it), one context serves every batch size, re-bound when the batch
      changes (`ensure_bound` says so, and the caller re-captures that batch's CUDA graph).
    Every TensorRT call that reports failure is checked and named (tensor, batch size).
    """

    def __init__(self, first: Any, make: Callable[[], Any], *, major: int, stream: int,
                 sync: Callable[[], None] = lambda: None) -> None:
        self.first = first  # the context created at load time: it holds profile 0
        self.make: Callable[[], Any] | None = make  # a further context (it may return None)
        self.major, self.stream, self.sync = major, stream, sync
        self.shared = False  # fallback: `first` serves every batch size, re-bound per batch
        self.contexts: dict[int, Any] = {}
        self.addresses: dict[int, dict[str, int]] = {}
        self.first_bound: int | None = None  # the batch size `first` is bound to

    def _further(self) -> Any:
        """A further context holding profile 0, or None (then every later batch shares `first`)."""
        if self.shared or self.make is None:
            return None
        ctx = self.make()
        if ctx is not None and self.major < 10:
            try:
                ok = bool(ctx.set_optimization_profile_async(0, self.stream))
            except Exception:  # refused by an older binding: the fallback is the same
                ok = False
            self.sync()
            if not ok:
                ctx = None
        if ctx is None:
            self.shared = True
            return None
        return ctx

    def context(self, batch: int) -> Any:
        """The context of a new batch size, its input shape set (checked)."""
        if batch in self.contexts:
            return self.contexts[batch]
        further = self._further() if self.contexts else None  # the first batch size takes `first`
        ctx = further if further is not None else self.first
        set_shape(ctx, batch)
        self.contexts[batch] = ctx
        if ctx is self.first:
            self.first_bound = None  # addresses follow in bind_addresses
        return ctx

    def bind_addresses(self, batch: int, addresses: dict[str, int]) -> None:
        """Bind (and remember) one batch size's tensor addresses on its context (checked)."""
        ctx = self.contexts[batch]
        self.addresses[batch] = dict(addresses)
        set_addresses(ctx, batch, addresses)
        if ctx is self.first:
            self.first_bound = batch

    def ensure_bound(self, batch: int) -> bool:
        """Shared fallback: re-bind `first` to `batch` if it is bound to another one. True when it re-bound
        (the caller's CUDA graphs of `first` are then stale)."""
        if self.contexts.get(batch) is not self.first or self.first_bound == batch:
            return False
        set_shape(self.first, batch)
        set_addresses(self.first, batch, self.addresses[batch])
        self.first_bound = batch
        return True

    def uses_first(self, batch: int) -> bool:
        return self.contexts.get(batch) is self.first

    def profiling_context(self, batch: int) -> tuple[Any, bool]:
        """A context for an IProfiler run of a prepared batch: a further one bound like the batch's, or
        (fallback) `first` re-bound to it. (context, True when it is `first`)."""
        ctx = self._further()
        if ctx is None:
            self.ensure_bound(batch)
            return self.first, True
        set_shape(ctx, batch)
        set_addresses(ctx, batch, self.addresses[batch])
        return ctx, False

    def clear(self) -> None:
        self.contexts.clear()
        self.addresses.clear()
        self.first = self.make = None


def set_shape(ctx: Any, batch: int) -> None:
    """`set_input_shape` of the image tensor, checked (it returns False outside the profile, or on a context
    that holds no optimisation profile)."""
    shape = (batch, *IMAGE)
    if not ctx.set_input_shape("image", shape):
        raise RuntimeError(f"TensorRT set_input_shape('image', {shape}) failed for batch {batch}: outside the "
                           "engine profile, or the execution context holds no optimisation profile (TensorRT log)")


def set_addresses(ctx: Any, batch: int, addresses: dict[str, int]) -> None:
    for name, ptr in addresses.items():
        if not ctx.set_tensor_address(name, ptr):
            raise RuntimeError(f"TensorRT set_tensor_address({name!r}) failed for batch {batch} (TensorRT log)")


def execute(ctx: Any, stream: int, batch: int, what: str = "") -> None:
    """`execute_async_v3`, checked."""
    if not ctx.execute_async_v3(stream):
        raise RuntimeError(f"TensorRT execute_async_v3 failed for batch {batch}{what} (see the TensorRT log)")


class TrtEngine:
    """A deserialised plan with one execution context per batch size, ready for `infer(images)`.

    `prepare(batch)` allocates I/O for one batch size, gives it its own context (`ContextPool`: the
    TensorRT version decides how; before 10 without profile sharing one context is re-bound per batch),
    binds its shape and addresses once and captures its CUDA graph (trtexec and other wrappers capture one
    graph per context). All contexts share one device-memory block (they never run concurrently: one stream), so
    small boards do not pay activation memory per context. `enqueue(batch)` launches on `self.stream`
    without syncing (for timing loops); `infer(images)` does copy-in, launch, sync, copy-out.
    """

    def __init__(self, plan_path: str | os.PathLike[str], *, cuda_graphs: bool = True, buffers: str = "auto") -> None:
        require_tensorrt()
        import tensorrt as trt  # the real module from here on (also what mypy checks against the stubs)

        from .build import engine_device_memory_bytes

        self.trt = trt
        self.path = Path(plan_path)
        if not self.path.is_file():
            raise UsageError(f"engine {self.path}: no such file (build one with `simplehand-deploy build`)")
        backend = choose_buffers(buffers, available_buffers() if buffers == "auto" else {})
        device = require_cuda_device(backend)
        self.mem = _memory(backend)
        self.stream = self.mem.stream
        self.cuda_graphs = cuda_graphs
        self._graphs: dict[int, Callable[[], None]] = {}
        self._buffers: dict[int, dict[str, Any]] = {}
        self._shared: Any = None
        free_before, _ = self.mem.mem_get_info()
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise UsageError(f"engine {self.path}: TensorRT {trt.__version__} on {device['name']} cannot load it "
                             f"({_mismatch(self.path, trt, device)}); rebuild it here with "
                             "`simplehand-deploy build --onnx <its ONNX> --precision <p> --force`")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if self.inputs != ["image"] or any(o not in names for o in OUTPUTS):
            raise UsageError(f"engine {self.path}: I/O {names} is not SimpleHand's (image -> uv, vertices)")
        lo, _, hi = self.engine.get_tensor_profile_shape("image", 0)
        self.min_batch, self.max_batch = int(lo[0]), int(hi[0])
        size = engine_device_memory_bytes(self.engine)
        self.device_memory_bytes = size
        self._shared_size = int(size or 0)
        probe = _user_managed_context(self.engine, trt) if size is not None else None
        if probe is not None and self._shared_size > 0:
            self._shared = self.mem.empty((self._shared_size,), np.uint8)
            _give_memory(probe, self.mem.ptr(self._shared), self._shared_size)
        first = probe if probe is not None else self.engine.create_execution_context()
        from .build import trt_major

        self.contexts = ContextPool(first, self._new_context, major=trt_major(trt), stream=self.mem.handle,
                                    sync=self.mem.synchronize)
        free_after, _ = self.mem.mem_get_info()
        self.device_memory_delta_mb = (free_before - free_after) / 2**20

    @property
    def buffers(self) -> str:
        return str(self.mem.name)

    @property
    def engine_device_memory_mb(self) -> float | None:
        return None if self.device_memory_bytes is None else self.device_memory_bytes / 2**20

    def _new_context(self) -> Any:
        """A further execution context sharing the one device-memory block (ContextPool decides when)."""
        if self._shared is not None:
            ctx = _user_managed_context(self.engine, self.trt)
            if ctx is not None:
                _give_memory(ctx, self.mem.ptr(self._shared), self._shared_size)
                return ctx
        return self.engine.create_execution_context()

    def prepare(self, batch: int) -> dict[str, Any]:
        """Allocate I/O for one batch size, give it its own context with shape and addresses bound once,
        and capture its CUDA graph when enabled."""
        if not self.min_batch <= batch <= self.max_batch:
            raise UsageError(f"batch {batch} is outside the engine profile [{self.min_batch}, {self.max_batch}]; "
                             "rebuild with a wider `--profile MIN,OPT,MAX`")
        if batch in self._buffers:
            self._rebind(batch)
            return self._buffers[batch]
        ctx = self.contexts.context(batch)
        dtype = self._dtype("image")
        bufs = {"image": self.mem.empty((batch, *IMAGE), dtype)}
        for name in OUTPUTS:
            dims = ctx.get_tensor_shape(name)
            shape = tuple(int(dims[i]) for i in range(len(dims)))
            bufs[name] = self.mem.empty(shape, self._dtype(name))
        self._buffers[batch] = bufs
        if self.contexts.uses_first(batch):
            self._drop_graphs(first_only=True)  # (shared fallback) the one context moves to this batch
        self.contexts.bind_addresses(batch, {name: self.mem.ptr(buf) for name, buf in bufs.items()})
        if self.cuda_graphs:
            self._capture(batch)
        return bufs

    def _dtype(self, tensor: str) -> Any:
        return _np_dtype(self.trt, self.engine.get_tensor_dtype(tensor), tensor)

    def _rebind(self, batch: int) -> None:
        """Shared-context fallback (TensorRT < 10 without profile sharing): bind the one context to `batch`
        and re-capture its graph; a no-op when every batch size has its own context."""
        if self.contexts.ensure_bound(batch):
            self._drop_graphs(first_only=True)
            if self.cuda_graphs:
                self._capture(batch)

    def _drop_graphs(self, *, first_only: bool = False) -> None:
        for b in list(self._graphs):
            if not first_only or self.contexts.uses_first(b):
                self.mem.release_graph(self._graphs.pop(b))

    def _launch(self, batch: int) -> None:
        execute(self.contexts.contexts[batch], self.mem.handle, batch)

    def _capture(self, batch: int) -> None:
        self._launch(batch)  # lazy initialisation outside the capture
        self.mem.synchronize()
        replay = self.mem.capture(lambda: self._launch(batch))
        if replay is not None:
            self._graphs[batch] = replay

    def enqueue(self, batch: int) -> None:
        """Launch one inference on `self.stream` for already-prepared buffers (no sync; no rebinding unless one
        context serves every batch size)."""
        self._rebind(batch)
        replay = self._graphs.get(batch)
        if replay is not None:
            replay()
        else:
            self._launch(batch)

    def event(self) -> Any:
        """A timing event of this engine's buffer backend, recorded on `self.stream`."""
        return self.mem.event()

    def fill_random(self, batch: int, seed: int = 0) -> None:
        """Stage a BGR 0..255 input for timing, through the backend (works for dict buffers too)."""
        data = np.random.default_rng(seed).uniform(0, 255, (batch, *IMAGE)).astype(np.float32)
        self.mem.upload(self.prepare(batch)["image"], data)

    def infer(self, images: Any) -> dict[str, np.ndarray]:
        """(B,3,224,224) BGR 0..255 images (numpy or torch) -> {"uv": (B,21,2), "vertices": (B,778,3)} float32."""
        batch = int(images.shape[0])
        if tuple(images.shape[1:]) != IMAGE:
            raise UsageError(f"images: shape {tuple(images.shape)}; expected (B, 3, 224, 224)")
        bufs = self.prepare(batch)
        self.mem.upload(bufs["image"], images)
        self.enqueue(batch)
        self.mem.synchronize()
        return {k: self.mem.download(bufs[k]) for k in OUTPUTS}

    def close(self) -> None:
        """Free graphs, contexts, I/O buffers and the shared device memory, in that order."""
        with contextlib.suppress(Exception):
            self.mem.synchronize()
        self._drop_graphs()
        self.contexts.clear()
        for bufs in self._buffers.values():
            for buf in bufs.values():
                self.mem.free(buf)
        self._buffers.clear()
        if self._shared is not None:
            self.mem.free(self._shared)
            self._shared = None

    def layer_times(self, batch: int, runs: int = 10) -> dict[str, float]:
        """Per-layer mean milliseconds from an IProfiler run on its own context, never during a timed run."""
        trt = self.trt

        class _Profiler(trt.IProfiler):  # type: ignore[misc, name-defined]
            def __init__(self) -> None:
                trt.IProfiler.__init__(self)
                self.times: dict[str, float] = {}

            def report_layer_time(self, layer_name: str, ms: float) -> None:
                self.times[layer_name] = self.times.get(layer_name, 0.0) + ms

        self.prepare(batch)
        prof = _Profiler()
        ctx, shared = self.contexts.profiling_context(batch)  # the version's context plan, as for batches
        ctx.profiler = prof
        try:
            for _ in range(runs):
                execute(ctx, self.mem.handle, batch, " (IProfiler run)")
                self.mem.synchronize()
        finally:
            if shared:  # the one context goes back to timing: no profiler on it
                with contextlib.suppress(Exception):
                    ctx.profiler = None
        return {k: v / runs for k, v in prof.times.items()}
