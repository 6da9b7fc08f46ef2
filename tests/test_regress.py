"""Regression gate: verdicts, noise handling, environment guard, and the three renderings."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from mdtable import table_rows
from rich.console import Console

from simplehand_deploy.bench.regress import (
    compare,
    failure_line,
    parse_tolerance,
    render_table,
    to_junit,
    to_markdown,
)
from simplehand_deploy.cli import _run, bench
from simplehand_deploy.env import slug
from simplehand_deploy.errors import UsageError

RUNNERS = (("onnxruntime", "fp32"), ("onnxruntime", "fp16"), ("tensorrt", "int8"))
BATCHES = (1, 8)


def make_run(
    device: str = "NVIDIA H100 80GB HBM3",
    *,
    trt: str = "10.13.0",
    run_id: str = "20260101-000000-gpu",
    cov: float = 0.01,
    runners: tuple[tuple[str, str], ...] = RUNNERS,
) -> pl.DataFrame:
    """A complete results frame in the harness schema: latency rows per batch + one accuracy row per precision."""
    results = pytest.importorskip("simplehand_deploy.bench.results", reason="results schema not present")
    RESULT_COLUMNS = results.RESULT_COLUMNS

    env = {"device_name": device, "device_slug": slug(device), "tensorrt_version": trt, "cuda_version": "12.8",
           "run_id": run_id, "host": "ci", "timestamp": "2026-01-01T00:00:00Z"}
    rows = []
    for runner, prec in runners:
        base_ms = {"fp32": 4.0, "fp16": 2.0, "int8": 1.5}[prec]
        for b in BATCHES:
            p50 = base_ms * (1 + 0.6 * (b - 1))
            rows.append({"runner": runner, "precision": prec, "batch_size": b, "measurement": "latency",
                         "status": "ok", "latency_p50_ms": p50, "latency_mean_ms": p50, "latency_p99_ms": p50 * 1.1,
                         "latency_cov": cov, "throughput_img_s": 1000.0 * b / p50, "iterations": 200, **env})
        drift = {"fp32": 0.001, "fp16": 0.2, "int8": 1.1}[prec]
        rows.append({"runner": runner, "precision": prec, "batch_size": 1, "measurement": "accuracy", "status": "ok",
                     "num_samples": 64, "vertex_drift_mean_mm": drift, "vertex_drift_p99_mm": 3 * drift,
                     "vertex_drift_max_mm": 4 * drift, **env})
    full = [{c: r.get(c) for c in RESULT_COLUMNS} for r in rows]
    return pl.DataFrame(full, schema=RESULT_COLUMNS, orient="row")


def slow_down(df: pl.DataFrame, runner: str, prec: str, batch: int, factor: float) -> pl.DataFrame:
    hit = (pl.col("runner") == runner) & (pl.col("precision") == prec) & (pl.col("batch_size") == batch) & (
        pl.col("measurement") == "latency")
    return df.with_columns(
        pl.when(hit).then(pl.col("latency_p50_ms") * factor).otherwise(pl.col("latency_p50_ms"))
        .alias("latency_p50_ms"),
        pl.when(hit).then(pl.col("throughput_img_s") / factor).otherwise(pl.col("throughput_img_s"))
        .alias("throughput_img_s"),
    )


def _text(table: object) -> str:
    console = Console(file=io.StringIO(), width=250, record=True)
    console.print(table)
    return console.export_text()


def test_identical_runs_pass() -> None:
    run = make_run()
    report = compare(run, run)
    assert report.passed, report.summary()
    assert {r.verdict for r in report.rows} == {"ok"}
    assert len(report.rows) == len(RUNNERS) * (len(BATCHES) + 1)


def test_30_percent_slower_row_fails_and_is_named_everywhere() -> None:
    base = make_run()
    cur = slow_down(base, "tensorrt", "int8", 8, 1.3)
    report = compare(base, cur)
    assert not report.passed
    assert [r.name for r in report.failures] == ["tensorrt/int8/b8/latency"]
    failed = report.failures[0]
    assert {c.metric for c in failed.checks if c.failed} == {"latency_p50_ms", "throughput_img_s"}
    assert "tensorrt/int8/b8/latency" in _text(render_table(report))
    md = to_markdown(report)
    row = next(r for r in table_rows(md) if r["row"] == "`tensorrt/int8/b8/latency`")
    assert row["verdict"] == "**regression**" and "+30.0%" in md
    assert table_rows(md)[0]["row"] == "`tensorrt/int8/b8/latency`"  # failures first
    assert failure_line(report) == f"{report.summary()}: tensorrt/int8/b8/latency (regression)"

    root = ET.fromstring(to_junit(report))
    cases = root.findall(".//testcase")
    assert len(cases) == len(report.rows)
    failing = [c for c in cases if c.find("failure") is not None]
    assert [c.get("name") for c in failing] == ["tensorrt/int8/b8/latency"]
    assert "tensorrt/int8/b8/latency" in failing[0].find("failure").get("message")  # type: ignore[union-attr]
    assert root.find("testsuite").get("failures") == "1"  # type: ignore[union-attr]


def test_summary_fallback_judges_the_estimate_not_the_sample_spread() -> None:
    """No samples (older folders): the bar is the uncertainty of the p50 estimate, not the per-sample CoV."""
    base = make_run(cov=0.15)  # 15% per-sample spread, but 200 iterations pin the median to ~2%
    report = compare(base, slow_down(base, "tensorrt", "int8", 8, 1.3))
    assert [r.name for r in report.failures] == ["tensorrt/int8/b8/latency"]  # the old 3 x CoV rule passed this
    check = next(c for c in report.failures[0].checks if c.metric == "latency_p50_ms")
    assert check.ci_low is not None and 0.2 < check.ci_low < 0.3 and "summary" in check.method
    few = make_run(cov=0.6).with_columns(pl.lit(4).alias("iterations"))  # 4 wild samples: +30% is not significant
    assert compare(few, slow_down(few, "tensorrt", "int8", 8, 1.3)).passed
    quiet = make_run(cov=0.005)
    assert compare(quiet, slow_down(quiet, "tensorrt", "int8", 8, 1.08)).passed  # within the 10% tolerance
    # the same 8 % fails once the tolerance is tighter than the change and the noise is small
    assert not compare(quiet, slow_down(quiet, "tensorrt", "int8", 8, 1.08), latency_tol=0.05).passed


# --- the statistic on synthetic samples -------------------------------------------------------


def ar1(rng: np.random.Generator, n: int, phi: float, sd: float, median_ms: float = 5.0) -> np.ndarray:
    """Log-normal latencies whose log follows an AR(1) process (stationary sd `sd`): autocorrelated noise."""
    e = rng.normal(0.0, sd * np.sqrt(1 - phi**2), n)
    x = np.empty(n)
    x[0] = rng.normal(0.0, sd)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + e[i]
    return median_ms * np.exp(x)


def with_samples(base: pl.DataFrame, samples: dict[tuple[str, str, int], np.ndarray]) -> pl.DataFrame:
    """The frame's latency rows rebuilt from per-iteration samples (stats as the harness computes them)."""
    from simplehand_deploy.timing import stats

    rows = []
    for r in base.iter_rows(named=True):
        key = (r["runner"], r["precision"], r["batch_size"])
        if r["measurement"] == "latency" and key in samples:
            t = samples[key]
            r = {**r, **stats(t), "iterations": len(t), "latency_samples_ms": [float(v) for v in t],
                 "throughput_img_s": r["batch_size"] * 1000.0 / float(np.mean(t))}
        rows.append(r)
    return pl.DataFrame(rows, schema=base.schema, orient="row")


def _one_row(b: np.ndarray, c: np.ndarray, **kw: float) -> str:
    base = make_run(runners=(("onnxruntime", "fp32"),))
    report = compare(with_samples(base, {("onnxruntime", "fp32", 1): b}),
                     with_samples(base, {("onnxruntime", "fp32", 1): c}), **kw)
    return next(r.verdict for r in report.rows if r.name == "onnxruntime/fp32/b1/latency")


def test_statistic_identical_distributions_pass_and_a_40_percent_shift_fails() -> None:
    rng = np.random.default_rng(0)
    verdicts = [_one_row(ar1(rng, 300, 0.5, 0.3), ar1(rng, 300, 0.5, 0.3)) for _ in range(20)]
    assert verdicts.count("regression") == 0, verdicts
    shifted = [_one_row(ar1(rng, 300, 0.5, 0.3), 1.4 * ar1(rng, 300, 0.5, 0.3)) for _ in range(10)]
    assert shifted == ["regression"] * 10
    # and a 40% *speed-up* is an improvement, not a failure
    assert _one_row(1.4 * ar1(rng, 300, 0.5, 0.3), ar1(rng, 300, 0.5, 0.3)) == "improved"
    # the significance half alone (tolerance 0): same distribution is called slower in about 5% of pairs
    from simplehand_deploy.bench.regress import samples_change

    lows = [samples_change(ar1(rng, 300, 0.5, 0.3), ar1(rng, 300, 0.5, 0.3))["median"][1] for _ in range(100)]
    assert sum(lo > 0 for lo in lows) <= 12


def test_statistic_autocorrelated_noise_does_not_flap() -> None:
    """Slow wandering (AR(1), phi 0.9): medians of identical processes often differ by > 10%; that is noise."""
    from simplehand_deploy.bench.regress import autocorrelation_time, batch_count, samples_change

    rng = np.random.default_rng(1)
    pairs = [(ar1(rng, 400, 0.9, 0.3), ar1(rng, 400, 0.9, 0.3)) for _ in range(60)]
    beyond_tol = sum(float(np.median(c) / np.median(b)) - 1 > 0.10 for b, c in pairs)
    assert beyond_tol >= 6  # the tolerance alone would flap: the test has teeth
    fails = sum(samples_change(b, c)["median"][0] > 0.10 and samples_change(b, c)["median"][1] > 0 for b, c in pairs)
    assert fails <= 4, f"{fails} of 60 identical pairs failed"
    # it is the autocorrelation allowance that holds: independent-sample bounds would fail many of them
    iid = 0
    for b, c in pairs:
        change = float(np.median(c) / np.median(b)) - 1
        se = np.sqrt(np.pi / 2) * np.hypot(np.std(np.log(b)) / np.sqrt(len(b)), np.std(np.log(c)) / np.sqrt(len(c)))
        iid += change > 0.10 and np.log1p(change) - 1.645 * se > 0
    assert iid >= 2 * max(fails, 2)
    assert autocorrelation_time(pairs[0][0]) > 10 and batch_count(pairs[0][0]) <= 20
    assert autocorrelation_time(rng.normal(size=1000)) < 1.5 and batch_count(rng.normal(size=1000)) == 20


def test_faster_is_improved_not_failed() -> None:
    base = make_run()
    report = compare(base, slow_down(base, "onnxruntime", "fp32", 1, 0.5))
    assert report.passed
    assert [r.name for r in report.rows if r.verdict == "improved"] == ["onnxruntime/fp32/b1/latency"]
    # an old baseline timed unfused eager: the comparison says so rather than crediting the change silently
    unfused, fused = base.with_columns(pl.lit(False).alias("fused")), base.with_columns(pl.lit(True).alias("fused"))
    notes = {r.message() for r in compare(unfused, fused).rows if r.measurement == "latency"}
    assert notes == {"fused differs (False -> True): not the same model graph"}


def test_drift_increase_beyond_tolerance_fails() -> None:
    base = make_run()
    acc = (pl.col("measurement") == "accuracy") & (pl.col("precision") == "fp16")
    worse = base.with_columns(pl.when(acc).then(pl.col("vertex_drift_mean_mm") + 0.2)
                              .otherwise(pl.col("vertex_drift_mean_mm")).alias("vertex_drift_mean_mm"))
    report = compare(base, worse)
    assert [r.name for r in report.failures] == ["onnxruntime/fp16/b1/accuracy"]
    assert compare(base, worse, drift_tol_mm=0.5).passed
    tiny = base.with_columns(pl.when(acc).then(pl.col("vertex_drift_mean_mm") + 0.01)
                             .otherwise(pl.col("vertex_drift_mean_mm")).alias("vertex_drift_mean_mm"))
    assert compare(base, tiny).passed


def test_missing_and_errored_rows_fail_new_rows_do_not() -> None:
    base = make_run()
    cur = base.filter(~((pl.col("runner") == "tensorrt") & (pl.col("batch_size") == 8)))
    report = compare(base, cur)
    assert [(r.name, r.verdict) for r in report.failures] == [("tensorrt/int8/b8/latency", "missing")]
    assert compare(cur, base).passed  # the extra row is "new"
    assert [r.verdict for r in compare(cur, base).rows].count("new") == 1
    err = base.with_columns(pl.when(pl.col("runner") == "tensorrt").then(pl.lit("error: out of memory"))
                            .otherwise(pl.col("status")).alias("status"))
    failures = compare(base, err).failures
    assert {r.verdict for r in failures} == {"error"} and len(failures) == 3
    assert "out of memory" in failures[0].message()


def test_different_gpu_or_tensorrt_is_refused_unless_allowed() -> None:
    base, other = make_run(), make_run("NVIDIA GeForce RTX 4090")
    with pytest.raises(UsageError, match=r"device_name differs.*--allow-env-change"):
        compare(base, other)
    with pytest.raises(UsageError, match="tensorrt_version differs"):
        compare(base, make_run(trt="8.6.2"))
    report = compare(base, other, allow_env_change=True)
    assert report.passed and any("device_name" in n for n in report.env_notes)


def test_skipped_runner_is_never_compared_and_never_fails() -> None:
    base = make_run()
    skip = {"runner": "tensorrt", "precision": "", "batch_size": None, "measurement": "latency",
            "status": "skipped: TensorRT is not installed", "device_name": base["device_name"][0],
            "device_slug": base["device_slug"][0], "tensorrt_version": base["tensorrt_version"][0],
            "run_id": "20260102-000000-gpu"}
    skips = pl.DataFrame([skip, {**skip, "measurement": "accuracy"}])
    cur = pl.concat([base.filter(pl.col("runner") != "tensorrt"), skips], how="diagonal_relaxed")
    report = compare(base, cur)
    assert report.passed, report.summary()
    verdicts = {r.name: r.verdict for r in report.rows}
    assert verdicts["tensorrt/int8/b1/latency"] == verdicts["tensorrt/int8/b8/latency"] == "not measured"
    assert verdicts["tensorrt/int8/b1/accuracy"] == "not measured"
    assert verdicts["tensorrt//b-/latency"] == verdicts["tensorrt//b-/accuracy"] == "skipped"
    # only a *skipped* runner is excused: the same rows simply absent still fail as missing
    gone = compare(base, base.filter(pl.col("runner") != "tensorrt"))
    assert {r.verdict for r in gone.failures} == {"missing"} and len(gone.failures) == 3
    assert "not measured" in to_markdown(report) and "skipped" in to_junit(report)
    # a skipped row in both runs is still not compared (and a baseline skip is never a failure)
    both = compare(cur, cur)
    assert both.passed and {r.verdict for r in both.rows if r.runner == "tensorrt"} == {"skipped"}
    # two plans skipped for the same precision (stale engines) do not make the run unreadable
    twice = pl.concat([cur, pl.DataFrame([{**skip, "status": "skipped: plan built for another GPU"}])],
                      how="diagonal_relaxed")
    assert compare(base, twice).passed


def test_cpu_threads_or_model_change_is_refused_unless_allowed() -> None:
    base = make_run().with_columns(pl.lit(1).alias("cpu_threads"), pl.lit("AMD EPYC").alias("cpu_model"))
    two = base.with_columns(pl.lit(2).alias("cpu_threads"))
    with pytest.raises(UsageError, match=r"cpu_threads differs: baseline 1, current 2.*--threads 1"):
        compare(base, two)
    assert any("cpu_threads" in n for n in compare(base, two, allow_env_change=True).env_notes)
    other = base.with_columns(pl.lit("Intel Xeon").alias("cpu_model"))
    with pytest.raises(UsageError, match="cpu_model differs"):
        compare(base, other)
    assert compare(base, other, allow_env_change=True).passed
    # results older than the columns (null/empty) are compared as before
    assert compare(make_run(), base).passed


def test_cli_refuses_thread_change_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = make_run().with_columns(pl.lit(1).alias("cpu_threads"))
    b = _write(base, tmp_path / "20260101-000000-h100")
    two = _write(base.with_columns(pl.lit(2).alias("cpu_threads")), tmp_path / "20260102-000000-h100")
    assert _run(bench, ["regress", "--baseline", str(b), "--current", str(two)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cpu_threads differs" in err[0] and "--allow-env-change" in err[0]
    assert _run(bench, ["regress", "--baseline", str(b), "--current", str(two), "--allow-env-change"]) == 0


def test_parse_tolerance() -> None:
    assert parse_tolerance("10%") == pytest.approx(0.10)
    assert parse_tolerance("0.1") == pytest.approx(0.10)
    assert parse_tolerance("15") == pytest.approx(0.15)
    with pytest.raises(UsageError):
        parse_tolerance("fast")


# --- CLI --------------------------------------------------------------------------------------


def _write(df: pl.DataFrame, folder: Path) -> Path:
    from simplehand_deploy.bench.results import write_results

    return Path(write_results(df, folder))


def test_cli_exit_codes_and_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = make_run()
    b = _write(base, tmp_path / "20260101-000000-nvidia-h100")
    same = _write(base, tmp_path / "20260102-000000-nvidia-h100")
    assert _run(bench, ["regress", "--baseline", str(b), "--current", str(same), "--latency-tol", "10%"]) == 0

    slow = _write(slow_down(base, "tensorrt", "int8", 8, 1.3), tmp_path / "20260103-000000-nvidia-h100")
    junit, md = tmp_path / "out" / "junit.xml", tmp_path / "out" / "summary.md"
    code = _run(bench, ["regress", "--baseline", str(b), "--current", str(slow), "--junit", str(junit),
                        "--markdown", str(md)])
    assert code == 1
    captured = capsys.readouterr()
    assert "tensorrt/int8/b8/latency" in captured.out + captured.err
    assert captured.err.splitlines()[-1].startswith("error: ") and \
        captured.err.splitlines()[-1].endswith(": tensorrt/int8/b8/latency (regression)")
    assert "tensorrt/int8/b8/latency" in md.read_text()
    assert ET.parse(junit).getroot().find(".//failure") is not None

    other = _write(make_run("NVIDIA GeForce RTX 4090"), tmp_path / "20260104-000000-rtx")
    assert _run(bench, ["regress", "--baseline", str(b), "--current", str(other)]) == 2
    assert "device_name differs" in capsys.readouterr().err
    assert _run(bench, ["regress", "--baseline", str(b), "--current", str(other), "--allow-env-change"]) == 0
    assert _run(bench, ["regress", "--baseline", str(tmp_path / "nope"), "--current", str(b)]) == 2


# --- CI workflows ---------------------------------------------------------------------------

WORKFLOWS = Path(__file__).resolve().parents[1] / ".github" / "workflows"


@pytest.mark.parametrize(("name", "runs_on"), [("cpu.yml", "ubuntu-latest"), ("gpu.yml", ["self-hosted", "gpu"]),
                                               ("jetson.yml", ["self-hosted", "jetson"])])
def test_workflows_load_and_gate(name: str, runs_on: object) -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML not installed")
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    triggers = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert "pull_request" in triggers and "push" in triggers
    jobs = doc["jobs"]
    assert all(job["runs-on"] == runs_on for job in jobs.values())
    steps = "\n".join(str(step.get("run", "")) + str(step.get("uses", "")) for job in jobs.values()
                      for step in job["steps"])
    if name == "cpu.yml":
        assert "make test" in steps and "simplehand-deploy drift" in steps and "sys.exit(1 if failed" in steps
    else:
        for needed in ("make engine", "simplehand-bench run", "make regress", "GITHUB_STEP_SUMMARY",
                       "actions/upload-artifact"):
            assert needed in steps, f"{name}: no step runs {needed!r}"
    if name == "jetson.yml":
        assert "nvpmodel -q" in steps and "--system-site-packages" in steps
        assert "pip install -q tensorrt" not in steps and "nvpmodel -m" not in steps  # recorded, never changed


def test_cli_judges_the_samples_in_results_parquet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """regress reads latency_samples_ms from results.parquet: a shifted run fails, a noisy identical one passes."""
    rng = np.random.default_rng(3)
    base = make_run(runners=(("onnxruntime", "fp32"),))
    keys = [("onnxruntime", "fp32", b) for b in BATCHES]
    b = _write(with_samples(base, {k: ar1(rng, 300, 0.5, 0.4) for k in keys}), tmp_path / "20260101-000000-h100")
    same = _write(with_samples(base, {k: ar1(rng, 300, 0.5, 0.4) for k in keys}), tmp_path / "20260102-000000-h100")
    slow = _write(with_samples(base, {k: 1.4 * ar1(rng, 300, 0.5, 0.4) for k in keys}),
                  tmp_path / "20260103-000000-h100")
    assert pl.read_parquet(same / "results.parquet")["latency_samples_ms"].list.len().max() == 300
    assert _run(bench, ["regress", "--baseline", str(b), "--current", str(same)]) == 0
    md = tmp_path / "summary.md"
    assert _run(bench, ["regress", "--baseline", str(b), "--current", str(slow), "--markdown", str(md)]) == 1
    assert "batch means" in md.read_text() and "onnxruntime/fp32/b8/latency" in capsys.readouterr().err


def test_other_processes_load_is_noted_not_judged() -> None:
    """A row timed while other processes used the CPUs says so; the verdict is still the numbers'."""
    base = make_run().with_columns(pl.lit(1.0).alias("cpu_other_pct"))
    quiet = compare(base, base)
    assert all(r.note == "" for r in quiet.rows)
    crowded = slow_down(base, "onnxruntime", "fp32", 1, 2.0).with_columns(
        pl.when(pl.col("measurement") == "latency").then(pl.lit(48.0)).otherwise(pl.lit(None))
        .alias("cpu_other_pct"))
    report = compare(base, crowded)
    row = next(r for r in report.rows if r.name == "onnxruntime/fp32/b1/latency")
    assert row.verdict == "regression"
    assert "other processes used 48% of the CPUs while the current row was timed (baseline 1%)" in row.note
    assert "other processes used 48%" in to_markdown(report)
    ok = next(r for r in report.rows if r.name == "onnxruntime/fp32/b8/latency")
    assert ok.verdict == "ok" and "48%" in ok.note
    assert all(r.note == "" for r in report.rows if r.measurement == "accuracy")


def test_runs_change_bounds_one_run_against_the_pooled_runs() -> None:
    """se = run_cov * sqrt(1 + 1/n), Student t with n - 1 degrees of freedom (one-sided 95%)."""
    import math

    from simplehand_deploy.bench.regress import runs_change

    low, high = runs_change(0.5, 0.2, 5)
    q = 2.131847 * 0.2 * math.sqrt(1.2)  # t(0.95, 4)
    assert low == pytest.approx(math.expm1(math.log(1.5) - q), rel=1e-5)
    assert high == pytest.approx(math.expm1(math.log(1.5) + q), rel=1e-5)
    assert low < 0  # +50% with a 20% run-to-run spread over 5 runs: not significant (q = 0.47 > log 1.5)
    assert runs_change(0.5, 0.15, 5)[0] > 0  # with a 15% spread it is
    assert runs_change(0.5, 0.2, 3)[0] < runs_change(0.5, 0.2, 10)[0]  # fewer runs, wider bounds
