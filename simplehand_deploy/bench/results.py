"""The results schema: one row per (runner, precision, batch_size, measurement), units in column names.

Every row carries the environment fingerprint (device, CPU model, logical CPUs, the intra-op threads in
effect, library versions) and the sha256 of the graph it ran, so files from many devices can be
concatenated and compared (regress, report) without side files. Formatting happens only when rendering.

`results.parquet` is the complete record: it alone keeps the per-iteration samples
(`latency_samples_ms`, a list column, in run order) that the regression gate's statistic needs;
the CSV/JSON/markdown copies leave that column out to stay readable.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from ..drift import REGION_COLUMNS
from ..env import write_env_json
from ..errors import UsageError
from ..fileio import atomic_path

_S, _I, _F, _B = pl.Utf8, pl.Int64, pl.Float64, pl.Boolean
_LF = pl.List(pl.Float64)

IDENTITY = {"runner": _S, "precision": _S, "batch_size": _I, "measurement": _S, "status": _S, "config": _S,
            "weights": _S, "artifact": _S, "artifact_sha256": _S, "fused": _B, "timing_scope": _S, "cuda_graphs": _B,
            "cpu_threads": _I}
LATENCY = {"latency_mean_ms": _F, "latency_p50_ms": _F, "latency_p90_ms": _F, "latency_p95_ms": _F,
           "latency_p99_ms": _F, "latency_min_ms": _F, "latency_max_ms": _F, "latency_cov": _F, "iterations": _I,
           "duration_s": _F, "throughput_img_s": _F, "throughput_exec_s": _F, "peak_memory_mb": _F,
           "speedup_vs_eager": _F, "cov_warning": _B, "cpu_other_pct": _F,
           # baselines pooled from several runs (`simplehand-bench baseline --from A --from B ...`)
           "baseline_runs": _I, "latency_p50_run_cov": _F, "throughput_run_cov": _F, "latency_samples_ms": _LF}
# TensorRT rows: what ran (from the engine's layer datatypes), its memory outside torch's allocator,
# and the equivalent trtexec line. `precision` keeps fp32|fp16|int8 (regression matching keys on it).
TENSORRT = {"precision_mix": _S, "precision_verified": _B, "engine_device_memory_mb": _F,
            "device_memory_delta_mb": _F, "trtexec_command": _S}
ACCURACY = {"num_samples": _I, "vertex_drift_mean_mm": _F, "vertex_drift_p99_mm": _F, "vertex_drift_max_mm": _F,
            "uv_drift_mean_px": _F, "uv_drift_max_px": _F, "joint_drift_mean_mm": _F, "pa_mpvpe_mm": _F,
            "pa_mpjpe_mm": _F, "f5": _F, "f15": _F, **{c: _F for c in REGION_COLUMNS}}
ENV: dict[str, Any] = {k: _S for k in (
    "device_name", "device_slug", "host", "os", "arch", "python_version", "torch_version", "onnxruntime_version",
    "tensorrt_version", "cuda_version", "driver_version", "jetson_model", "jetson_power_mode", "toolkit_version",
    "run_id", "timestamp", "cpu_model")}
ENV["cpu_count"] = _I
RESULT_COLUMNS: dict[str, Any] = {**IDENTITY, **LATENCY, **TENSORRT, **ACCURACY, **ENV}
SAMPLES = "latency_samples_ms"  # parquet only (see the module doc)
REQUIRED = ("runner", "precision", "batch_size", "measurement", "status", "device_name")
FILES = ("results.parquet", "results.csv", "results.json", "results.md")


def empty_results() -> pl.DataFrame:
    return pl.DataFrame(schema=RESULT_COLUMNS)


def conform(rows: list[dict[str, Any]] | pl.DataFrame) -> pl.DataFrame:
    """Rows (dicts with any subset of the columns) -> a frame with every column, typed, in schema order."""
    df = rows if isinstance(rows, pl.DataFrame) else pl.DataFrame(rows, infer_schema_length=None)
    cols = []
    for name, dtype in RESULT_COLUMNS.items():
        cols.append(pl.col(name).cast(dtype, strict=False) if name in df.columns else pl.lit(None, dtype).alias(name))
    extra = [c for c in df.columns if c not in RESULT_COLUMNS]
    return df.select([*cols, *extra]) if len(df) else empty_results()


def validate(df: pl.DataFrame, source: str = "results") -> pl.DataFrame:
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise UsageError(f"{source}: missing column(s) {', '.join(missing)}; is this a simplehand-bench results file?")
    return df


def to_markdown(df: pl.DataFrame, columns: list[str] | None = None) -> str:
    cols = columns or [c for c in ("runner", "precision", "batch_size", "measurement", "status", "latency_p50_ms",
                                   "latency_p99_ms", "latency_cov", "throughput_img_s", "speedup_vs_eager",
                                   "vertex_drift_mean_mm", "vertex_drift_max_mm", "uv_drift_mean_px", "pa_mpvpe_mm")
                       if c in df.columns and df[c].null_count() < len(df)]

    def cell(v: Any) -> str:
        return "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)

    return markdown_table(pl.DataFrame({c: [cell(v) for v in df[c].to_list()] for c in cols}, schema=dict.fromkeys(
        cols, pl.Utf8)))


def markdown_table(cells: pl.DataFrame) -> str:
    """A frame of display strings as a GitHub markdown table, laid out by polars (`tbl_formatting="MARKDOWN"`).

    Cells are made table-safe first: `|` escaped, line breaks as spaces, null as an empty cell; every
    row and column is shown, nothing truncated.
    """
    if not cells.columns:
        return ""
    safe = cells.with_columns(
        pl.col(c).cast(pl.Utf8).fill_null("").str.replace_all("|", "\\|", literal=True)
        .str.replace_all(r"\r?\n", " ") for c in cells.columns)
    longest = max([len(c) for c in safe.columns] + [n for c in safe.columns for n in safe[c].str.len_chars()
                                                     .drop_nulls().to_list()])
    with pl.Config(tbl_formatting="MARKDOWN", tbl_hide_column_data_types=True, tbl_hide_dataframe_shape=True,
                   tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=max(longest, 8), tbl_width_chars=-1):
        return str(safe) + "\n"


def markdown_rows(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """`markdown_table` over plain rows: one display string per cell (None becomes an empty cell)."""
    data = [[None if v is None else str(v) for v in row] for row in rows]
    return markdown_table(pl.DataFrame(data, schema=dict.fromkeys(header, pl.Utf8), orient="row"))


def write_results(df: pl.DataFrame, out_dir: str | os.PathLike[str], env: dict[str, Any] | None = None) -> Path:
    """Write results.{parquet,csv,json,md} (+ env.json) into `out_dir`, each file atomically.

    Only our own file names are ever written or replaced: pointing --out at a folder with other content
    (the repo root, a folder of earlier runs) never deletes anything.
    """
    df = conform(df)
    flat = df.drop(SAMPLES)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    title = f"# simplehand-bench results: {df['device_name'][0] if len(df) else ''}\n\n"
    writers = {
        "results.parquet": lambda p: df.write_parquet(p),
        "results.csv": lambda p: flat.write_csv(p),
        "results.json": lambda p: p.write_text(json.dumps(flat.to_dicts(), indent=1, default=str) + "\n"),
        "results.md": lambda p: p.write_text(title + to_markdown(flat)),
    }
    for name, write in writers.items():
        with atomic_path(out / name) as tmp:
            write(tmp)
    if env is not None:
        write_env_json(out, env)
    return out


def read_results(path: str | os.PathLike[str]) -> pl.DataFrame:
    """A results folder, or any one of its results.* files (parquet preferred)."""
    p = Path(path)
    if p.is_dir():
        for name in ("results.parquet", "results.csv", "results.json"):
            if (p / name).is_file():
                p = p / name
                break
        else:
            raise UsageError(f"{path}: no results.parquet/csv/json inside (is this a simplehand-bench results folder?)")
    if not p.is_file():
        raise UsageError(f"{path}: no such results file or folder")
    try:
        if p.suffix == ".parquet":
            df = pl.read_parquet(p)
        elif p.suffix == ".csv":
            df = pl.read_csv(p, infer_schema_length=None)
        elif p.suffix == ".json":
            df = pl.DataFrame(json.loads(p.read_text()), infer_schema_length=None)
        elif p.suffix == ".md" and (p.parent / "results.parquet").is_file():
            df = pl.read_parquet(p.parent / "results.parquet")
        else:
            raise UsageError(f"{p}: unsupported results file (use the folder or results.parquet/csv/json)")
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"{p}: unreadable results file ({type(exc).__name__}: {str(exc)[:120]})") from None
    return conform(validate(df, str(p)))
