"""One GPU check for any NVIDIA machine: how fast is SimpleHand here, per backend, precision and batch size?

    python benchmarks/gpu_check.py [--out benchmarks/results] [--config fastvit_ma36] [--checkpoint W]
                                   [--batches 1,8,32,64] [--duration 2] [--sections eager,graphs,compile,ort,trt]

Sections, each degrading on its own (a missing optional dependency or a failure becomes a `skipped`/`failed`
row with the reason, never a crash): torch CUDA eager FP32/FP16, the same under CUDA graphs, torch.compile
(FP16), ONNX Runtime's CUDA provider if installed, TensorRT if installed (through our builder and runtime,
engines cached by content key in --engines-dir). GPU timings are CUDA events around each launch on its
stream (GPU compute, no H2D/D2H); ONNX Runtime is timed on the host around `run` and includes copies.
Each row also carries the vertex drift (mm) against torch FP32 eager on the same random batch.
Writes <out>/<run-id>-gpu-check/gpu_check.{csv,json,md}. Without a CUDA device it prints one line and
exits 2 (nothing was measured).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SECTIONS = ("eager", "graphs", "compile", "ort", "trt")


def _stats(times_ms: list[float]) -> dict[str, float]:
    """trtexec's definitions: the harness's `stats` (simplehand_deploy/timing.py is importable without polars)."""
    from simplehand_deploy.timing import stats

    s = stats(times_ms)
    return {k: s[k] for k in ("latency_mean_ms", "latency_p50_ms", "latency_p99_ms", "latency_cov")}


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
    return {**_stats(times), "throughput_exec_s": len(times) / wall}


def time_host(call: Callable[[], Any], *, duration: float, iterations: int = 20, warmup: float = 0.3) -> dict:
    """The harness's host timing (timing.time_host): perf_counter around each synchronous call."""
    from simplehand_deploy.timing import time_host as shared

    return _stats(shared(call, duration=duration, iterations=iterations, warmup=warmup))


def drift_mm(vertices: Any, ref: np.ndarray) -> float:
    """Mean vertex drift (mm) vs the eager reference: the shared accuracy code (numpy only, no polars)."""
    from simplehand_deploy.drift import drift_row

    v = np.asarray(vertices.float().cpu().numpy() if hasattr(vertices, "float") else vertices, dtype=np.float32)
    return float(drift_row({"vertices": ref}, {"vertices": v})["vertex_drift_mean_mm"] or 0.0)


class Check:
    """Collects rows; every section runs through `section`, which turns exceptions into rows."""

    def __init__(self, args: argparse.Namespace) -> None:
        import torch

        from simplehand_deploy.checkpoint import load_checkpoint

        self.args = args
        self.rows: list[dict[str, Any]] = []
        self.model, self.info = load_checkpoint(args.checkpoint, args.config, fused=True)
        self.model = self.model.cuda().eval()
        g = torch.Generator().manual_seed(0)
        self.images = {b: torch.randn((b, 3, 224, 224), generator=g).cuda() for b in args.batches}
        with torch.inference_mode():
            self.ref = {b: self.model(x)[1].float().cpu().numpy() for b, x in self.images.items()}

    def add(self, section: str, backend: str, precision: str, batch: int | None, status: str, note: str = "",
            timing: dict[str, float] | None = None, drift: float | None = None) -> None:
        row: dict[str, Any] = {"section": section, "backend": backend, "precision": precision, "batch": batch,
                               "status": status, "latency_mean_ms": None, "latency_p50_ms": None,
                               "latency_p99_ms": None, "latency_cov": None, "images_per_s": None,
                               "vertex_drift_mean_mm": drift, "note": note}
        if timing:
            per_s = timing.pop("throughput_exec_s", None) or 1000 / timing["latency_mean_ms"]
            row.update(timing)
            row["images_per_s"] = batch * per_s if batch else None
        self.rows.append(row)
        if not self.args.quiet:
            lat = f"{row['latency_p50_ms']:.3f} ms p50" if timing else status
            print(f"  {section:8s} {backend:22s} {precision:5s} b={batch!s:3s} {lat} {note}", flush=True)

    def section(self, name: str, fn: Callable[[], None]) -> None:
        if name not in self.args.sections:
            return
        if not self.args.quiet:
            print(f"[{name}]", flush=True)
        try:
            fn()
        except SkipSection as exc:
            self.add(name, name, "-", None, "skipped", str(exc))
        except Exception as exc:
            self.add(name, name, "-", None, "failed", f"{type(exc).__name__}: {str(exc)[:300]}")
            if self.args.verbose:
                traceback.print_exc()

    # --- sections ------------------------------------------------------------------------------------------
    def eager(self, graphs: bool = False) -> None:
        import copy

        import torch

        section = "graphs" if graphs else "eager"
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
                    self.add(section, "torch-cuda-graphs" if graphs else "torch-eager", precision, b, "ok",
                             timing=timing, drift=drift_mm(out, self.ref[b]))
                except torch.cuda.OutOfMemoryError as exc:
                    torch.cuda.empty_cache()
                    self.add(section, "torch", precision, b, "failed", f"out of memory: {str(exc)[:120]}")

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
        import copy

        import torch

        model = copy.deepcopy(self.model).half()
        try:
            compiled = torch.compile(model, dynamic=False)
        except Exception as exc:
            raise SkipSection(f"torch.compile unavailable: {type(exc).__name__}: {exc}") from None
        stream = torch.cuda.current_stream()
        for b, x in self.images.items():
            xb = x.half()
            t0 = time.perf_counter()
            with torch.inference_mode():
                out = compiled(xb)[1]
                torch.cuda.synchronize()
                compile_s = time.perf_counter() - t0
                timing = time_gpu(lambda xb=xb: compiled(xb), stream, duration=self.args.duration)
            self.add("compile", "torch-compile-inductor", "fp16", b, "ok", f"first call {compile_s:.0f} s",
                     timing=timing, drift=drift_mm(out, self.ref[b]))

    def _onnx(self, precision: str) -> Path | None:
        from simplehand_deploy.export import artifact_name

        path = Path(self.args.engines_dir) / artifact_name(self.info.config, self.info.short, precision)
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
                self.add("ort", "onnxruntime-cuda", precision, None, "skipped",
                         f"no {precision} ONNX in {self.args.engines_dir} (run `make engine`)")
                continue
            sess = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
            if sess.get_providers()[0] != "CUDAExecutionProvider":
                raise SkipSection(f"CUDAExecutionProvider did not load (got {sess.get_providers()})")
            in_type = np.float16 if "float16" in sess.get_inputs()[0].type else np.float32
            for b, x in self.images.items():
                feed = {"image": x.cpu().numpy().astype(in_type)}
                out = sess.run(["vertices"], feed)[0]
                timing = time_host(lambda s=sess, f=feed: s.run(None, f), duration=self.args.duration)
                self.add("ort", "onnxruntime-cuda", precision, b, "ok", "host time, includes copies",
                         timing=timing, drift=drift_mm(out, self.ref[b]))

    def trt(self) -> None:
        from simplehand_deploy._deps import tensorrt_or_none

        trt = tensorrt_or_none()
        if trt is None:
            raise SkipSection("TensorRT is not installed (pip install 'simplehand-deploy[trt]'; Jetson: apt)")
        from simplehand_deploy.trt.build import build_engine, trt_major
        from simplehand_deploy.trt.runtime import TrtEngine

        fp32 = self.ensure_fp32_onnx()
        hi = max(max(self.args.batches), 8)
        for precision in ("fp32", "fp16", "int8"):
            src = fp32 if precision == "fp32" or (precision == "fp16" and trt_major(trt) < 10) else self._onnx(
                precision)
            if src is None:
                self.add("trt", "tensorrt", precision, None, "skipped",
                         f"no {precision} ONNX in {self.args.engines_dir} (run `make engine` first)")
                continue
            try:
                art = build_engine(src, precision=precision, profile=(1, min(8, hi), hi),
                                   out_dir=self.args.engines_dir)
            except Exception as exc:
                self.add("trt", "tensorrt", precision, None, "failed", f"build: {type(exc).__name__}: {exc}"[:300])
                continue
            for graphs in (True, False):
                engine = TrtEngine(art.plan, cuda_graphs=graphs, buffers="torch")
                mix = art.precision_mix
                try:
                    for b, x in self.images.items():
                        out = engine.infer(x)["vertices"]
                        engine.prepare(b)
                        timing = time_gpu(lambda e=engine, b=b: e.enqueue(b), engine.stream, new_event=engine.event,
                                          duration=self.args.duration)
                        used = b in engine._graphs
                        self.add("trt", "tensorrt-graphs" if used else "tensorrt", precision, b, "ok",
                                 f"TRT {trt.__version__}, ran {mix or '?'}, engine memory "
                                 f"{engine.engine_device_memory_mb or 0:.0f} MB, "
                                 f"{'cached' if art.cached else f'built {art.seconds:.0f} s'}",
                                 timing=timing, drift=drift_mm(out, self.ref[b]))
                finally:
                    engine.close()


class SkipSection(Exception):
    """A section cannot run here; the message says why (it becomes a `skipped` row)."""


def write(rows: list[dict[str, Any]], env: dict[str, Any], out_root: Path) -> Path:
    import csv

    folder = out_root / f"{env.get('run_id', time.strftime('%Y%m%d-%H%M%S'))}-gpu-check"
    folder.mkdir(parents=True, exist_ok=True)
    cols = list(rows[0]) if rows else []
    with open(folder / "gpu_check.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    (folder / "gpu_check.json").write_text(json.dumps({"env": env, "rows": rows}, indent=1, default=str))

    def fmt(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else "" if v is None else str(v)

    show = ["section", "backend", "precision", "batch", "status", "latency_p50_ms", "latency_p99_ms",
            "images_per_s", "vertex_drift_mean_mm", "note"]
    lines = [f"# gpu_check: {env.get('device_name', '?')} ({env.get('timestamp', '')})", "",
             f"torch {env.get('torch_version', '')}, CUDA {env.get('cuda_version', '')}, driver "
             f"{env.get('driver_version', '')}, TensorRT {env.get('tensorrt_version') or 'absent'}, "
             f"onnxruntime {env.get('onnxruntime_version') or 'absent'}; weights {env.get('weights', '')}", "",
             "| " + " | ".join(show) + " |", "|" + "---|" * len(show)]
    lines += ["| " + " | ".join(fmt(r.get(c)).replace("|", "/") for c in show) + " |" for r in rows]
    (folder / "gpu_check.md").write_text("\n".join(lines) + "\n")
    return folder


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--config", default="fastvit_ma36")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--batches", default="1,8,32,64")
    p.add_argument("--duration", type=float, default=2.0, help="minimum timed seconds per cell")
    p.add_argument("--sections", default=",".join(SECTIONS))
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
    if not args.quiet:
        print(f"gpu_check on {env['device_name']}: {check.info.config}, weights {check.info.short} "
              f"({check.info.kind}), batches {args.batches}", flush=True)
    check.section("eager", check.eager)
    check.section("graphs", lambda: check.eager(graphs=True))
    check.section("compile", check.compiled)
    check.section("ort", check.ort)
    check.section("trt", check.trt)
    folder = write(check.rows, env, args.out)
    print(f"gpu_check: {len(check.rows)} rows -> {folder}/gpu_check.{{csv,json,md}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
