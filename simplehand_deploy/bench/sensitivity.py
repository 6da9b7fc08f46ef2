"""`simplehand-deploy int8-sensitivity`: the per-layer INT8 sensitivity table (`precision.sensitivity`) written as
a results folder: sensitivity.{parquet,csv,md}, summary.json, env.json and a bar plot of the top N layers."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..fileio import atomic_path

COLUMNS = ("layer", "op_type", "macs", "mac_share", "drift_activation_only_mm", "drift_weight_only_mm",
           "activation_inputs", "weight_quantised")


@dataclass(frozen=True)
class SensitivityConfig:
    """`simplehand-deploy int8-sensitivity`: the Q/DQ graph, the crops, the folder, the plot's length."""

    onnx: Path
    calib: Path
    out: Path
    top: int = 20
    progress: bool = True

    @classmethod
    def from_cli(cls, *, quiet: bool = False, **options: Any) -> SensitivityConfig:
        """Options left at None take the defaults above; checked before any work."""
        cfg = cls(progress=not quiet, **{k: v for k, v in options.items() if v is not None})
        if cfg.top < 1:
            raise UsageError(f"--top {cfg.top}: give at least 1")
        if not Path(cfg.onnx).is_file():
            raise UsageError(f"--onnx {cfg.onnx}: no such file")
        return cfg


def markdown(rows: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    from .results import markdown_rows

    def f(v: Any, spec: str) -> str:
        return "" if v is None else format(v, spec)

    head = (f"Per-layer INT8 sensitivity of `{summary['onnx']}` on {summary['crops']} crops: mean vertex drift (mm) "
            f"vs the same graph without Q/DQ; all quantised: {summary['drift_all_quantised_mm']:.3f} mm.\n\n")
    ordered = sorted(rows, key=lambda r: -max(r["drift_activation_only_mm"] or 0, r["drift_weight_only_mm"] or 0))
    return head + markdown_rows(
        ("layer", "op", "MACs", "MAC share", "activation only (mm)", "weight only (mm)"),
        ((r["layer"], r["op_type"], f(r["macs"], "d"), f(None if r["mac_share"] is None else 100 * r["mac_share"],
                                                          ".2f") + ("%" if r["mac_share"] is not None else ""),
          f(r["drift_activation_only_mm"], ".3f"), f(r["drift_weight_only_mm"], ".3f")) for r in ordered))


def plot(rows: list[dict[str, Any]], path: Path, top: int, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = sorted(rows, key=lambda r: -max(r["drift_activation_only_mm"] or 0, r["drift_weight_only_mm"] or 0))
    sel = ordered[:top][::-1]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(sel) + 1.5))
    y = range(len(sel))
    ax.barh([i + 0.2 for i in y], [r["drift_activation_only_mm"] or 0 for r in sel], height=0.4,
            label="activation only INT8")
    ax.barh([i - 0.2 for i in y], [r["drift_weight_only_mm"] or 0 for r in sel], height=0.4, label="weight only INT8")
    ax.set_yticks(list(y))
    ax.set_yticklabels([f"{r['layer'][-48:]} ({100 * (r['mac_share'] or 0):.1f}% MACs)" for r in sel], fontsize=7)
    ax.set(xlabel="mean vertex drift vs the graph without Q/DQ (mm)", title=title)
    ax.legend(fontsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def run_sensitivity(cfg: SensitivityConfig) -> Path:
    """Measure and write the folder (every file atomically; only our own file names are written)."""
    import polars as pl

    from ..calibration import load_calibration_set
    from ..env import fingerprint, write_env_json
    from ..precision.sensitivity import layer_sensitivity

    images = load_calibration_set(cfg.calib).images
    rows, summary = layer_sensitivity(cfg.onnx, images, progress=cfg.progress)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    df = pl.DataFrame(rows, schema={"layer": pl.Utf8, "op_type": pl.Utf8, "macs": pl.Int64, "mac_share": pl.Float64,
                                    "activation_inputs": pl.Int64, "weight_quantised": pl.Boolean,
                                    "drift_activation_only_mm": pl.Float64, "drift_weight_only_mm": pl.Float64}
                      ).select(COLUMNS)
    env = fingerprint()
    writers = {"sensitivity.parquet": lambda p: df.write_parquet(p), "sensitivity.csv": lambda p: df.write_csv(p),
               "sensitivity.md": lambda p: p.write_text(markdown(rows, summary)),
               "summary.json": lambda p: p.write_text(json.dumps(summary, indent=2) + "\n")}
    for name, write in writers.items():
        with atomic_path(out / name) as tmp:
            write(tmp)
    write_env_json(out, env)
    plot(rows, out / "sensitivity_top.png", cfg.top,
         f"INT8 sensitivity, top {cfg.top}: {os.path.basename(str(cfg.onnx))} ({summary['crops']} crops)")
    return out
