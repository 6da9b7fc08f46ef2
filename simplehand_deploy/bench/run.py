"""`simplehand-bench latency | accuracy | run` (and the bare command) as one call: a config in, a run out.

`BenchConfig` holds every default once (`from_cli` turns the command line's `None` into them);
`run_bench` loads the model, finds the artifacts, builds the calibration set for accuracy, sweeps and
writes the results folder; the returned `BenchRun` says what happened (frames, folder, whether every
runner failed, trtexec lines, warnings) and the CLI only renders it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import DEFAULT_CONFIG
from ..errors import UsageError

# One duration for every latency run (trtexec's default); the bare `simplehand-bench` uses it too.
DEFAULT_DURATION = 3.0
DEFAULT_ITERATIONS = 10
DEFAULT_WARMUP = 0.2
DEFAULT_ENGINES_DIR = Path("engines")
DEFAULT_CALIB = Path("calibration") / "synthetic-16"


@dataclass(frozen=True)
class BenchConfig:
    """What to measure and how; every field's default is the library's."""

    kinds: tuple[str, ...] = ("latency",)
    runners: str | None = None  # comma list; None: torch,onnxruntime,tensorrt
    batch_sizes: str | None = None  # comma list; None: 1,2,4,8 on CPU, up to 64 on GPU
    duration: float = DEFAULT_DURATION
    iterations: int = DEFAULT_ITERATIONS
    warmup: float = DEFAULT_WARMUP
    config: str = DEFAULT_CONFIG
    checkpoint: Path | None = None
    onnx: tuple[Path, ...] = ()  # empty: found in engines_dir
    engines: tuple[Path, ...] = ()  # empty: engines_dir/*.plan
    engines_dir: Path = DEFAULT_ENGINES_DIR
    calib: Path | None = None  # None: a synthetic set of 16 crops in calibration/
    out: Path | None = None  # None: benchmarks/results/<run-id>/
    threads: int | None = None  # None: each library's own
    buffers: str = "auto"  # TensorRT's CUDA buffer backend: auto | torch | cuda-python | pycuda
    quiet: bool = False  # no progress bars or notes

    @classmethod
    def from_cli(cls, kinds: tuple[str, ...], **options: Any) -> BenchConfig:
        """Options left at None take the defaults above; lists become tuples."""
        given: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items() if v is not None}
        return cls(kinds=kinds, **given)

    def accuracy_only(self) -> BenchConfig:
        """Accuracy runs one batch, untimed."""
        return dataclasses.replace(self, batch_sizes="1", duration=0.0, iterations=1, warmup=0.0)


@dataclass(frozen=True)
class BenchRun:
    """What one bench invocation measured and wrote."""

    config: BenchConfig
    frames: tuple[Any, ...]  # one polars frame per kind, in `config.kinds` order
    df: Any  # all rows (the results folder's table)
    path: Path  # the results folder
    env: dict[str, Any] = field(default_factory=dict)
    model_config: str = ""
    weights: str = ""
    on_gpu: bool = False

    @property
    def failed_all(self) -> bool:
        """No runner produced a result: every row is an error or a skip."""
        return bool(len(self.df)) and not (self.df["status"] == "ok").any()

    def titles(self) -> list[str]:
        return [f"{kind}: {self.env.get('device_name', '')} ({self.model_config}, weights {self.weights})"
                for kind in self.config.kinds]

    def tables(self) -> list[Any]:
        from .sweep import render

        return [render(frame, title) for frame, title in zip(self.frames, self.titles(), strict=True)]

    def trtexec_lines(self) -> list[str]:
        from .sweep import trtexec_lines

        return trtexec_lines(self.df)

    def cov_warning(self) -> str:
        from .sweep import cov_warnings

        return cov_warnings(self.df)

    @property
    def simulated_precision_note(self) -> bool:
        """ONNX Runtime rows on a CPU machine: FP16/INT8 there simulate TensorRT for accuracy, not speed."""
        return not self.on_gpu and any(r.startswith("onnxruntime") for r in self.df["runner"].to_list())

    def rows(self) -> list[dict[str, Any]]:
        return list(self.df.to_dicts())


def run_bench(cfg: BenchConfig) -> BenchRun:
    """Measure, write the results folder, and return the run (UsageError for bad options, before any work)."""
    import polars as pl

    from ..checkpoint import load_announced
    from ..env import fingerprint, gpu_info
    from . import sweep

    names = sweep.parse_runners(cfg.runners)
    from ..trt.build import check_buffers

    check_buffers(cfg.buffers)  # a misspelt --buffers fails before any work; `auto` is resolved by the runner
    on_gpu = bool(gpu_info())
    batches = sweep.parse_batches(cfg.batch_sizes, on_gpu)
    if cfg.iterations < 1 or cfg.duration < 0 or cfg.warmup < 0:
        raise UsageError("--iterations must be >= 1 and --duration/--warmup >= 0")
    if cfg.threads is not None and cfg.threads < 1:
        raise UsageError(f"--threads {cfg.threads}: must be >= 1 (omit it for each library's default)")
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)  # before the first torch call (model load, export)
    # the training-time model: the torch runner fuses its own copy; torch_unfused times it as it is
    model, info = load_announced(cfg.checkpoint, cfg.config, fused=False, announce=not cfg.quiet)
    found_onnx, found_plans = sweep.find_artifacts(cfg.engines_dir, info.config, info.short)
    specs = sweep.build_specs(names, model=model, info=info, onnx=list(cfg.onnx) or found_onnx,
                              plans=list(cfg.engines) or found_plans, engines_dir=cfg.engines_dir, quiet=cfg.quiet,
                              threads=cfg.threads, check_plans=not cfg.engines, buffers=cfg.buffers)
    env = fingerprint()
    common = {"config": info.config, "weights": info.short, **env}
    frames = []
    maps = None
    calib = cfg.calib
    if "latency" in cfg.kinds:
        frames.append(sweep.latency_sweep(specs, batches, duration=cfg.duration, iterations=cfg.iterations,
                                          warmup=cfg.warmup, common=common, progress=not cfg.quiet))
    if "accuracy" in cfg.kinds:
        if calib is None:
            from ..calibration import ensure_calibration_set

            calib = ensure_calibration_set(DEFAULT_CALIB, synthetic=True, num=16, progress=not cfg.quiet)
        from .accuracy import DriftMaps

        maps = DriftMaps(None)
        frames.append(sweep.accuracy_run(specs, model=model, calib=calib, common=common, progress=not cfg.quiet,
                                         drift_maps=maps))
    df = pl.concat(frames, how="vertical_relaxed")
    path = sweep.finish(df, cfg.out, env)
    if maps is not None and calib is not None:
        maps.write(path, f"{info.config}, {calib.name}")
    return BenchRun(cfg, tuple(frames), df, path, env, info.config, info.short, on_gpu)
