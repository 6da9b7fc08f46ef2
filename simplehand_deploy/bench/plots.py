"""PNG plots of a results frame (matplotlib Agg, imported lazily): latency and throughput vs batch, drift.

Read at a glance: batch sizes are plain tick labels (1, 2, 4, 8 — not "2×10⁰"), latency is the p50
line with its spread as a band (p50..p90 darker, p90..p99 lighter), ONNX Runtime FP16/INT8 timed on a
CPU are drawn dashed and labelled "CPU simulation" (they simulate TensorRT precision, they are not what
FP16/INT8 buys on a GPU), and the title names the model, the device and the CPU threads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import polars as pl


def is_cpu_simulation(r: dict) -> bool:
    """ONNX Runtime FP16/INT8 on a CPU: a simulation of TensorRT precision, not a deployment figure."""
    return (r.get("runner") == "onnxruntime" and r.get("precision") not in ("fp32", "", None)
            and not str(r.get("timing_scope") or "").startswith(("gpu", "end_to_end")))


def _label(r: dict) -> str:
    extra = " (CPU simulation)" if is_cpu_simulation(r) else ""
    unfused = " (unfused)" if r.get("runner") == "torch_eager" and r.get("fused") is False else ""
    return f"{r['runner']} {r['precision']}{unfused}{extra}"


def title_of(df: pl.DataFrame, what: str) -> str:
    """'<what>: <model> on <device>, <n> CPU thread(s)' from the frame's config/device/cpu_threads columns."""
    def values(col: str) -> list[str]:
        if col not in df.columns:
            return []
        return sorted({str(v) for v in df[col].to_list() if v not in (None, "")})

    model = "/".join(values("config")) or "model"
    device = "/".join(values("device_name")) or "this device"
    threads = values("cpu_threads")
    tail = f", {'/'.join(threads)} CPU thread{'s' if threads != ['1'] else ''}" if threads else ""
    return f"{what}: {model} on {device}{tail}"


def batch_axis(ax: Any, batches: list[int]) -> None:
    """Log2 spacing, but every measured batch size as a plain integer tick label and no minor ticks."""
    from matplotlib.ticker import FixedLocator, NullLocator

    ticks = sorted({int(b) for b in batches})
    if len(ticks) > 1:
        ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(ticks, [str(b) for b in ticks])


def _plain_y(ax: Any) -> None:
    """Log-scaled y with plain numbers ("20", "40"), not "2×10¹"."""
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)


def plot_results(df: pl.DataFrame, out_dir: str | os.PathLike[str]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    lat = df.filter((pl.col("measurement") == "latency") & (pl.col("status") == "ok")
                    & pl.col("batch_size").is_not_null())
    if len(lat):
        groups = lat.partition_by(["runner", "precision", "artifact"], maintain_order=True)
        batches = lat["batch_size"].to_list()
        fig, ax = plt.subplots(figsize=(7.5, 4.8))
        for g in groups:
            g = g.sort("batch_size")
            r = g.row(0, named=True)
            ls = "--" if is_cpu_simulation(r) else "-"
            (line,) = ax.plot(g["batch_size"], g["latency_p50_ms"], marker="o", ls=ls, label=f"{_label(r)} p50")
            ax.fill_between(g["batch_size"], g["latency_p50_ms"], g["latency_p90_ms"], color=line.get_color(),
                            alpha=0.25, lw=0)
            ax.fill_between(g["batch_size"], g["latency_p90_ms"], g["latency_p99_ms"], color=line.get_color(),
                            alpha=0.1, lw=0)
        ax.set(yscale="log", xlabel="batch size", ylabel="latency per execution (ms); band: p50-p90-p99",
               title=title_of(lat, "Latency vs batch"))
        batch_axis(ax, batches)
        _plain_y(ax)
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
        written.append(_save(fig, out / "latency_vs_batch.png"))
        fig, ax = plt.subplots(figsize=(7.5, 4.8))
        for g in groups:
            g = g.sort("batch_size")
            r = g.row(0, named=True)
            ax.plot(g["batch_size"], g["throughput_img_s"], marker="o", ls="--" if is_cpu_simulation(r) else "-",
                    label=_label(r))
        ax.set(xlabel="batch size", ylabel="throughput (images/s, from mean latency)",
               title=title_of(lat, "Throughput"))
        batch_axis(ax, batches)
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
        written.append(_save(fig, out / "throughput_vs_batch.png"))
    acc = df.filter((pl.col("measurement") == "accuracy") & (pl.col("status") == "ok"))
    if len(acc):
        fig, ax = plt.subplots(figsize=(7.5, 4.8))
        labels = [_label(r) for r in acc.iter_rows(named=True)]
        ax.bar(labels, acc["vertex_drift_mean_mm"].to_list(), label="mean")
        ax.bar(labels, acc["vertex_drift_p99_mm"].to_list(), alpha=0.4, label="p99")
        ax.set(ylabel="vertex drift vs torch fp32 eager (mm)", xlabel="runner / precision",
               title=title_of(acc.drop("cpu_threads") if "cpu_threads" in acc.columns else acc, "Accuracy drift"))
        ax.legend()
        plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
        written.append(_save(fig, out / "drift_per_precision.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
