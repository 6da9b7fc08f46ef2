"""Accuracy of a deployed graph versus PyTorch FP32 eager on the same crops: the one place drift is computed.

Drift is measured in the units users care about: vertex error in millimetres (mean, p99, max over
all vertices of all crops, and the mean per hand region), uv error in crop pixels (x224), joint
drift when a regressor is known and, when the set has labels, the task metrics (PA-MPVPE, PA-MPJPE,
F@5/F@15) of each graph against ground truth. Everything here needs numpy only (polars for
`measure_drift`'s frame), so a bare GPU image can use `drift_row` too.

Regions: each of the 778 vertices belongs to the geometrically nearest joint of the *mean hand*
(mean vertices and mean joints of the set's labels, each sample rigidly aligned first); joints in
FreiHAND order 1-4 -> thumb, 6-8 -> index, 10-12 -> middle, 14-16 -> ring, 18-20 -> little and
0, 5, 9, 13, 17 (wrist and knuckles) -> palm. No MANO file or regressor is needed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import DEFAULT_CONFIG
from .errors import UsageError

REGIONS = ("thumb", "index", "middle", "ring", "little", "palm")
REGION_COLUMNS = tuple(f"vertex_drift_mean_mm_{r}" for r in REGIONS)
_PALM = REGIONS.index("palm")
# Region index of each of the 21 joints (FreiHAND order: wrist, then 4 joints per finger, base to tip).
# The thumb's base joint (1, its CMC) belongs to the thumb; the other fingers' base joints (knuckles) to the palm.
JOINT_REGION = np.array([_PALM, 0, 0, 0, 0, _PALM, 1, 1, 1, _PALM, 2, 2, 2, _PALM, 3, 3, 3, _PALM, 4, 4, 4],
                        dtype=np.int64)


# -- core numbers ----------------------------------------------------------------------------------

def vertex_drift_mm(ref: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> np.ndarray:
    """Per-sample, per-vertex distance (N, V) in millimetres between two output sets (vertices in metres)."""
    v_out = np.asarray(out["vertices"], dtype=np.float32)
    v_ref = np.asarray(ref["vertices"], dtype=np.float32)
    if v_out.shape != v_ref.shape:
        raise UsageError(f"vertices: shape {v_out.shape} vs reference {v_ref.shape}; compare the same crops")
    return np.linalg.norm(v_out - v_ref, axis=-1) * 1000


def drift_row(ref: dict[str, np.ndarray], out: dict[str, np.ndarray], regions: np.ndarray | None = None
              ) -> dict[str, float | None]:
    """Drift of one output set against the reference (vertices in metres, uv in [0,1] of the crop).

    `uv` is optional (a vertices-only caller gets the vertex keys); `regions` ((V,) region index per
    vertex, see `vertex_regions`) adds `vertex_drift_mean_mm_<region>` for each of REGIONS.
    """
    v = vertex_drift_mm(ref, out)
    row: dict[str, float | None] = {"vertex_drift_mean_mm": float(v.mean()),
                                    "vertex_drift_p99_mm": float(np.percentile(v, 99)),
                                    "vertex_drift_max_mm": float(v.max())}
    if "uv" in out and "uv" in ref:
        uv = np.linalg.norm(np.asarray(out["uv"], np.float32) - np.asarray(ref["uv"], np.float32), axis=-1) * 224
        row.update(uv_drift_mean_px=float(uv.mean()), uv_drift_max_px=float(uv.max()))
    if regions is not None:
        row.update(region_drift(v.mean(axis=0), regions))
    return row


def region_drift(per_vertex_mm: np.ndarray, regions: np.ndarray) -> dict[str, float | None]:
    """Mean of a (V,) per-vertex drift over each region's vertices (None for a region without vertices)."""
    per_vertex_mm = np.asarray(per_vertex_mm, dtype=np.float64)
    if per_vertex_mm.shape != regions.shape:
        raise UsageError(f"regions: {regions.shape} labels for {per_vertex_mm.shape} vertices")
    return {col: float(per_vertex_mm[regions == k].mean()) if np.any(regions == k) else None
            for k, col in enumerate(REGION_COLUMNS)}


# -- hand regions ----------------------------------------------------------------------------------

def _rotation(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Proper rotation R (3x3) minimising |src @ R.T - dst| for centred point sets (Kabsch)."""
    u, _, vt = np.linalg.svd(dst.T @ src)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    return u @ np.diag([1.0, 1.0, d]) @ vt


def mean_hand(vertices: np.ndarray, joints: np.ndarray, iterations: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Mean (V,3) vertices and (21,3) joints of labelled hands, each rigidly aligned to the running mean.

    Samples are made wrist-relative and rotated onto the mean (generalised Procrustes, no scale) so the
    mean is a hand, not a blur of hands in different poses; vertices and joints share each sample's
    rotation, so the nearest-joint assignment stays consistent.
    """
    v = np.asarray(vertices, dtype=np.float64)
    j = np.asarray(joints, dtype=np.float64)
    if v.ndim != 3 or j.ndim != 3 or v.shape[-1] != 3 or j.shape[1:] != (21, 3) or len(v) != len(j) or not len(v):
        raise UsageError(f"mean hand: need (N,V,3) vertices and (N,21,3) joints, got {v.shape} and {j.shape}")
    root = j[:, :1]
    v, j = v - root, j - root
    target = v[0]
    for _ in range(iterations):
        rots = np.stack([_rotation(s, target) for s in v])
        v_al = np.einsum("nij,nvj->nvi", rots, v)
        target = v_al.mean(axis=0)
    j_al = np.einsum("nij,nvj->nvi", rots, j)
    return v_al.mean(axis=0), j_al.mean(axis=0)


def vertex_regions(mean_vertices: np.ndarray, mean_joints: np.ndarray) -> np.ndarray:
    """(V,) region index (into REGIONS) of each vertex: the region of its geometrically nearest joint."""
    d = np.linalg.norm(np.asarray(mean_vertices)[:, None, :] - np.asarray(mean_joints)[None, :, :], axis=-1)
    return JOINT_REGION[np.argmin(d, axis=1)]


class HandRegions:
    """The mean hand of a labelled set and its vertex regions (None-safe: `from_labels` may return None)."""

    def __init__(self, mean_vertices: np.ndarray, mean_joints: np.ndarray) -> None:
        self.mean_vertices = mean_vertices
        self.mean_joints = mean_joints
        self.regions = vertex_regions(mean_vertices, mean_joints)

    @classmethod
    def from_labels(cls, vertices: np.ndarray | None, joints: np.ndarray | None) -> HandRegions | None:
        if vertices is None or joints is None or not len(vertices):
            return None
        return cls(*mean_hand(vertices, joints))


# -- rows ------------------------------------------------------------------------------------------

def accuracy_row(ref: dict[str, np.ndarray], out: dict[str, np.ndarray], labels: dict[str, np.ndarray | None],
                 regressor: np.ndarray | None = None, regions: np.ndarray | None = None) -> dict[str, Any]:
    """Drift (mm, px, per region) vs the reference; joint drift with a regressor; metrics vs labels when present."""
    from .metrics import evaluate

    row: dict[str, Any] = {"num_samples": len(out["vertices"]), **drift_row(ref, out, regions)}
    if regressor is not None:
        j_out, j_ref = regressor @ out["vertices"], regressor @ ref["vertices"]
        row["joint_drift_mean_mm"] = float(np.linalg.norm(j_out - j_ref, axis=-1).mean() * 1000)
    if labels.get("vertices") is not None:
        pj = regressor @ out["vertices"] if regressor is not None and labels.get("xyz") is not None else None
        m = evaluate(pj, labels.get("xyz") if pj is not None else None, out["vertices"], labels["vertices"])
        row.update({"pa_mpvpe_mm": m.get("pa_mpvpe_mm"), "pa_mpjpe_mm": m.get("pa_mpjpe_mm"), "f5": m.get("f5"),
                    "f15": m.get("f15")})
    return row


def eager_reference(model: Any, images: np.ndarray, batch_size: int = 8) -> dict[str, np.ndarray]:
    from .predict import run_model

    return run_model(model, images, "cpu", batch_size)


def set_regressor(cal: Any, regressor: np.ndarray | None) -> np.ndarray | None:
    """The regressor for joint metrics: the given one, else a synthetic set's own, else None."""
    if regressor is None and str(cal.manifest.get("source", "")).startswith("synthetic"):
        from .data.synthetic import regressor as synthetic_regressor

        return synthetic_regressor()
    return regressor


def measure_drift(
    onnx_paths: Sequence[str | os.PathLike[str]],
    calib: str | os.PathLike[str],
    *,
    model: Any = None,
    checkpoint: str | os.PathLike[str] | None = None,
    config: str = DEFAULT_CONFIG,
    batch_size: int = 8,
    regressor: np.ndarray | None = None,
    per_vertex: dict[str, np.ndarray] | None = None,
) -> Any:
    """One row per graph (polars): precision, drift vs eager FP32, PA-MPVPE / PA-MPJPE vs labels when present.

    Any ONNX graph with the model's `image` input and `uv`/`vertices` outputs works, with or without
    our sidecar. Joint metrics need joints = regressor @ vertices: synthetic sets bring their own
    regressor; for FreiHAND crops pass the MANO-derived one (`joints.load_regressor`), else they are
    left out. Region columns need the set's vertex and joint labels. `per_vertex`, when given, receives
    each artifact's (V,) mean per-vertex drift in mm (for drift maps).
    """
    import polars as pl

    from .calibration import load_calibration_set
    from .metrics import evaluate
    from .ort import graph_kind, make_session, run

    if not onnx_paths:
        raise UsageError("give at least one --onnx graph")
    cal = load_calibration_set(calib)
    if model is None:
        from .checkpoint import load_checkpoint

        model, _ = load_checkpoint(checkpoint, config)
    regressor = set_regressor(cal, regressor)
    hand = HandRegions.from_labels(cal.vertices, cal.xyz)
    labels = {"uv": cal.uv, "xyz": cal.xyz, "vertices": cal.vertices}
    ref = eager_reference(model, cal.images, batch_size)
    eager = {}
    if cal.vertices is not None:
        eager["eager_pa_mpvpe_mm"] = evaluate(None, None, ref["vertices"], cal.vertices)["pa_mpvpe_mm"]
    if cal.xyz is not None and regressor is not None:
        eager["eager_pa_mpjpe_mm"] = evaluate(regressor @ ref["vertices"], cal.xyz, None, None)["pa_mpjpe_mm"]
    rows = []
    for path in onnx_paths:
        out = run(make_session(path), cal.images, batch_size)
        row: dict[str, Any] = {"artifact": str(path), "precision": graph_kind(path),
                               "int8_target": _int8_target(path)}
        row.update(accuracy_row(ref, out, labels, regressor, hand.regions if hand else None))
        row.update(eager)
        rows.append(row)
        if per_vertex is not None:
            per_vertex[str(path)] = vertex_drift_mm(ref, out).mean(axis=0)
    return pl.DataFrame(rows)


@dataclass(frozen=True)
class DriftConfig:
    """`simplehand-deploy drift`: graphs, crops, reference weights; every default is the command's."""

    onnx: tuple[Path, ...]
    calib: Path
    checkpoint: Path | None = None  # None: seed-initialised weights (announced unless quiet)
    config: str = DEFAULT_CONFIG
    mano: Path | None = None  # None: joint metrics only where the set brings its own regressor
    progress: bool = True  # notes on stderr (the seed-weights one)

    @classmethod
    def from_cli(cls, *, quiet: bool = False, **options: Any) -> DriftConfig:
        """Options left at None take the defaults above; the --onnx list becomes a tuple and must not be empty."""
        given: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                 for k, v in options.items() if v is not None}
        cfg = cls(progress=not quiet, **given)
        if not cfg.onnx:
            raise UsageError("give at least one --onnx graph")
        return cfg


def run_drift(cfg: DriftConfig) -> Any:
    """Load the reference weights (seed weights announced) and the regressor, measure; the rows (polars)."""
    from .checkpoint import load_announced

    model, _ = load_announced(cfg.checkpoint, cfg.config, announce=cfg.progress)
    regressor = None
    if cfg.mano is not None:
        from .joints import load_regressor

        regressor = load_regressor(cfg.mano)
    return measure_drift(cfg.onnx, cfg.calib, model=model, regressor=regressor)


def _int8_target(path: str | os.PathLike[str]) -> str | None:
    """The TensorRT target an INT8 artifact's sidecar names (trt10 / trt8); None without one."""
    from .artifact import OnnxArtifact

    art = OnnxArtifact.read_or_none(path)
    return art.int8_target if art is not None else None


def render_table(df: Any, title: str = "drift vs PyTorch FP32 eager") -> Any:
    from rich.table import Table

    table = Table(title=title)
    cols = [c for c in df.columns if c != "artifact" and c not in REGION_COLUMNS]
    table.add_column("artifact")
    for c in cols:
        table.add_column(c, justify="right")
    for r in df.iter_rows(named=True):
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in (r[c] for c in cols)]
        table.add_row(Path(r["artifact"]).name, *cells)
    return table
