"""PNG plots of a results frame (matplotlib Agg, imported lazily): latency and throughput vs batch, drift."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl


def _label(r: dict) -> str:
    return f"{r['runner']} {r['precision']}"


def plot_results(df: pl.DataFrame, out_dir: str | os.PathLike[str]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    device = df["device_name"][0] if len(df) and "device_name" in df.columns else ""
    lat = df.filter((pl.col("measurement") == "latency") & (pl.col("status") == "ok"))
    if len(lat):
        groups = lat.partition_by(["runner", "precision", "artifact"], maintain_order=True)
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for g in groups:
            g = g.sort("batch_size")
            r = g.row(0, named=True)
            (line,) = ax.plot(g["batch_size"], g["latency_p50_ms"], marker="o", label=f"{_label(r)} p50")
            ax.plot(g["batch_size"], g["latency_p99_ms"], ls="--", color=line.get_color(), label=f"{_label(r)} p99")
        ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="latency per execution (ms)",
               title=f"Latency vs batch: {device}")
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
        written.append(_save(fig, out / "latency_vs_batch.png"))
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for g in groups:
            g = g.sort("batch_size")
            ax.plot(g["batch_size"], g["throughput_img_s"], marker="o", label=_label(g.row(0, named=True)))
        ax.set(xscale="log", xlabel="batch size", ylabel="throughput (images/s)", title=f"Throughput: {device}")
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
        written.append(_save(fig, out / "throughput_vs_batch.png"))
    acc = df.filter((pl.col("measurement") == "accuracy") & (pl.col("status") == "ok"))
    if len(acc):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        labels = [_label(r) for r in acc.iter_rows(named=True)]
        ax.bar(labels, acc["vertex_drift_mean_mm"].to_list(), label="mean")
        ax.bar(labels, acc["vertex_drift_p99_mm"].to_list(), alpha=0.4, label="p99")
        ax.set(ylabel="vertex drift vs torch fp32 eager (mm)", xlabel="runner / precision",
               title=f"Accuracy drift: {device}")
        ax.legend()
        plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
        written.append(_save(fig, out / "drift_per_precision.png"))
    return written


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
