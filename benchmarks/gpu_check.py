"""One GPU check for any NVIDIA machine: how fast is SimpleHand here, per backend, precision and batch size?

    PYTHONPATH=. python3 benchmarks/gpu_check.py --out "$OUT"     # the whole check, within --budget-s (540 s)

Options: --config fastvit_ma36 --checkpoint W --batches 1,8,32,64 --duration 2 --deadline-s 420 --budget-s 540
--sections eager,graphs,ort,trt,compile. Sections, each degrading on its own (a missing optional dependency or a
failure becomes a `skipped: ...` / `error: ...` row with the reason, never a crash): torch CUDA eager FP32/FP16,
the same under CUDA graphs, ONNX Runtime's CUDA provider if installed, TensorRT if installed (through our builder and
runtime, engines cached by content key in --engines-dir; the INT8 artifact this TensorRT version takes), and
last torch.compile (inductor, FP16) at the first batch size only (its compile time is the unknown).
A section that would start after --deadline-s becomes a skipped row, and the compile is abandoned (a skipped
row, exit 0) if it is still compiling at --budget-s, so one run fits a 10-minute slot.
GPU timings are CUDA events around each launch on its stream (GPU compute, no H2D/D2H); ONNX Runtime is
timed on the host around `run` and includes copies. Each row also carries the vertex drift (mm) against
torch FP32 eager on the same random batch.

Rows use the harness's results schema (`runner, precision, batch_size, status, latency_p50_ms,
throughput_img_s, ...`, bench/results.py) and are written to <out>/<run-id>-gpu-check/ after every
section (a run killed at a time limit keeps the finished sections): results.{parquet,csv,json,md} through
the harness's writer where polars is installed, results.{csv,json,md} with the same column names where it
is not, plus env.json. Without a CUDA device it prints one line and exits 2 (nothing was measured).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SECTIONS = ("eager", "graphs", "ort", "trt", "compile")  # run in this order: the unbounded compile last
RUNNER = {"eager": "torch", "graphs": "torch", "ort": "onnxruntime", "trt": "tensorrt", "compile": "torch_compile"}
DEFAULT_DEADLINE_S = 420.0  # no section starts later than this (seconds from the start)
DEFAULT_BUDGET_S = 540.0  # the whole run: a compile still running then is abandoned (a 10-minute slot)
SHOWN = ("runner", "precision", "batch_size", "cuda_graphs", "status", "latency_p50_ms", "latency_p99_ms",
         "throughput_img_s", "vertex_drift_mean_mm", "precision_mix", "note")


def _stats(times_ms: list[float]) -> dict[str, float]:
    """trtexec's definitions: the harness's `stats` (simplehand_deploy/timing.py is importable without polars)."""
    from simplehand_deploy.timing import stats

    return stats(times_ms)


def time_gpu(launch: Callable[[], Any], stream: Any, *, duration: float, iterations: int = 20,
             warmup: float = 0.3, new_event: Callable[[], Any] | None = None) -> dict[str, float]:
    """The harness's GPU timing (timing.time_gpu: event pair per inference on `stream`, one inference
    queued ahead, one sync per window, throughput = inferences / window wall time), after a warm-up.

    `launch` must put its work on `stream` (torch graph replays run inside `torch.cuda.stream(stream)`)."""
    from simplehand_deploy.timing import TorchEvent
    from simplehand_deploy.timing import time_gpu as shared

    end = time.perf_counter() + warmup
    while time.perf_counter() < end:
        launch()
    stream.synchronize()
    times, wall = shared(launch, new_event or (lambda: TorchEvent(stream)), duration=duration,
                         iterations=iterations)
    return {**_stats(times), "throughput_exec_s": len(times) / wall, "iterations": len(times), "duration_s": wall}


def time_host(call: Callable[[], Any], *, duration: float, iterations: int = 20, warmup: float = 0.3) -> dict:
    """The harness's host timing (timing.time_host): perf_counter around each synchronous call."""
    from simplehand_deploy.timing import time_host as shared

    start = time.perf_counter()
    times = shared(call, duration=duration, iterations=iterations, warmup=warmup)
    out = _stats(times)
    return {**out, "throughput_exec_s": 1000.0 / out["latency_mean_ms"], "iterations": len(times),
            "duration_s": time.perf_counter() - start}


def drift_mm(vertices: Any, ref: np.ndarray) -> float:
    """Mean vertex drift (mm) vs the eager reference: the shared accuracy code (numpy only, no polars)."""
    from simplehand_deploy.drift import drift_row

    v = np.asarray(vertices.float().cpu().numpy() if hasattr(vertices, "float") else vertices, dtype=np.float32)
    return float(drift_row({"vertices": ref}, {"vertices": v})["vertex_drift_mean_mm"] or 0.0)


def int8_target(trt_version: str) -> str:
    """The INT8 artifact this TensorRT builds from, as the pipeline picks it (`pipeline.int8_targets`):
    trt10 (`...-int8-trt10.onnx`) on >= 10, trt8 below."""
    from simplehand_deploy.pipeline import int8_targets

    return int8_targets(trt_version)[0]


class Rows:
    """Collects rows in the harness's schema; every section runs through `section`, which turns exceptions
    into rows. Holds no model: the GPU work lives in `Check`."""

    def __init__(self, args: argparse.Namespace, common: dict[str, Any] | None = None) -> None:
        self.args = args
        self.rows: list[dict[str, Any]] = []
        self.common: dict[str, Any] = dict(common or {})  # config, weights and the env columns, on every row

    def sections(self) -> dict[str, Callable[[], None]]:
        """Section name -> the function that runs it (the GPU sections are `Check`'s)."""
        return {}

    def add(self, runner: str, precision: str, batch: int | None, status: str, note: str = "", *,
            timing: dict[str, float] | None = None, drift: float | None = None, cuda_graphs: bool | None = None,
            scope: str = "gpu_compute", **extra: Any) -> None:
        """One row: `status` is `ok`, `skipped: <why>` or `error: <what>` as in the harness."""
        row: dict[str, Any] = {"runner": runner, "precision": precision, "batch_size": batch,
                               "measurement": "latency", "status": status, "cuda_graphs": cuda_graphs,
                               "timing_scope": scope if timing else None, "vertex_drift_mean_mm": drift,
                               **extra, "note": note}
        if timing:
            row.update(timing)
            row["throughput_img_s"] = batch * timing["throughput_exec_s"] if batch else None
        self.rows.append({**row, **self.common})
        if not self.args.quiet:
            lat = f"{row['latency_p50_ms']:.3f} ms p50" if timing else status
            graphs = "graphs" if cuda_graphs else ""
            print(f"  {runner:14s} {graphs:6s} {precision:5s} b={batch!s:3s} {lat} {note}", flush=True)

    def section(self, name: str, fn: Callable[[], None]) -> None:
        if name not in self.args.sections:
            return
        if not self.args.quiet:
            print(f"[{name}]", flush=True)
        try:
            fn()
        except SkipSection as exc:
            self.add(RUNNER[name], "", None, f"skipped: {exc}", cuda_graphs=name == "graphs" or None)
        except Exception as exc:
            self.add(RUNNER[name], "", None, f"error: {type(exc).__name__}: {str(exc)[:300]}",
                     cuda_graphs=name == "graphs" or None)
            if self.args.verbose:
                traceback.print_exc()


class Check(Rows):
    """The GPU sections over one model and one random batch per batch size."""

    def __init__(self, args: argparse.Namespace) -> None:
        import torch

        from simplehand_deploy.checkpoint import load_checkpoint

        super().__init__(args)
        self.model, self.info = load_checkpoint(args.checkpoint, args.config, fused=True)
        self.model = self.model.cuda().eval()
        g = torch.Generator().manual_seed(0)
        self.images = {b: torch.randn((b, 3, 224, 224), generator=g).cuda() for b in args.batches}
        with torch.inference_mode():
            self.ref = {b: self.model(x)[1].float().cpu().numpy() for b, x in self.images.items()}
        self.common = {"config": self.info.config, "weights": self.info.short}

    def sections(self) -> dict[str, Callable[[], None]]:
        return {"eager": self.eager, "graphs": lambda: self.eager(graphs=True), "ort": self.ort, "trt": self.trt,
                "compile": self.compiled}

    # --- sections ------------------------------------------------------------------------------------------
    def eager(self, graphs: bool = False) -> None:
        import copy

        import torch

        for precision, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
            model = self.model if dtype == torch.float32 else copy.deepcopy(self.model).half()
            for b, x in self.images.items():
                xb = x.to(dtype)
                try:
                    if graphs:
                        timing, out = self._graph_timing(model, xb)
                    else:
                        stream = torch.cuda.current_stream()
                        with torch.inference_mode():
                            out = model(xb)[1]
                            timing = time_gpu(lambda m=model, xb=xb: m(xb), stream, duration=self.args.duration)
                    self.add("torch", precision, b, "ok", timing=timing, drift=drift_mm(out, self.ref[b]),
                             cuda_graphs=graphs)
                except torch.cuda.OutOfMemoryError as exc:
                    torch.cuda.empty_cache()
                    self.add("torch", precision, b, f"error: out of memory: {str(exc)[:120]}", cuda_graphs=graphs)

    def _graph_timing(self, model: Any, x: Any) -> tuple[dict[str, float], Any]:
        import torch

        stream = torch.cuda.Stream()
        static_in = x.clone()
        with torch.inference_mode():
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):  # warm-up on the side stream before capture (cuDNN autotuning, allocator)
                    model(static_in)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=stream):
                static_out = model(static_in)

        def replay() -> None:  # CUDAGraph.replay() launches on the *current* stream: make it `stream`
            with torch.cuda.stream(stream):
                graph.replay()

        replay()
        stream.synchronize()
        return time_gpu(replay, stream, duration=self.args.duration), static_out[1]

    def compiled(self) -> None:
        """torch.compile (inductor, FP16) at the first batch size only: compiling fastvit_ma36 takes minutes."""
        import copy

        import torch

        model = copy.deepcopy(self.model).half()
        try:
            compiled = torch.compile(model, dynamic=False)
        except Exception as exc:
            raise SkipSection(f"torch.compile unavailable: {type(exc).__name__}: {exc}") from None
        stream = torch.cuda.current_stream()
        b, x = next(iter(self.images.items()))
        xb = x.half()
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = compiled(xb)[1]
            torch.cuda.synchronize()
            compile_s = time.perf_counter() - t0
            timing = time_gpu(lambda xb=xb: compiled(xb), stream, duration=self.args.duration)
        self.add("torch_compile", "fp16", b, "ok", f"inductor; first call {compile_s:.0f} s", timing=timing,
                 drift=drift_mm(out, self.ref[b]), cuda_graphs=False)

    def _onnx(self, precision: str, target: str | None = None) -> Path | None:
        from simplehand_deploy.export import artifact_name

        path = Path(self.args.engines_dir) / artifact_name(self.info.config, self.info.short, precision,
                                                           target)
        return path if path.is_file() else None

    def ensure_fp32_onnx(self) -> Path:
        path = self._onnx("fp32")
        if path is not None:
            return path
        from simplehand_deploy.checkpoint import load_checkpoint
        from simplehand_deploy.export import artifact_name, export_onnx

        cpu_model, info = load_checkpoint(self.args.checkpoint, self.args.config)
        out = Path(self.args.engines_dir) / artifact_name(info.config, info.short, "fp32")
        out.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(cpu_model, out, info=info, progress=not self.args.quiet)
        return out

    def ort(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise SkipSection("onnxruntime is not installed") from None
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise SkipSection(f"onnxruntime {ort.__version__} has no CUDAExecutionProvider "
                              "(install onnxruntime-gpu matching your CUDA)")
        for precision in ("fp32", "fp16"):
            path = self.ensure_fp32_onnx() if precision == "fp32" else self._onnx(precision)
            if path is None:
                self.add("onnxruntime", precision, None,
                         f"skipped: no {precision} ONNX in {self.args.engines_dir} (run `make engine`)")
                continue
            sess = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
            if sess.get_providers()[0] != "CUDAExecutionProvider":
                raise SkipSection(f"CUDAExecutionProvider did not load (got {sess.get_providers()})")
            in_type = np.float16 if "float16" in sess.get_inputs()[0].type else np.float32
            for b, x in self.images.items():
                feed = {"image": x.cpu().numpy().astype(in_type)}
                out = sess.run(["vertices"], feed)[0]
                timing = time_host(lambda s=sess, f=feed: s.run(None, f), duration=self.args.duration)
                self.add("onnxruntime", precision, b, "ok", "host time, includes copies", timing=timing,
                         drift=drift_mm(out, self.ref[b]), scope="host", artifact=str(path))

    def trt(self) -> None:
        from simplehand_deploy._deps import tensorrt_or_none

        trt = tensorrt_or_none()
        if trt is None:
            raise SkipSection("TensorRT is not installed (pip install 'simplehand-deploy[trt]'; Jetson: apt)")
        from simplehand_deploy.trt.build import build_engine, trt_major
        from simplehand_deploy.trt.runtime import TrtEngine

        version = str(trt.__version__)
        fp32 = self.ensure_fp32_onnx()
        hi = max(max(self.args.batches), 8)
        target = int8_target(version)
        sources = {"fp32": fp32, "fp16": fp32 if trt_major(trt) < 10 else self._onnx("fp16"),
                   "int8": self._onnx("int8", target)}
        for precision, src in sources.items():
            if src is None:
                want = f"int8-{target}" if precision == "int8" else precision
                self.add("tensorrt", precision, None,
                         f"skipped: no {want} ONNX in {self.args.engines_dir} (run `make engine` first)")
                continue
            try:
                art = build_engine(src, precision=precision, profile=(1, min(8, hi), hi),
                                   out_dir=self.args.engines_dir)
            except Exception as exc:
                self.add("tensorrt", precision, None, f"error: build: {type(exc).__name__}: {exc}"[:300])
                continue
            recorded = {"precision_mix": art.precision_mix, "precision_verified": art.precision_verified,
                        "artifact": str(art.plan)}
            for graphs in (True, False):
                engine = TrtEngine(art.plan, cuda_graphs=graphs, buffers="torch")
                try:
                    for b, x in self.images.items():
                        out = engine.infer(x)["vertices"]
                        engine.prepare(b)
                        timing = time_gpu(lambda e=engine, b=b: e.enqueue(b), engine.stream, new_event=engine.event,
                                          duration=self.args.duration)
                        self.add("tensorrt", precision, b, "ok",
                                 f"TRT {version}, engine memory {engine.engine_device_memory_mb or 0:.0f} MB, "
                                 f"{'cached' if art.cached else f'built {art.seconds:.0f} s'}",
                                 timing=timing, drift=drift_mm(out, self.ref[b]), cuda_graphs=b in engine._graphs,
                                 engine_device_memory_mb=engine.engine_device_memory_mb, **recorded)
                finally:
                    engine.close()


class SkipSection(Exception):
    """A section cannot run here; the message says why (it becomes a `skipped: ...` row)."""


def run_folder(out_root: Path, env: dict[str, Any]) -> Path:
    return out_root / f"{env.get('run_id') or time.strftime('%Y%m%d-%H%M%S')}-gpu-check"


def write(rows: list[dict[str, Any]], env: dict[str, Any], folder: Path) -> Path:
    """The results folder as the harness writes it (`bench.results.write_results`: parquet, csv, json, md,
    env.json) where polars is installed; else csv, json, md and env.json with the same column names."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        from simplehand_deploy.bench.results import conform, write_results
    except ImportError:  # a bare GPU image: no polars
        _write_plain(rows, env, folder)
        return folder
    write_results(conform(rows), folder, env=env)
    return folder


def _write_plain(rows: list[dict[str, Any]], env: dict[str, Any], folder: Path) -> None:
    """The harness's files without polars: same names, columns in first-seen order, each file atomically."""
    import csv
    import io

    from simplehand_deploy.env import write_env_json

    cols = list(dict.fromkeys(c for r in rows for c in r))

    def atomic(name: str, text: str) -> None:
        tmp = folder / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, folder / name)

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    w.writerows(rows)
    atomic("results.csv", buf.getvalue())
    atomic("results.json", json.dumps(rows, indent=1, default=str) + "\n")

    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else "" if v is None else str(v).replace("|", "\\|")

    shown = [c for c in SHOWN if c in cols]
    lines = [f"# simplehand-bench results: {env.get('device_name', '')}", "",
             "| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in shown) + " |" for r in rows]
    atomic("results.md", "\n".join(lines) + "\n")
    write_env_json(folder, env)


def run(check: Rows, env: dict[str, Any], folder: Path, *, deadline_s: float = DEFAULT_DEADLINE_S,
        budget_s: float = DEFAULT_BUDGET_S, started: float | None = None) -> bool:
    """Run the selected sections in SECTIONS order, writing the folder after each one. A section that would
    start after `deadline_s` (seconds from `started`) becomes one skipped row; the compile, whose time is
    unbounded, runs in a worker thread and is abandoned (a skipped row) if it is still running at `budget_s`.
    Returns True when a worker was abandoned (the caller must then leave with os._exit)."""
    started = time.monotonic() if started is None else started
    sections = check.sections()
    abandoned = False
    for name in SECTIONS:
        if name not in check.args.sections:
            continue
        elapsed = time.monotonic() - started
        graphs = name == "graphs" or None
        if elapsed > deadline_s:
            check.add(RUNNER[name], "", None, f"skipped: time budget ({elapsed:.0f} s > --deadline-s {deadline_s:.0f})",
                      cuda_graphs=graphs)
        elif name == "compile":
            rows = len(check.rows)
            if not _bounded(lambda n=name: check.section(n, sections[n]), budget_s - elapsed):
                abandoned = True
                del check.rows[rows:]  # nothing half-written from the abandoned worker
                check.add(RUNNER[name], "", None, f"skipped: time budget (still compiling at --budget-s "
                          f"{budget_s:.0f})")
        else:
            check.section(name, sections[name])
        write(check.rows, env, folder)
    return abandoned


def _bounded(fn: Callable[[], None], seconds: float) -> bool:
    """Run `fn` in a daemon thread for at most `seconds`; False when it is still running then."""
    import threading

    worker = threading.Thread(target=fn, daemon=True)
    worker.start()
    worker.join(max(seconds, 0.0))
    return not worker.is_alive()


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--config", default="fastvit_ma36")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--batches", default="1,8,32,64")
    p.add_argument("--duration", type=float, default=2.0, help="minimum timed seconds per cell")
    p.add_argument("--sections", default=",".join(SECTIONS), help="comma list, run in the order "
                   + ",".join(SECTIONS))
    p.add_argument("--deadline-s", type=float, default=DEFAULT_DEADLINE_S,
                   help="no section starts after this many seconds (it becomes a skipped row)")
    p.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S,
                   help="the whole run: a torch.compile still running then is abandoned (a skipped row)")
    p.add_argument("--engines-dir", default=str(ROOT / "engines"))
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--verbose", action="store_true", help="print tracebacks of failed sections")
    args = p.parse_args(argv)
    try:
        args.batches = [int(b) for b in args.batches.split(",") if b.strip()]
        assert args.batches and all(b >= 1 for b in args.batches)
    except (ValueError, AssertionError):
        print(f"--batches {args.batches!r}: expected a comma list of positive integers, e.g. 1,8,32", file=sys.stderr)
        return 2
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        print(f"--sections: unknown {unknown}; choose from {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    try:
        import torch
    except ImportError:
        print("gpu_check: torch is not importable; install the package first (make install)", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False); nothing measured", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True
    from simplehand_deploy.env import fingerprint

    env = fingerprint()
    check = Check(args)
    env.update({"config": check.info.config, "weights": check.info.short, "weights_kind": check.info.kind})
    check.common.update({k: v for k, v in env.items() if k not in ("weights_kind",)})
    if not args.quiet:
        print(f"gpu_check on {env['device_name']}: {check.info.config}, weights {check.info.short} "
              f"({check.info.kind}), batches {args.batches}", flush=True)
    folder = run_folder(args.out, env)
    abandoned = run(check, env, folder, deadline_s=args.deadline_s, budget_s=args.budget_s, started=started)
    print(f"gpu_check: {len(check.rows)} rows -> {folder}/results.{{csv,json,md}}", flush=True)
    if abandoned:  # a compile thread is still inside torch: do not wait for it at interpreter exit
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
