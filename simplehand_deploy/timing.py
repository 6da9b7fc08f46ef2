"""Latency statistics as trtexec defines them, and THE timing loop (the only one in the toolkit).

Its own layer, directly above the machine probes (`env`) and below everything that times: the benchmark
harness (`bench`), the TensorRT runtime and runner (CUDA events, trtexec's equivalent command line) and the INT8
repair (a candidate's CPU cost).

Statistics (trtexec's definitions): mean; median (mean of the two middle values for even N);
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


class TorchEvent:
    """A torch timing event recorded on `stream` (default: torch's current stream, where eager/compile launch)."""

    def __init__(self, stream: Any = None) -> None:
        import torch

        self.ev = torch.cuda.Event(enable_timing=True)
        self.stream = stream if stream is not None else torch.cuda.current_stream()

    def record(self) -> None:
        self.ev.record(self.stream)

    def synchronize(self) -> None:
        self.ev.synchronize()

    def elapsed_ms(self, end: TorchEvent) -> float:
        return float(self.ev.elapsed_time(end.ev))


def time_gpu(launch: Callable[[], Any], new_event: Callable[[], Any], *, duration: float, iterations: int,
             queued: int = 1) -> tuple[list[float], float]:
    """GPU compute time per inference the way trtexec measures it; returns (ms per inference, window seconds).

    Each inference is bracketed by an event pair recorded on the stream it runs on (`new_event()` gives
    an event of the runner's own backend: torch, cuda-python or pycuda, with record / synchronize /
    elapsed_ms). `queued` inferences stay enqueued ahead of the one the host waits for (trtexec's
    default depth: one), so the GPU never idles between inferences; the host reads no timing until the
    one sync at the end of the window. Throughput is then inferences / window wall time.
    """
    pairs: list[tuple[Any, Any]] = []
    start = time.perf_counter()
    while len(pairs) < iterations or time.perf_counter() - start < duration:
        e0, e1 = new_event(), new_event()
        e0.record()
        launch()
        e1.record()
        pairs.append((e0, e1))
        if len(pairs) > queued:
            pairs[-1 - queued][1].synchronize()  # bound the queue: wait for the inference `queued` back
    pairs[-1][1].synchronize()  # the window's one final sync
    wall = time.perf_counter() - start
    return [a.elapsed_ms(b) for a, b in pairs], wall


def measure(runner: Any, batch: int, *, duration: float = 3.0, iterations: int = 10, warmup: float = 0.2) -> dict:
    """Time `runner.launch(batch)` on an open runner.

    Returns the trtexec statistics plus throughput, iterations, duration, `latency_samples_ms` (every
    timed iteration, in run order), `cpu_threads` (the intra-op threads in effect, from the runner),
    `cpu_other_pct` (the share of the machine's CPUs other processes used meanwhile: `env.OtherLoad`) and,
    on GPU, peak memory.
    """
    from .env import OtherLoad

    runner.prepare(batch)
    on_gpu = str(getattr(runner, "device", "cpu")).startswith("cuda")
    torch_memory = on_gpu and getattr(runner, "torch_allocator", True)  # TensorRT allocates outside torch
    end = time.perf_counter() + warmup
    while time.perf_counter() < end:
        runner.launch(batch)
        runner.synchronize()
    if torch_memory:
        import torch

        torch.cuda.reset_peak_memory_stats()
    others = OtherLoad()
    start = time.perf_counter()
    if on_gpu:
        new_event = getattr(runner, "event", None)
        times, wall = time_gpu(lambda: runner.launch(batch), new_event if callable(new_event) else TorchEvent,
                               duration=duration, iterations=iterations)
        per_s = len(times) / wall  # trtexec: inferences / wall time of the window
    else:
        times = time_host(lambda: runner.launch(batch), duration=duration, iterations=iterations, warmup_calls=0)
        wall = time.perf_counter() - start
        per_s = 1000.0 / stats(times)["latency_mean_ms"]
    out: dict[str, Any] = stats(times)
    out.update({"cpu_other_pct": others.percent(),
                "iterations": len(times), "duration_s": wall,
                "throughput_exec_s": per_s,
                "throughput_img_s": batch * per_s,
                "latency_samples_ms": [float(t) for t in times],
                "cov_warning": out["latency_cov"] > COV_WARN})
    threads = getattr(runner, "threads", None)
    if callable(threads):
        out["cpu_threads"] = threads()
    if torch_memory:
        import torch

        out["peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    command = getattr(runner, "trtexec_command", None)
    if callable(command):
        out["trtexec_command"] = command(batch, duration=duration, iterations=iterations, warmup=warmup)
    return out


def trtexec_command(plan: str, batch: int, trt_version: str, *, cuda_graphs: bool = True, duration: float = 3.0,
                    iterations: int = 10, warmup: float = 0.2) -> str:
    """The equivalent trtexec line for an engine run, given the version's defaults (flipped in TRT 11).

    Both time GPU compute per inference with one inference queued ahead (trtexec's default depth)."""
    major = int(trt_version.split(".")[0]) if trt_version else 10
    shape = f"--shapes=image:{batch}x3x224x224"
    base = (f"trtexec --loadEngine={plan} {shape} --warmUp={round(warmup * 1000)} --duration={duration:g} "
            f"--iterations={iterations}")
    if major >= 11:  # graphs, spin-wait and no transfers are the defaults
        return base + ("" if cuda_graphs else " --noCudaGraph")
    return base + " --noDataTransfers --useSpinWait" + (" --useCudaGraph" if cuda_graphs else "")
