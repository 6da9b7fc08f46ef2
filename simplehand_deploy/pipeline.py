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
from pathlib import Path
from typing import Any

from .errors import UsageError


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def _fresh(path: Path, source: Path | None = None) -> bool:
    """Reusable: it and its sidecar exist (atomic writes: never half-written), this toolkit's artifact format
    wrote it, and it is newer than its source."""
    from .export import ARTIFACT_FORMAT, read_sidecar, sidecar_path

    if not (path.is_file() and sidecar_path(path).is_file()):
        return False
    if path.suffix == ".onnx":
        try:
            if read_sidecar(path).get("artifact_format") != ARTIFACT_FORMAT:
                return False
        except (OSError, ValueError):
            return False
    return source is None or path.stat().st_mtime_ns >= source.stat().st_mtime_ns


def _same_int8_recipe(int8: Path, fp32: Path, method: str, target: str) -> bool:
    """The INT8 sidecar records this FP32 source, this method, this target and today's default placement.

    An artifact from an older toolkit (another Q/DQ placement) or another --method is rebuilt, not reused.
    """
    from .export import read_sidecar
    from .precision import DEFAULT_PLACEMENT

    try:
        side, src = read_sidecar(int8), read_sidecar(fp32)
    except (OSError, ValueError):
        return False
    recipe = side.get("int8") or {}
    return (side.get("source_sha256") == src.get("onnx_sha256") and recipe.get("method") == method
            and recipe.get("placement") == DEFAULT_PLACEMENT and side.get("int8_target") == target)


def int8_targets(trt_version: str | None = None, *, detect: bool = True) -> tuple[str, ...]:
    """INT8 artifacts `make engine` writes: the one the local TensorRT needs (trt10 for >= 10, trt8 below),
    or both where there is none. `detect` looks the installed TensorRT up when no version is given."""
    if trt_version is None and detect:
        from ._deps import tensorrt_or_none

        trt = tensorrt_or_none()
        trt_version = None if trt is None else str(trt.__version__)
    if not trt_version:
        return ("trt10", "trt8")
    return ("trt10",) if int(trt_version.split(".")[0]) >= 10 else ("trt8",)


def run_engine_job(
    config: str = "fastvit_ma36",
    checkpoint: str | os.PathLike[str] | None = None,
    freihand: str | os.PathLike[str] | None = None,
    calib_num: int = 64,
    out: str | os.PathLike[str] = "engines",
    calib_dir: str | os.PathLike[str] = "calibration",
    precisions: tuple[str, ...] = ("fp32", "fp16", "int8"),
    method: str = "minmax",
    profile: tuple[int, int, int] = (1, 8, 64),
    quiet: bool = False,
    tf32: bool = True,
) -> list[dict[str, Any]]:
    """Run the whole job; returns one summary row per artifact (what, status, path, why).

    `tf32=False` builds the TensorRT engines without TensorRT's default TF32 (`engine --no-tf32`).
    """
    from .calibration import ensure_calibration_set
    from .checkpoint import load_checkpoint
    from .export import artifact_name, export_onnx
    from .precision import convert_fp16, quantize_int8

    bad = [p for p in precisions if p not in ("fp32", "fp16", "int8")]
    if bad:
        raise UsageError(f"unknown precision(s) {bad}: choose from fp32, fp16, int8")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    t0 = time.time()

    name = f"freihand-{calib_num}" if freihand else f"synthetic-{calib_num}"
    _log(f"[1/4] calibration set calibration/{name} ({'FreiHAND ' + str(freihand) if freihand else 'synthetic'})",
         quiet)
    calib = ensure_calibration_set(Path(calib_dir) / name, freihand=freihand, synthetic=freihand is None,
                                   num=calib_num, seed=0, progress=not quiet)
    rows.append({"artifact": "calibration set", "status": "ready", "path": str(calib), "note": f"{calib_num} crops"})

    if checkpoint is None:
        _log(f"[2/4] weights: NONE GIVEN -> seed-initialised {config} weights (NOT a trained model; "
             "pass WEIGHTS=path for real numbers)", quiet)
    else:
        _log(f"[2/4] weights: {checkpoint}", quiet)
    model, info = load_checkpoint(checkpoint, config)

    fp32 = out / artifact_name(info.config, info.short, "fp32")
    _log(f"[3/4] ONNX artifacts in {out}/", quiet)
    # The file name carries config + weights hash, so an existing artifact with its sidecar is the same export.
    if _fresh(fp32):
        rows.append({"artifact": "ONNX fp32", "status": "reused", "path": str(fp32), "note": ""})
    else:
        export_onnx(model, fp32, info=info, progress=not quiet)
        rows.append({"artifact": "ONNX fp32", "status": "built", "path": str(fp32), "note": "parity-checked in ORT"})
    onnx_for = {"fp32": fp32}
    if "fp16" in precisions:
        fp16 = onnx_for["fp16"] = out / artifact_name(info.config, info.short, "fp16")
        status = "reused"
        if not _fresh(fp16, fp32):
            convert_fp16(fp32, fp16)
            status = "built"
        rows.append({"artifact": "ONNX fp16", "status": status, "path": str(fp16), "note": "FP32 island"})
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
            rows.append({"artifact": f"ONNX int8 {target}", "status": status, "path": str(int8), "note": note})

    _log("[4/4] TensorRT engines", quiet)
    rows.extend(_engines(onnx_for, precisions, profile, out, quiet, tf32=tf32))
    _log(f"done in {time.time() - t0:.0f} s", quiet)
    return rows


def _engines(onnx_for: dict[str, Path], precisions: tuple[str, ...], profile: tuple[int, int, int], out: Path,
             quiet: bool, tf32: bool = True) -> list[dict[str, Any]]:
    from ._deps import INSTALL_HINTS, tensorrt_or_none

    trt = tensorrt_or_none()
    reason = hint = ""
    if trt is None:
        reason, hint = "TensorRT is not installed", INSTALL_HINTS["tensorrt"]
    else:
        from .trt.build import cuda_device

        try:
            cuda_device()
        except UsageError as exc:
            reason, hint = "no CUDA device", str(exc)
    rows = []
    for precision in precisions:
        if reason:
            rows.append({"artifact": f"TensorRT {precision}", "status": "skipped", "path": "", "note": reason,
                         "hint": hint})
            continue
        from .trt.build import build_engine, trt_major

        assert trt is not None  # no reason: TensorRT was found

        # TRT < 10 builds FP16 by flag from the FP32 graph; >= 10 is strongly typed from the FP16 graph.
        src = onnx_for["fp32"] if (trt_major(trt) < 10 and precision == "fp16") else onnx_for[precision]
        _log(f"      building TensorRT {precision} from {src.name} (minutes on a GPU; cached by content key)", quiet)
        try:
            art = build_engine(src, precision=precision, profile=profile, out_dir=out, tf32=tf32)
            rows.append({"artifact": f"TensorRT {precision}", "status": "reused" if art.cached else "built",
                         "path": str(art.plan), "note": f"TensorRT {trt.__version__}, {art.seconds:.0f} s"})
        except Exception as exc:  # one failed precision must not hide the others
            rows.append({"artifact": f"TensorRT {precision}", "status": "failed", "path": "",
                         "note": f"{type(exc).__name__}: {str(exc)[:200]}"})
    return rows


def summary_table(rows: list[dict[str, Any]]) -> Any:
    """Rich table of every artifact; the why of a skip is printed once, under the table."""
    from rich.markup import escape
    from rich.table import Table

    hints = dict.fromkeys(r["hint"] for r in rows if r.get("hint"))
    caption = "skipped: " + " ".join(hints) if hints else None
    table = Table(title="make engine: summary", caption=escape(caption) if caption else None, caption_justify="left")
    table.add_column("artifact", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("path", overflow="fold")
    table.add_column("note")
    colours = {"built": "green", "reused": "cyan", "ready": "cyan", "skipped": "yellow", "failed": "red"}
    for r in rows:
        status = f"[{colours.get(r['status'], 'white')}]{r['status']}[/]"
        table.add_row(escape(r["artifact"]), status, escape(r["path"]), escape(r["note"]))
    return table
