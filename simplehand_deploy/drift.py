"""Accuracy drift of ONNX artifacts versus PyTorch FP32 eager, on the same calibration crops.

Drift is measured in the units users care about: vertex error in millimetres (mean, p99, max over
all vertices of all crops), uv error in crop pixels (x224), and, when the set has labels, the task
metrics (PA-MPVPE) of each graph against ground truth.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .calibration import load_calibration_set
from .errors import UsageError


def drift_row(ref: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> dict[str, float]:
    """Drift of one output set against the reference (vertices in metres, uv in [0,1] of the crop)."""
    v = np.linalg.norm(out["vertices"] - ref["vertices"], axis=-1) * 1000
    uv = np.linalg.norm(out["uv"] - ref["uv"], axis=-1) * 224
    return {"vertex_drift_mean_mm": float(v.mean()), "vertex_drift_p99_mm": float(np.percentile(v, 99)),
            "vertex_drift_max_mm": float(v.max()), "uv_drift_mean_px": float(uv.mean()),
            "uv_drift_max_px": float(uv.max())}


def eager_reference(model: Any, images: np.ndarray, batch_size: int = 8) -> dict[str, np.ndarray]:
    from .predict import run_model

    return run_model(model, images, "cpu", batch_size)


def measure_drift(
    onnx_paths: Sequence[str | os.PathLike[str]],
    calib: str | os.PathLike[str],
    *,
    model: Any = None,
    checkpoint: str | os.PathLike[str] | None = None,
    config: str = "fastvit_ma36",
    batch_size: int = 8,
    regressor: np.ndarray | None = None,
) -> Any:
    """One row per graph (polars): precision, drift vs eager FP32, PA-MPVPE / PA-MPJPE vs labels when present.

    Joint metrics need joints = regressor @ vertices: synthetic sets bring their own regressor; for
    FreiHAND crops pass the MANO-derived one (`joints.load_regressor`), else they are left out.
    """
    import polars as pl

    from .metrics import evaluate
    from .ort import graph_kind, make_session, run

    if not onnx_paths:
        raise UsageError("give at least one --onnx graph")
    cal = load_calibration_set(calib)
    if model is None:
        from .checkpoint import load_checkpoint

        model, _ = load_checkpoint(checkpoint, config)
    if regressor is None and str(cal.manifest.get("source", "")).startswith("synthetic"):
        from .data.synthetic import regressor as synthetic_regressor

        regressor = synthetic_regressor()
    ref = eager_reference(model, cal.images, batch_size)
    rows = []
    for path in onnx_paths:
        out = run(make_session(path), cal.images, batch_size)
        row: dict[str, Any] = {"artifact": str(path), "precision": graph_kind(path), "num_samples": len(cal)}
        row.update(drift_row(ref, out))
        if cal.vertices is not None:
            row["pa_mpvpe_mm"] = evaluate(None, None, out["vertices"], cal.vertices)["pa_mpvpe_mm"]
            row["eager_pa_mpvpe_mm"] = evaluate(None, None, ref["vertices"], cal.vertices)["pa_mpvpe_mm"]
        if cal.xyz is not None and regressor is not None:
            row["pa_mpjpe_mm"] = evaluate(regressor @ out["vertices"], cal.xyz, None, None)["pa_mpjpe_mm"]
            row["eager_pa_mpjpe_mm"] = evaluate(regressor @ ref["vertices"], cal.xyz, None, None)["pa_mpjpe_mm"]
        rows.append(row)
    return pl.DataFrame(rows)


def render_table(df: Any, title: str = "drift vs PyTorch FP32 eager") -> Any:
    from rich.table import Table

    table = Table(title=title)
    cols = [c for c in df.columns if c != "artifact"]
    table.add_column("artifact")
    for c in cols:
        table.add_column(c, justify="right")
    for r in df.iter_rows(named=True):
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in (r[c] for c in cols)]
        table.add_row(Path(r["artifact"]).name, *cells)
    return table
