"""Accuracy runs of the harness: inference through a runner, rows from `drift.accuracy_row`, drift maps.

The numbers themselves are computed in one place, `simplehand_deploy.drift`; this module only feeds
it runner outputs and draws where on the hand the drift is (`drift_map_<runner>_<precision>.png`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..drift import REGIONS, HandRegions, accuracy_row, drift_row, vertex_drift_mm
from ..env import slug

__all__ = ["DriftMaps", "accuracy_row", "drift_row", "infer_all", "plot_drift_map"]


def infer_all(runner: Any, images: np.ndarray, batch_size: int = 8) -> dict[str, np.ndarray]:
    outs: dict[str, list[np.ndarray]] = {"uv": [], "vertices": []}
    for i in range(0, len(images), batch_size):
        o = runner.infer(images[i : i + batch_size])
        outs["uv"].append(o["uv"])
        outs["vertices"].append(o["vertices"])
    return {k: np.concatenate(v) for k, v in outs.items()}


# (name, horizontal axis, vertical axis) of the three orthographic views of the mean hand
_VIEWS = (("front (x-y)", 0, 1), ("side (z-y)", 2, 1), ("top (x-z)", 0, 2))


def plot_drift_map(mean_vertices: np.ndarray, per_vertex_mm: np.ndarray, path: str | os.PathLike[str],
                   title: str = "", regions: np.ndarray | None = None) -> Path:
    """PNG: the mean hand's vertices from three views, coloured by mean drift, with a colour bar in mm.

    No mesh faces (MANO is never shipped): a dense point cloud of 778 vertices reads as a hand. Points
    are drawn far to near so the nearer surface is on top. With `regions`, each region's mean drift
    is listed under the views.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..fileio import atomic_path

    v = np.asarray(mean_vertices, dtype=np.float64) * 1000  # mm
    d = np.asarray(per_vertex_mm, dtype=np.float64)
    if v.shape != (len(d), 3):
        raise ValueError(f"drift map: {v.shape} vertices for {d.shape} drift values")
    fig, axes = plt.subplots(1, 3, figsize=(11, 4.2))
    vmax = float(d.max()) if d.size and d.max() > 0 else 1.0
    sc = None
    for ax, (name, h, w) in zip(axes, _VIEWS, strict=True):
        depth = ({0, 1, 2} - {h, w}).pop()
        order = np.argsort(v[:, depth] if name.startswith("side") else -v[:, depth])
        sc = ax.scatter(v[order, h], v[order, w], c=d[order], s=9, cmap="inferno", vmin=0.0, vmax=vmax,
                        edgecolors="none")
        ax.set_aspect("equal")
        if w == 1:
            ax.invert_yaxis()  # camera y points down: fingers up, as in the crop
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("mm", fontsize=8)
        ax.tick_params(labelsize=7)
    assert sc is not None
    cbar = fig.colorbar(sc, ax=list(axes), shrink=0.85, pad=0.02)
    cbar.set_label("mean vertex drift vs FP32 eager (mm)")
    if regions is not None:
        parts = [f"{r} {d[regions == k].mean():.3g}" for k, r in enumerate(REGIONS) if np.any(regions == k)]
        fig.text(0.02, 0.02, "mean per region (mm): " + ", ".join(parts), fontsize=8)
    fig.suptitle(title or "vertex drift on the mean hand", fontsize=10)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return out


class DriftMaps:
    """Collects each runner x precision's per-vertex mean drift during an accuracy run; `write` draws them."""

    def __init__(self, hand: HandRegions | None) -> None:
        self.hand = hand
        self.maps: dict[tuple[str, str], np.ndarray] = {}

    def add(self, runner: str, precision: str, ref: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> None:
        if self.hand is not None:
            self.maps[(runner, precision)] = vertex_drift_mm(ref, out).mean(axis=0)

    def write(self, folder: str | os.PathLike[str], subtitle: str = "") -> list[Path]:
        """`drift_map_<runner>_<precision>.png` per collected pair (none without a labelled set)."""
        if self.hand is None:
            return []
        written = []
        for (runner, precision), per_vertex in self.maps.items():
            title = f"vertex drift: {runner} {precision} vs torch FP32 eager" + (f" ({subtitle})" if subtitle else "")
            written.append(plot_drift_map(self.hand.mean_vertices, per_vertex,
                                          Path(folder) / f"drift_map_{slug(runner)}_{slug(precision)}.png",
                                          title, self.hand.regions))
        return written
