"""Latency statistics as trtexec defines them, and THE timing loop (the only one in the toolkit).

Statistics (notes/tensorrt.md §4): mean; median (mean of the two middle values for even N);
percentile p = sorted[max(N - 1 - int((1 - p/100) * N), 0)]; coefficient of variation = population
std / mean (a ratio here; trtexec warns above 2.5%). The loop warms up for a time budget, then runs
at least `iterations` AND at least `duration` seconds, and keeps every per-iteration sample (in run
order: `latency_samples_ms`, what the regression gate's statistic reads). GPU runs time each launch
with CUDA events on the runner's stream (GPU compute); CPU runs use perf_counter around a synchronous
call (host).

Importable without polars (benchmarks/gpu_check.py runs on a bare GPU image); torch is imported only
for GPU timing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

COV_WARN = 0.025


def percentile(sorted_ms: np.ndarray, p: float) -> float:
    """trtexec's percentile, evaluated in float32 as trtexec does (so p99 of 100 samples is the max)."""
    n = len(sorted_ms)
    exclude = int((np.float32(1) - np.float32(p) / np.float32(100)) * np.float32(n))
    return float(sorted_ms[max(n - 1 - exclude, 0)])


def stats(times_ms: Any) -> dict[str, float]:
    t = np.sort(np.asarray(times_ms, dtype=np.float64))
    if len(t) == 0:
        raise ValueError("no timings")
    n = len(t)
    median = float(t[n // 2]) if n % 2 else float((t[n // 2 - 1] + t[n // 2]) / 2)
    mean = float(t.mean())
    return {"latency_mean_ms": mean, "latency_p50_ms": median, "latency_p90_ms": percentile(t, 90),
            "latency_p95_ms": percentile(t, 95), "latency_p99_ms": percentile(t, 99),
            "latency_min_ms": float(t[0]), "latency_max_ms": float(t[-1]),
            "latency_cov": float(t.std() / mean) if mean > 0 else 0.0}


def time_host(fn: Callable[[], Any], *, duration: float = 0.0, iterations: int = 10, warmup: float = 0.0,
              warmup_calls: int = 1, sync: Callable[[], Any] | None = None) -> list[float]:
    """Per-call wall times (ms, run order) of a synchronous `fn`: perf_counter around each call.

    Warm-up: at least `warmup_calls` calls and at least `warmup` seconds. Then at least `iterations`
    calls and at least `duration` seconds. `sync` (e.g. a device synchronize) runs inside the timed
    region after each call.
    """
    end = time.perf_counter() + warmup
    done = 0
    while done < warmup_calls or time.perf_counter() < end:
        fn()
        if sync is not None:
            sync()
        done += 1
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < iterations or time.perf_counter() - start < duration:
        t0 = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def median_ms(fn: Callable[[], Any], iterations: int = 5, *, warmup_calls: int = 1) -> float:
    """Median wall time (ms) of `iterations` calls after `warmup_calls` untimed ones (quick CPU figures)."""
    return stats(time_host(fn, iterations=iterations, warmup_calls=warmup_calls))["latency_p50_ms"]


def _time_gpu(runner: Any, batch: int, duration: float, iterations: int) -> list[float]:
    """GPU compute time per launch: CUDA events recorded around each launch on the runner's stream."""
    import torch

    stream = getattr(getattr(runner, "engine", None), "stream", None) or torch.cuda.current_stream()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < iterations or time.perf_counter() - start < duration:
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record(stream)
        runner.launch(batch)
        e1.record(stream)
        e1.synchronize()
        times.append(e0.elapsed_time(e1))
    return times


def measure(runner: Any, batch: int, *, duration: float = 3.0, iterations: int = 10, warmup: float = 0.2) -> dict:
    """Time `runner.launch(batch)` on an open runner.

    Returns the trtexec statistics plus throughput, iterations, duration, `latency_samples_ms` (every
    timed iteration, in run order), `cpu_threads` (the intra-op threads in effect, from the runner) and,
    on GPU, peak memory.
    """
    runner.prepare(batch)
    on_gpu = str(getattr(runner, "device", "cpu")).startswith("cuda")
    end = time.perf_counter() + warmup
    while time.perf_counter() < end:
        runner.launch(batch)
        runner.synchronize()
    if on_gpu:
        import torch

        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    if on_gpu:
        times = _time_gpu(runner, batch, duration, iterations)
    else:
        times = time_host(lambda: runner.launch(batch), duration=duration, iterations=iterations, warmup_calls=0)
    wall = time.perf_counter() - start
    out: dict[str, Any] = stats(times)
    out.update({"iterations": len(times), "duration_s": wall,
                "throughput_exec_s": 1000.0 / out["latency_mean_ms"],
                "throughput_img_s": batch * 1000.0 / out["latency_mean_ms"],
                "latency_samples_ms": [float(t) for t in times],
                "cov_warning": out["latency_cov"] > COV_WARN})
    threads = getattr(runner, "threads", None)
    if callable(threads):
        out["cpu_threads"] = threads()
    if on_gpu:
        import torch

        out["peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def trtexec_command(plan: str, batch: int, trt_version: str, *, cuda_graphs: bool = True) -> str:
    """The equivalent trtexec line for an engine run, given the version's defaults (flipped in TRT 11)."""
    major = int(trt_version.split(".")[0]) if trt_version else 10
    shape = f"--shapes=image:{batch}x3x224x224"
    base = f"trtexec --loadEngine={plan} {shape} --warmUp=200 --duration=3 --iterations=10"
    if major >= 11:  # graphs, spin-wait and no transfers are the defaults
        return base + ("" if cuda_graphs else " --noCudaGraph")
    return base + " --noDataTransfers --useSpinWait" + (" --useCudaGraph" if cuda_graphs else "")
