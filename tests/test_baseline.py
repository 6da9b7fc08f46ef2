"""Device baselines: write/read round trip, path resolution, and the `make baseline` / `make regress` flow."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from test_regress import make_run, slow_down

from simplehand_deploy.bench.baseline import load_frame, read_baseline, write_baseline
from simplehand_deploy.cli import _run, bench
from simplehand_deploy.errors import UsageError


def _write(df: pl.DataFrame, folder: Path) -> Path:
    from simplehand_deploy.bench.results import write_results

    return Path(write_results(df, folder))


def test_round_trip(tmp_path: Path) -> None:
    run = make_run()
    path = write_baseline(run, tmp_path)
    slug = run["device_slug"][0]
    assert path == tmp_path / f"{slug}.json" and (tmp_path / f"{slug}.parquet").is_file()
    doc = json.loads(path.read_text())
    assert doc["kind"] == "simplehand-baseline" and doc["device_name"] == "NVIDIA H100 80GB HBM3"
    assert len(doc["rows"]) == run.height
    back = read_baseline(path)
    assert_frame_equal(back.select(run.columns), run)
    assert_frame_equal(pl.read_parquet(tmp_path / f"{slug}.parquet"), run)
    assert not list(tmp_path.glob(".*partial"))


def test_refuses_mixed_devices_and_empty(tmp_path: Path) -> None:
    mixed = pl.concat([make_run(), make_run("Orin", run_id="x")])
    with pytest.raises(UsageError, match="exactly one device"):
        write_baseline(mixed, tmp_path)
    with pytest.raises(UsageError, match="no rows"):
        write_baseline(make_run().head(0), tmp_path)
    assert not list(tmp_path.iterdir())


def test_load_frame_resolution(tmp_path: Path) -> None:
    gpu, orin = make_run(), make_run("NVIDIA Jetson AGX Orin", run_id="20260101-000000-orin")
    write_baseline(gpu, tmp_path / "baselines")
    write_baseline(orin, tmp_path / "baselines")
    df, chosen = load_frame(tmp_path / "baselines", slug="nvidia-jetson-agx-orin")
    assert chosen.name == "nvidia-jetson-agx-orin.json" and df["device_name"][0] == "NVIDIA Jetson AGX Orin"
    with pytest.raises(UsageError, match="no baseline for device 'rtx'"):
        load_frame(tmp_path / "baselines", slug="rtx")
    with pytest.raises(UsageError, match="several baselines"):
        load_frame(tmp_path / "baselines")

    root = tmp_path / "results"
    _write(gpu, root / "20260101-000000-nvidia-h100-80gb-hbm3")
    newest = _write(slow_down(gpu, "tensorrt", "int8", 1, 2.0), root / "20260105-000000-nvidia-h100-80gb-hbm3")
    _write(orin, root / "20260109-000000-nvidia-jetson-agx-orin")
    _, picked = load_frame(root, slug="nvidia-h100-80gb-hbm3")
    assert picked == newest
    _, picked = load_frame(root)
    assert picked.name.endswith("orin")
    with pytest.raises(UsageError, match="does not exist"):
        load_frame(tmp_path / "missing")


def test_make_baseline_then_regress_flow(tmp_path: Path) -> None:
    """What `make baseline` and `make regress` run: baselines folder + results root, picked by device slug."""
    root, baselines = tmp_path / "results", tmp_path / "baselines"
    run = make_run()
    _write(run, root / "20260101-000000-nvidia-h100-80gb-hbm3")
    assert _run(bench, ["baseline", "--from", str(root), "--out", str(baselines)]) == 0
    assert (baselines / "nvidia-h100-80gb-hbm3.json").is_file()
    _write(run, root / "20260102-000000-nvidia-h100-80gb-hbm3")
    assert _run(bench, ["regress", "--baseline", str(baselines), "--current", str(root), "--quiet"]) == 0
    _write(slow_down(run, "onnxruntime", "fp16", 8, 1.3), root / "20260103-000000-nvidia-h100-80gb-hbm3")
    assert _run(bench, ["regress", "--baseline", str(baselines), "--current", str(root), "--quiet"]) == 1
    assert _run(bench, ["baseline", "--from", str(tmp_path / "nothing")]) == 2


def test_record_baseline_says_what_it_wrote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from simplehand_deploy.bench.baseline import record_baseline

    run = make_run()
    folder = _write(run, tmp_path / "results" / "20260101-000000-nvidia-h100-80gb-hbm3")
    rec = record_baseline(tmp_path / "results", tmp_path / "b")
    assert (rec.json, rec.parquet) == (tmp_path / "b" / "nvidia-h100-80gb-hbm3.json",
                                       tmp_path / "b" / "nvidia-h100-80gb-hbm3.parquet")
    assert rec.rows == run.height and rec.source == folder and rec.parquet.is_file()
    assert _run(bench, ["baseline", "--from", str(folder), "--out", str(tmp_path / "c")]) == 0
    assert capsys.readouterr().err.strip() == (f"baseline: wrote {tmp_path / 'c' / 'nvidia-h100-80gb-hbm3.json'} and "
                                               f"nvidia-h100-80gb-hbm3.parquet ({run.height} rows from {folder})")


def test_samples_stay_in_the_parquet_and_reach_the_gate(tmp_path: Path) -> None:
    """The reviewed JSON carries no per-iteration samples; reading the baseline attaches them from the .parquet."""
    lat = pl.col("measurement") == "latency"
    run = make_run().with_columns(pl.when(lat).then(pl.lit([4.0, 4.1, 3.9, 4.2])).otherwise(None)
                                  .alias("latency_samples_ms"))
    path = write_baseline(run, tmp_path)
    assert all("latency_samples_ms" not in row for row in json.loads(path.read_text())["rows"])
    back = read_baseline(path)
    assert back["latency_samples_ms"].to_list() == run["latency_samples_ms"].to_list()
    # a parquet that no longer matches the JSON's rows is ignored (summary columns still gate)
    run.head(3).write_parquet(path.with_suffix(".parquet"))
    assert "latency_samples_ms" not in read_baseline(path).columns


def _scaled(run: pl.DataFrame, factor: float, run_id: str) -> pl.DataFrame:
    """The same run with every latency figure scaled (a slower or faster moment of a shared machine)."""
    lat = pl.col("measurement") == "latency"
    return run.with_columns(
        *[pl.when(lat).then(pl.col(c) * factor).otherwise(pl.col(c)).alias(c)
          for c in ("latency_p50_ms", "latency_mean_ms")],
        pl.when(lat).then(pl.col("throughput_img_s") / factor).otherwise(pl.col("throughput_img_s"))
        .alias("throughput_img_s"),
        pl.lit(run_id).alias("run_id"))


def test_pool_runs_records_the_run_to_run_spread() -> None:
    import math

    import numpy as np

    from simplehand_deploy.bench.baseline import pool_runs

    lat = pl.col("measurement") == "latency"
    run = make_run().with_columns(pl.when(lat).then(pl.lit([4.0, 4.1])).otherwise(None).alias("latency_samples_ms"))
    factors = (1.0, 1.5, 0.8)
    runs = [_scaled(run, f, f"r{i}") for i, f in enumerate(factors)]
    # one row errored in the last run: it keeps the first run's values and is judged as a single run
    runs[2] = runs[2].with_columns(pl.when(lat & (pl.col("runner") == "tensorrt") & (pl.col("batch_size") == 8))
                                   .then(pl.lit("error: boom")).otherwise(pl.col("status")).alias("status"))
    pooled = pool_runs(runs)
    assert pooled.height == run.height
    rows = {(r["runner"], r["precision"], r["batch_size"], r["measurement"]): r for r in pooled.iter_rows(named=True)}
    spread = float(np.std(np.log(factors), ddof=1))
    r = rows[("onnxruntime", "fp16", 8, "latency")]
    p50 = run.filter(lat & (pl.col("precision") == "fp16") & (pl.col("batch_size") == 8))["latency_p50_ms"][0]
    assert r["baseline_runs"] == 3
    assert r["latency_p50_ms"] == pytest.approx(p50 * math.prod(factors) ** (1 / 3))
    assert r["latency_p50_run_cov"] == pytest.approx(spread) and r["throughput_run_cov"] == pytest.approx(spread)
    assert r["latency_samples_ms"] is None  # samples belong to single runs
    single = rows[("tensorrt", "int8", 8, "latency")]
    assert single["baseline_runs"] is None and single["latency_samples_ms"] == [4.0, 4.1]
    assert rows[("tensorrt", "int8", 1, "accuracy")]["vertex_drift_mean_mm"] == 1.1
    assert pool_runs(runs[:1]) is runs[0]
    with pytest.raises(UsageError, match="one device"):
        pool_runs([run, make_run("Orin", run_id="x")])


def test_pooled_baseline_judges_a_run_by_the_spread_between_runs(tmp_path: Path) -> None:
    """A shared machine that moves +-30% between repeats: a pooled baseline passes a +40% run, fails a 3x run."""
    from simplehand_deploy.bench.regress import compare

    root, baselines = tmp_path / "results", tmp_path / "baselines"
    run = make_run()
    folders = [str(_write(_scaled(run, f, f"2026010{i}"), root / f"2026010{i}-000000-nvidia-h100-80gb-hbm3"))
               for i, f in enumerate((1.0, 1.3, 0.8, 1.1, 0.75))]
    assert _run(bench, ["baseline", *[a for f in folders for a in ("--from", f)], "--out", str(baselines)]) == 0
    pooled = read_baseline(baselines / "nvidia-h100-80gb-hbm3.json")
    assert set(pooled.filter(pl.col("measurement") == "latency")["baseline_runs"].to_list()) == {5}
    moved = _scaled(run, 1.4, "x")
    assert compare(run, moved).failures  # against one run, +40% everywhere is a regression ...
    report = compare(pooled, moved)
    assert report.passed, report.summary()  # ... but within what this machine does between repeats
    assert {c.method for r in report.rows if r.measurement == "latency" for c in r.checks} == {
        "run-to-run spread of 5 baseline runs"}
    slow = compare(pooled, _scaled(run, 3.0, "y"))
    assert {r.name for r in slow.failures} == {r.name for r in slow.rows if r.measurement == "latency"}
    # the same run twice is refused (it would fake a zero spread)
    assert _run(bench, ["baseline", "--from", folders[0], "--from", folders[0], "--out", str(baselines)]) == 2
