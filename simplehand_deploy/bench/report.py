"""Fleet report: results from many devices merged into one table and two plots.

Deciding where to ship (an Orin Nano at INT8, or a desktop GPU at FP16?) needs the devices side by
side: one row per (device, runner, precision, batch) with latency, throughput, speedup and the
accuracy drift that precision costs. Each device contributes its newest run; older runs of the same
device are dropped (and said so) because a fleet snapshot with two answers per device is ambiguous.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from ..errors import UsageError
from ..fileio import atomic_path

if TYPE_CHECKING:
    import polars as pl
    from rich.table import Table

SUMMARY_COLUMNS = (
    "device_name", "runner", "precision", "batch_size", "status", "timing_scope", "latency_p50_ms",
    "latency_p99_ms", "throughput_img_s", "speedup_vs_eager", "vertex_drift_mean_mm", "vertex_drift_max_mm",
)


def merge_results(paths: Sequence[Path]) -> tuple[pl.DataFrame, list[str]]:
    """Read every path (run folders, results files, baselines) into one frame; newest run per device wins.

    Returns the merged frame and notes about runs that were dropped.
    """
    import polars as pl

    from .baseline import load_frame

    if not paths:
        raise UsageError("report: give at least one results folder or file")
    frames = []
    for p in paths:
        df, _ = load_frame(Path(p), label="report input")
        if df.height:
            frames.append(df)
    if not frames:
        raise UsageError("report: the inputs hold no result rows")
    merged = pl.concat(frames, how="diagonal_relaxed")
    for col in ("device_name", "device_slug", "run_id"):
        if col not in merged.columns:
            raise UsageError(f"report: results lack the {col!r} column; were they written by simplehand-bench run?")
    runs = merged.select("device_slug", "run_id").unique().sort("run_id")
    newest = runs.group_by("device_slug").agg(pl.col("run_id").max())
    notes = [f"device {r['device_slug']}: older run {r['run_id']} dropped (newest run per device is reported)"
             for r in runs.join(newest, on=["device_slug", "run_id"], how="anti").iter_rows(named=True)]
    return merged.join(newest, on=["device_slug", "run_id"], how="semi"), notes


def summary_frame(df: pl.DataFrame) -> pl.DataFrame:
    """One row per (device, runner, precision, batch): latency figures joined with that precision's drift."""
    import polars as pl

    ident = ["device_name", "runner", "precision"]
    lat = df.filter(pl.col("measurement") == "latency")
    acc = (
        df.filter((pl.col("measurement") == "accuracy") & (pl.col("status") == "ok"))
        .group_by(ident)
        .agg(pl.col("vertex_drift_mean_mm").mean(), pl.col("vertex_drift_max_mm").max())
    )
    out = lat.drop([c for c in ("vertex_drift_mean_mm", "vertex_drift_max_mm") if c in lat.columns])
    out = out.join(acc, on=ident, how="left")
    for col in SUMMARY_COLUMNS:
        if col not in out.columns:
            out = out.with_columns(pl.lit(None, dtype=pl.Float64).alias(col))
    return out.select(SUMMARY_COLUMNS).sort(["device_name", "runner", "precision", "batch_size"])


def _fmt(value: object, digits: int = 3) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def to_markdown(summary: pl.DataFrame, notes: Sequence[str] = ()) -> str:
    """report.md: title, devices, notes, then one table row per summary row (polars' markdown layout)."""
    from .results import markdown_rows

    devices = summary["device_name"].unique().sort().to_list()
    lines = [f"# SimpleHand fleet report ({len(devices)} device{'s' if len(devices) != 1 else ''})", ""]
    lines += [f"- {d}" for d in devices] + [""]
    lines += [f"> {n}" for n in notes] + ([""] if notes else [])
    header = ("device", "runner", "precision", "batch", "status", "timing", "p50 ms", "p99 ms", "img/s",
              "speedup", "drift mean mm", "drift max mm")
    return "\n".join(lines) + "\n" + markdown_rows(header, ([_fmt(v) for v in r] for r in summary.iter_rows()))


def render_table(summary: pl.DataFrame) -> Table:
    from rich.table import Table

    table = Table(title="fleet report")
    for col in SUMMARY_COLUMNS:
        table.add_column(col, justify="right" if summary.schema[col].is_numeric() else "left")
    for r in summary.iter_rows():
        table.add_row(*(_fmt(v) for v in r))
    return table


def plot_throughput(summary: pl.DataFrame, path: Path) -> None:
    """Bars: best throughput (over batch sizes) per device, one bar per runner/precision."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import polars as pl

    ok = summary.filter((pl.col("status") == "ok") & pl.col("throughput_img_s").is_not_null())
    best = ok.group_by(["device_name", "runner", "precision"]).agg(pl.col("throughput_img_s").max())
    devices = sorted(best["device_name"].unique().to_list())
    series = sorted({(r, p) for r, p in best.select("runner", "precision").iter_rows()})
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(devices) * max(1, len(series)) / 3), 4.5))
    width = 0.8 / max(1, len(series))
    lookup = {(d, r, p): v for d, r, p, v in best.iter_rows()}
    for i, (runner, prec) in enumerate(series):
        xs = [j + i * width for j in range(len(devices))]
        ax.bar(xs, [lookup.get((d, runner, prec), 0.0) for d in devices], width, label=f"{runner} {prec}")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(devices))], devices, rotation=15, ha="right")
    ax.set_ylabel("throughput (img/s, best batch)")
    ax.set_title("Throughput per device x precision")
    if series:
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def plot_latency_vs_batch(summary: pl.DataFrame, path: Path) -> None:
    """One panel per device: p50 latency against batch size, one line per runner/precision."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import polars as pl

    ok = summary.filter((pl.col("status") == "ok") & pl.col("latency_p50_ms").is_not_null())
    devices = sorted(ok["device_name"].unique().to_list()) or ["(no data)"]
    fig, axes = plt.subplots(1, len(devices), figsize=(4.5 * len(devices), 4), squeeze=False)
    for ax, dev in zip(axes[0], devices, strict=True):
        part = ok.filter(pl.col("device_name") == dev)
        for (runner, prec), grp in sorted(part.group_by(["runner", "precision"]), key=lambda g: g[0]):
            grp = grp.sort("batch_size")
            ax.plot(grp["batch_size"].to_list(), grp["latency_p50_ms"].to_list(), marker="o", label=f"{runner} {prec}")
        from .plots import batch_axis

        batch_axis(ax, part["batch_size"].drop_nulls().to_list())
        ax.set_xlabel("batch size")
        ax.set_ylabel("latency p50 (ms)")
        ax.set_title(dev, fontsize=9)
        if part.height:
            ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


class FleetReport(NamedTuple):
    """What `write_report` wrote: report.md's path, the summary frame, notes (unpacks as the three)."""

    md: Path
    summary: pl.DataFrame
    notes: list[str]

    @property
    def devices(self) -> int:
        return int(self.summary["device_name"].n_unique())

    def line(self) -> str:
        """The closing line: how many devices and rows went where."""
        return f"report: {self.devices} device(s), {self.summary.height} rows -> {self.md}"


def write_report(paths: Sequence[Path], out_dir: Path) -> FleetReport:
    """Merge, summarise and write report.md/.csv/.parquet + throughput.png + latency_vs_batch.png to out_dir.

    Returns (path of report.md, the summary frame, notes).
    """
    merged, notes = merge_results(paths)
    summary = summary_frame(merged)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "report.md"
    with atomic_path(md) as tmp:
        tmp.write_text(to_markdown(summary, notes))
    with atomic_path(out_dir / "report.csv") as tmp:
        summary.write_csv(tmp)
    with atomic_path(out_dir / "report.parquet") as tmp:
        merged.write_parquet(tmp)
    plot_throughput(summary, out_dir / "throughput.png")
    plot_latency_vs_batch(summary, out_dir / "latency_vs_batch.png")
    return FleetReport(md, summary, list(notes))
