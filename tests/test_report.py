"""Fleet report: two devices' results merge into one table and two plots."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from mdtable import table_rows
from test_regress import make_run

from simplehand_deploy.bench.report import merge_results, summary_frame, write_report
from simplehand_deploy.cli import _run, bench

PNG = b"\x89PNG\r\n\x1a\n"


def _write(df: pl.DataFrame, folder: Path) -> Path:
    from simplehand_deploy.bench.results import write_results

    return Path(write_results(df, folder))


def _two_devices(tmp_path: Path) -> tuple[Path, Path]:
    gpu = _write(make_run(), tmp_path / "results" / "20260101-000000-nvidia-h100-80gb-hbm3")
    orin = _write(make_run("NVIDIA Jetson Orin Nano", trt="8.6.2", run_id="20260102-000000-orin",
                           runners=(("tensorrt", "fp16"), ("tensorrt", "int8"))),
                  tmp_path / "results" / "20260102-000000-nvidia-jetson-orin-nano")
    return gpu, orin


def test_two_devices_one_table(tmp_path: Path) -> None:
    gpu, orin = _two_devices(tmp_path)
    md, summary, notes = write_report([gpu, orin], tmp_path / "report")
    assert notes == []
    assert set(summary["device_name"].unique()) == {"NVIDIA H100 80GB HBM3", "NVIDIA Jetson Orin Nano"}
    assert summary.height == 3 * 2 + 2 * 2  # latency rows: (runner, precision) x batches per device
    # drift of the matching accuracy row is joined onto every latency row of that precision
    int8 = summary.filter((pl.col("device_name") == "NVIDIA Jetson Orin Nano") & (pl.col("precision") == "int8"))
    assert int8["vertex_drift_mean_mm"].to_list() == [1.1, 1.1]
    text = md.read_text()
    rows = table_rows(text)
    assert len(rows) == summary.height and list(rows[0]) == [
        "device", "runner", "precision", "batch", "status", "timing", "p50 ms", "p99 ms", "img/s", "speedup",
        "drift mean mm", "drift max mm"]
    assert [r["device"] for r in rows].count("NVIDIA H100 80GB HBM3") == 6
    assert [r["device"] for r in rows].count("NVIDIA Jetson Orin Nano") == 4
    assert {r["drift mean mm"] for r in rows if r["device"] == "NVIDIA Jetson Orin Nano" and r["precision"] == "int8"} \
        == {"1.1"}
    for name in ("throughput.png", "latency_vs_batch.png"):
        data = (tmp_path / "report" / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000
    assert pl.read_csv(tmp_path / "report" / "report.csv").height == summary.height


def test_newest_run_per_device_wins(tmp_path: Path) -> None:
    gpu, _ = _two_devices(tmp_path)
    later = _write(make_run(run_id="20260301-000000-gpu"), tmp_path / "results" / "20260301-000000-nvidia-h100")
    merged, notes = merge_results([gpu, later])
    assert set(merged["run_id"].unique()) == {"20260301-000000-gpu"}
    assert len(notes) == 1 and "20260101-000000-gpu" in notes[0]
    assert summary_frame(merged).height == 6


def test_cli(tmp_path: Path) -> None:
    gpu, orin = _two_devices(tmp_path)
    assert _run(bench, ["report", str(gpu), str(orin), "--out", str(tmp_path / "r"), "--quiet"]) == 0
    assert "NVIDIA Jetson Orin Nano" in (tmp_path / "r" / "report.md").read_text()
    assert _run(bench, ["report", str(tmp_path / "missing"), "--out", str(tmp_path / "r2")]) == 2
