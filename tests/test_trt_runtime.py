"""trt/runtime.py's decisions on CPU: the per-version execution-context plan (which TensorRT calls, in which
order, and the fallback to one re-bound context), checked return values, graph re-capture and release,
dtype mapping, CUDA-tensor uploads and the buffer-backend choice. No TensorRT is imported or imitated as a
module: the contexts below are plain recorders of the calls our code makes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from simplehand_deploy.errors import UsageError
from simplehand_deploy.trt.runtime import (
    IMAGE,
    ContextPool,
    TrtEngine,
    _np_dtype,
    choose_buffers,
    execute,
)


class Ctx:
    """Records every call; `refuse` names calls that report failure (return False)."""

    def __init__(self, name: str, log: list[tuple[Any, ...]], refuse: set[str] | None = None) -> None:
        self.name, self.log, self.refuse = name, log, refuse or set()
        self.profiler: Any = None

    def _call(self, what: str, *args: Any) -> bool:
        self.log.append((self.name, what, *args))
        return what not in self.refuse

    def set_optimization_profile_async(self, index: int, stream: int) -> bool:
        return self._call("profile", index, stream)

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        return self._call("shape", name, shape[0])

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        return self._call("address", name, ptr)

    def execute_async_v3(self, stream: int) -> bool:
        return self._call("execute", stream)

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return (1, 21, 2) if name == "uv" else (1, 778, 3)


def _pool(major: int, refuse_further: set[str] | None = None) -> tuple[ContextPool, list[tuple[Any, ...]]]:
    log: list[tuple[Any, ...]] = []
    made = iter(range(1, 100))
    pool = ContextPool(Ctx("c0", log), lambda: Ctx(f"c{next(made)}", log, refuse_further), major=major, stream=7)
    return pool, log


def _prepare(pool: ContextPool, batch: int) -> None:
    pool.context(batch)
    pool.bind_addresses(batch, {"image": batch * 10})


@pytest.mark.parametrize("major", [10, 11])
def test_tensorrt_10_gives_every_batch_its_own_context_without_profile_calls(major: int) -> None:
    pool, log = _pool(major)
    for batch in (1, 8):
        _prepare(pool, batch)
    assert log == [("c0", "shape", "image", 1), ("c0", "address", "image", 10),
                   ("c1", "shape", "image", 8), ("c1", "address", "image", 80)]
    assert not pool.shared and not pool.ensure_bound(1) and not pool.ensure_bound(8)


@pytest.mark.parametrize("major", [8, 9])
def test_before_10_a_further_context_selects_profile_0_first(major: int) -> None:
    """8.6 / 9.x with PROFILE_SHARING_0806 in the plan: profile 0 on the new context, then its shape."""
    pool, log = _pool(major)
    for batch in (1, 8):
        _prepare(pool, batch)
    assert log == [("c0", "shape", "image", 1), ("c0", "address", "image", 10),
                   ("c1", "profile", 0, 7), ("c1", "shape", "image", 8), ("c1", "address", "image", 80)]
    assert not pool.shared


def test_refused_profile_falls_back_to_one_context_rebound_per_batch() -> None:
    """8.5, or a plan without profile sharing: the further context is dropped and c0 serves every batch,
    re-bound (shape and addresses) whenever the batch changes, and only then."""
    pool, log = _pool(8, refuse_further={"profile"})
    _prepare(pool, 1)
    _prepare(pool, 8)
    assert pool.shared and pool.contexts == {1: pool.first, 8: pool.first}
    assert log[2:] == [("c1", "profile", 0, 7), ("c0", "shape", "image", 8), ("c0", "address", "image", 80)]
    del log[:]
    assert pool.ensure_bound(1) and log == [("c0", "shape", "image", 1), ("c0", "address", "image", 10)]
    assert not pool.ensure_bound(1) and len(log) == 2  # already bound: no call
    assert pool.ensure_bound(8)
    _prepare(pool, 4)  # later batch sizes go straight to the shared context
    assert ("c2", "profile", 0, 7) not in log and pool.contexts[4] is pool.first


def test_profiling_context_follows_the_same_plan() -> None:
    pool, log = _pool(8)
    _prepare(pool, 8)
    ctx, shared = pool.profiling_context(8)
    assert not shared and log[2:] == [("c1", "profile", 0, 7), ("c1", "shape", "image", 8),
                                      ("c1", "address", "image", 80)]
    refused, log2 = _pool(8, refuse_further={"profile"})
    _prepare(refused, 1)
    _prepare(refused, 8)
    ctx, shared = refused.profiling_context(1)
    assert shared and ctx is refused.first
    assert log2[-2:] == [("c0", "shape", "image", 1), ("c0", "address", "image", 10)]


def test_failing_tensorrt_calls_name_the_tensor_and_batch() -> None:
    log: list[tuple[Any, ...]] = []
    pool = ContextPool(Ctx("c0", log, {"shape"}), lambda: None, major=10, stream=7)
    with pytest.raises(RuntimeError, match=r"set_input_shape\('image', \(64, 3, 224, 224\)\) failed for batch 64"):
        pool.context(64)
    pool = ContextPool(Ctx("c0", log, {"address"}), lambda: None, major=10, stream=7)
    pool.context(2)
    with pytest.raises(RuntimeError, match=r"set_tensor_address\('image'\) failed for batch 2"):
        pool.bind_addresses(2, {"image": 1})
    with pytest.raises(RuntimeError, match=r"execute_async_v3 failed for batch 4 \(IProfiler run\)"):
        execute(Ctx("c", log, {"execute"}), 7, 4, " (IProfiler run)")


# --- TrtEngine's own bookkeeping over the pool (no plan is loaded: the engine is assembled by hand) ----------


class Mem:
    """A buffer backend that records captures and releases (graphs are plain tokens)."""

    name = "stand-in"
    handle = 7

    def __init__(self) -> None:
        self.captured: list[int] = []
        self.released: list[int] = []
        self.batch = 0

    def empty(self, shape: tuple[int, ...], dtype: Any) -> dict[str, Any]:
        return {"shape": shape}

    def ptr(self, buf: dict[str, Any]) -> int:
        return int(np.prod(buf["shape"]))

    def free(self, buf: Any) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def capture(self, launch: Any) -> Any:
        launch()

        def replay() -> None:
            pass

        replay.batch = self.batch  # type: ignore[attr-defined]
        self.captured.append(self.batch)
        return replay

    def release_graph(self, replay: Any) -> None:
        self.released.append(replay.batch)


def _engine(major: int, refuse: set[str] | None = None, graphs: bool = True) -> tuple[TrtEngine, Mem, list]:
    log: list[tuple[Any, ...]] = []
    engine = object.__new__(TrtEngine)
    mem = Mem()
    made = iter(range(1, 100))
    engine.mem, engine.cuda_graphs, engine._graphs, engine._buffers = mem, graphs, {}, {}
    engine._shared = None
    engine.min_batch, engine.max_batch = 1, 64
    engine.trt = SimpleNamespace(DataType=SimpleNamespace(FLOAT="f32"))
    engine.engine = SimpleNamespace(get_tensor_dtype=lambda name: "f32")
    engine.contexts = ContextPool(Ctx("c0", log), lambda: Ctx(f"c{next(made)}", log, refuse), major=major,
                                  stream=7)
    real_capture = engine._capture

    def capture(batch: int) -> None:
        mem.batch = batch
        real_capture(batch)

    engine._capture = capture  # type: ignore[method-assign]
    return engine, mem, log


def test_shared_context_recaptures_the_graph_when_the_batch_changes() -> None:
    engine, mem, log = _engine(8, refuse={"profile"})
    engine.prepare(1)
    engine.prepare(8)
    assert mem.captured == [1, 8] and mem.released == [1]  # batch 1's graph went stale when c0 moved to 8
    engine.enqueue(8)
    assert mem.captured == [1, 8]  # bound already: the captured graph replays
    engine.enqueue(1)
    assert mem.captured == [1, 8, 1] and mem.released == [1, 8] and list(engine._graphs) == [1]
    assert [e for e in log if e[1] == "shape"][-1] == ("c0", "shape", "image", 1)
    engine.close()
    assert mem.released == [1, 8, 1]


def test_own_contexts_keep_every_graph() -> None:
    engine, mem, _ = _engine(10)
    for batch in (1, 8, 1, 8):
        engine.prepare(batch)
        engine.enqueue(batch)
    assert mem.captured == [1, 8] and mem.released == [] and sorted(engine._graphs) == [1, 8]
    engine.close()
    assert sorted(mem.released) == [1, 8]  # close releases every graph (cuda-python destroys them)


def test_unknown_tensorrt_dtype_is_an_error_not_float32() -> None:
    trt = SimpleNamespace(DataType=SimpleNamespace(FLOAT=1, HALF=2, INT32=3, INT8=4, BOOL=5))
    assert _np_dtype(trt, 2, "image") == np.float16
    with pytest.raises(UsageError, match=r"engine tensor 'uv' has TensorRT dtype 9"):
        _np_dtype(trt, 9, "uv")


def test_buffer_backend_choice() -> None:
    everything = {"torch": True, "cuda-python": True, "pycuda": True}
    assert choose_buffers("auto", everything) == "torch"
    assert choose_buffers("auto", {**everything, "torch": False}) == "cuda-python"
    assert choose_buffers("auto", {"torch": False, "cuda-python": False, "pycuda": True}) == "pycuda"
    assert choose_buffers("pycuda", {}) == "pycuda"  # asked for: its constructor says how to install it
    with pytest.raises(UsageError, match="no CUDA buffer backend here"):
        choose_buffers("auto", {})
    with pytest.raises(UsageError, match="--buffers 'cupy': choose one of auto, torch, cuda-python, pycuda"):
        choose_buffers("cupy", everything)


def test_cuda_python_upload_takes_host_arrays_and_names_what_it_refuses() -> None:
    from simplehand_deploy.trt.runtime import _cuda_source

    assert _cuda_source(np.zeros((1, *IMAGE), np.float32), np.float32, 4 * 3 * 224 * 224) is None

    class DeviceArray:  # a CUDA array that is not a torch tensor (e.g. CuPy)
        @property
        def __cuda_array_interface__(self) -> dict[str, Any]:
            return {}

    with pytest.raises(UsageError, match="takes numpy arrays or torch CUDA tensors, not DeviceArray"):
        _cuda_source(DeviceArray(), np.float32, 4)
