"""`make engine`: calibration set -> weights -> FP32/FP16/INT8 ONNX -> TensorRT engines where possible.

Every step reuses a valid earlier result (calibration sets by settings + hashes, ONNX artifacts by
the weights/config they name and the sidecar they carry, engines by content key), so re-running is
cheap. Where TensorRT or a GPU is missing the job still succeeds (exit 0) and says exactly which
engines were skipped and why.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import DEFAULT_CONFIG
from .defaults import DEFAULT_CALIB_NUM, DEFAULT_METHOD, DEFAULT_PROFILE
from .errors import UsageError
from .literals import PRECISIONS, Method, StepStatus, Target


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def _fresh(path: Path, source: Path | None = None) -> bool:
    """Reusable: it and its sidecar exist (atomic writes: never half-written), this toolkit's artifact format
    wrote it, and it is newer than its source."""
    from .artifact import OnnxArtifact
    from .export import ARTIFACT_FORMAT

    art = OnnxArtifact.read_or_none(path)
    if not path.is_file() or art is None or art.artifact_format != ARTIFACT_FORMAT:
        return False
    return source is None or path.stat().st_mtime_ns >= source.stat().st_mtime_ns


def _same_int8_recipe(int8: Path, fp32: Path, method: Method, target: Target) -> bool:
    """The INT8 sidecar records this FP32 source, this method, this target and today's default placement.

    An artifact from an older toolkit (another Q/DQ placement) or another --method is rebuilt, not reused.
    """
    from .artifact import OnnxArtifact
    from .precision import DEFAULT_PLACEMENT

    side, src = OnnxArtifact.read_or_none(int8), OnnxArtifact.read_or_none(fp32)
    if side is None or src is None or side.int8 is None:
        return False
    return (side.source_sha256 == src.onnx_sha256 and side.int8.method == method
            and side.int8.placement == DEFAULT_PLACEMENT and side.int8_target == target)


def int8_targets(trt_version: str | None = None, *, detect: bool = True) -> tuple[Target, ...]:
    """INT8 artifacts `make engine` writes: the one the local TensorRT needs (trt10 for >= 10, trt8 below),
    or both where there is none. `detect` looks the installed TensorRT up when no version is given."""
    if trt_version is None and detect:
        from ._deps import tensorrt_or_none

        trt = tensorrt_or_none()
        trt_version = None if trt is None else str(trt.__version__)
    if not trt_version:
        return ("trt10", "trt8")
    from .trt.build import int8_target_for

    return (int8_target_for(trt_version),)


@dataclass(frozen=True)
class StepResult:
    """One row of the job's summary: which artifact, what happened to it, where it is, and why."""

    artifact: str
    status: StepStatus  # built (made now) | reused (found valid) | skipped | failed
    path: str = ""
    note: str = ""
    hint: str = ""  # how to get what a skipped step needs (printed once under the table)


@dataclass(frozen=True)
class EngineJob:
    """What `make engine` did: one step per artifact, in order."""

    steps: tuple[StepResult, ...]

    def __iter__(self) -> Iterator[StepResult]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def failed(self) -> bool:
        return any(s.status == "failed" for s in self.steps)


@dataclass(frozen=True)
class EngineJobConfig:
    """`make engine` / `simplehand-deploy engine`: what to build, from what, where; every default is the library's."""

    config: str = DEFAULT_CONFIG
    checkpoint: str | os.PathLike[str] | None = None
    freihand: str | os.PathLike[str] | None = None  # None: synthetic FreiHAND-format hands
    dexycb: str | os.PathLike[str] | None = None  # DexYCB crops instead (s0-train on the full release, else all)
    calib_num: int = DEFAULT_CALIB_NUM
    out: str | os.PathLike[str] = "engines"
    calib_dir: str | os.PathLike[str] = "calibration"
    precisions: tuple[str, ...] = PRECISIONS
    method: Method = DEFAULT_METHOD
    profile: tuple[int, int, int] = DEFAULT_PROFILE
    quiet: bool = False
    tf32: bool = True  # False: engines without TensorRT's default TF32 (`engine --no-tf32`)

    @classmethod
    def from_cli(cls, *, precisions: str | None = None, profile: str | None = None, **options: Any) -> EngineJobConfig:
        """Options left at None take the defaults above; `precisions` is a comma list, `profile` MIN,OPT,MAX."""
        given = {k: v for k, v in options.items() if v is not None}
        if precisions is not None:
            given["precisions"] = tuple(p.strip() for p in precisions.split(",") if p.strip())
        if profile is not None:
            from .trt.build import parse_profile

            given["profile"] = parse_profile(profile)
        return cls(**given)


def run_engine_job(job: EngineJobConfig | None = None, /, **options: Any) -> EngineJob:
    """Run the whole job (`job`, or an `EngineJobConfig` from the keyword options); returns one summary step per
    artifact (what, status, path, why)."""
    cfg = job if job is not None else EngineJobConfig(**options)
    from .checkpoint import load_announced

    bad = [p for p in cfg.precisions if p not in PRECISIONS]
    if bad:
        raise UsageError(f"unknown precision(s) {bad}: choose from {', '.join(PRECISIONS)}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if cfg.freihand is not None and cfg.dexycb is not None:
        raise UsageError("give at most one calibration source: --freihand DIR or --dexycb DIR")
    calib, calib_step = _calibration(cfg.freihand, cfg.calib_num, Path(cfg.calib_dir), cfg.quiet, dexycb=cfg.dexycb)
    _log(f"[2/4] weights: {cfg.checkpoint or 'none given'}", cfg.quiet)
    model, info = load_announced(cfg.checkpoint, cfg.config, announce=not cfg.quiet)
    _log(f"[3/4] ONNX artifacts in {out}/", cfg.quiet)
    onnx_for, onnx_steps = _onnx_artifacts(model, info, out, calib, cfg.precisions, cfg.method, cfg.quiet)
    _log("[4/4] TensorRT engines", cfg.quiet)
    engine_steps = _engines(onnx_for, cfg.precisions, cfg.profile, out, cfg.quiet, tf32=cfg.tf32)
    _log(f"done in {time.time() - t0:.0f} s", cfg.quiet)
    return EngineJob((calib_step, *onnx_steps, *engine_steps))


def _calibration(freihand: str | os.PathLike[str] | None, num: int, calib_dir: Path,
                 quiet: bool, dexycb: str | os.PathLike[str] | None = None) -> tuple[Path, StepResult]:
    """The set `make engine` calibrates on: `reused` when one with these settings verifies, else `built`."""
    from .calibration import build_calibration_set, calibration_set_matches

    name = f"freihand-{num}" if freihand else f"dexycb-{num}" if dexycb else f"synthetic-{num}"
    source = f"FreiHAND {freihand}" if freihand else f"DexYCB {dexycb}" if dexycb else "synthetic"
    _log(f"[1/4] calibration set calibration/{name} ({source})", quiet)
    settings: dict[str, Any] = {"freihand": freihand, "synthetic": freihand is None and dexycb is None, "num": num,
                                "seed": 0}
    if dexycb is not None:
        settings["dexycb"] = dexycb
    calib = calib_dir / name
    if calibration_set_matches(calib, **settings):
        return calib, StepResult("calibration set", "reused", str(calib), f"{num} crops")
    calib = build_calibration_set(calib, **settings, progress=not quiet)
    return calib, StepResult("calibration set", "built", str(calib), f"{num} crops")


def _onnx_artifacts(model: Any, info: Any, out: Path, calib: Path, precisions: tuple[str, ...], method: Method,
                    quiet: bool) -> tuple[dict[str, Path], list[StepResult]]:
    """FP32 export, FP16 and INT8 (per TensorRT target) graphs, each reused when still valid."""
    from .export import artifact_name, export_onnx
    from .precision import convert_fp16, quantize_int8

    steps: list[StepResult] = []
    fp32 = out / artifact_name(info.config, info.short, "fp32")
    # The file name carries config + weights hash, so an existing artifact with its sidecar is the same export.
    if _fresh(fp32):
        steps.append(StepResult("ONNX fp32", "reused", str(fp32)))
    else:
        export_onnx(model, fp32, info=info, progress=not quiet)
        steps.append(StepResult("ONNX fp32", "built", str(fp32), "parity-checked in ORT"))
    onnx_for = {"fp32": fp32}
    if "fp16" in precisions:
        fp16 = onnx_for["fp16"] = out / artifact_name(info.config, info.short, "fp16")
        status: StepStatus = "reused"
        if not _fresh(fp16, fp32):
            convert_fp16(fp32, fp16)
            status = "built"
        steps.append(StepResult("ONNX fp16", status, str(fp16), "FP32 island"))
    if "int8" in precisions:
        for target in int8_targets():
            int8 = out / artifact_name(info.config, info.short, "int8", target)
            onnx_for.setdefault("int8", int8)  # the engine is built from the first: the local TensorRT's target
            status = "reused"
            if not (_fresh(int8, fp32) and _fresh(int8, calib / "manifest.json")
                    and _same_int8_recipe(int8, fp32, method, target)):
                quantize_int8(fp32, calib, int8, method=method, target=target, progress=not quiet)
                status = "built"
            note = f"Q/DQ, {method}, " + ("FP16 remainder, opset 19" if target == "trt10" else "FP32 scales, opset 17")
            steps.append(StepResult(f"ONNX int8 {target}", status, str(int8), note))
    return onnx_for, steps


def _engines(onnx_for: dict[str, Path], precisions: tuple[str, ...], profile: tuple[int, int, int], out: Path,
             quiet: bool, tf32: bool = True) -> list[StepResult]:
    from ._deps import INSTALL_HINTS, tensorrt_or_none

    trt = tensorrt_or_none()
    reason = hint = ""
    if trt is None:
        reason, hint = "TensorRT is not installed", INSTALL_HINTS["tensorrt"]
    else:
        from .env import require_cuda_device

        try:
            require_cuda_device()
        except UsageError as exc:
            reason, hint = "no CUDA device", str(exc)
    steps = []
    for precision in precisions:
        if reason:
            steps.append(StepResult(f"TensorRT {precision}", "skipped", note=reason, hint=hint))
            continue
        from .trt.build import build_engine, trt_major

        assert trt is not None  # no reason: TensorRT was found

        # TRT < 10 builds FP16 by flag from the FP32 graph; >= 10 is strongly typed from the FP16 graph.
        src = onnx_for["fp32"] if (trt_major(trt) < 10 and precision == "fp16") else onnx_for[precision]
        _log(f"      building TensorRT {precision} from {src.name} (minutes on a GPU; cached by content key)", quiet)
        try:
            art = build_engine(src, precision=precision, profile=profile, out_dir=out, tf32=tf32)
            steps.append(StepResult(f"TensorRT {precision}", "reused" if art.cached else "built", str(art.plan),
                                    f"TensorRT {trt.__version__}, {art.seconds:.0f} s"))
        except Exception as exc:  # one failed precision must not hide the others
            steps.append(StepResult(f"TensorRT {precision}", "failed", note=f"{type(exc).__name__}: {str(exc)[:200]}"))
    return steps


def summary_table(steps: Iterable[StepResult]) -> Any:
    """Rich table of every artifact; the why of a skip is printed once, under the table."""
    from rich.markup import escape
    from rich.table import Table

    steps = list(steps)
    hints = dict.fromkeys(s.hint for s in steps if s.hint)
    caption = "skipped: " + " ".join(hints) if hints else None
    table = Table(title="make engine: summary", caption=escape(caption) if caption else None, caption_justify="left")
    table.add_column("artifact", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("path", overflow="fold")
    table.add_column("note")
    colours = {"built": "green", "reused": "cyan", "skipped": "yellow", "failed": "red"}
    for s in steps:
        status = f"[{colours.get(s.status, 'white')}]{s.status}[/]"
        table.add_row(escape(s.artifact), status, escape(s.path), escape(s.note))
    return table
