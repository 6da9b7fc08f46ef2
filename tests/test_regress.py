"""Regression gate: verdicts, noise handling, environment guard, and the three renderings (issue 8)."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console

from simplehand_deploy.bench.regress import compare, parse_tolerance, render_table, to_junit, to_markdown
from simplehand_deploy.cli import _run, bench
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
    results = pytest.importorskip("simplehand_deploy.bench.results", reason="results schema (issue 7) not present")
    RESULT_COLUMNS = results.RESULT_COLUMNS

    slug = "".join(c if c.isalnum() else "-" for c in device.lower()).strip("-")
    env = {"device_name": device, "device_slug": slug, "tensorrt_version": trt, "cuda_version": "12.8",
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
    assert "`tensorrt/int8/b8/latency` | **regression**" in md
    assert "+30.0%" in md

    root = ET.fromstring(to_junit(report))
    cases = root.findall(".//testcase")
    assert len(cases) == len(report.rows)
    failing = [c for c in cases if c.find("failure") is not None]
    assert [c.get("name") for c in failing] == ["tensorrt/int8/b8/latency"]
    assert "tensorrt/int8/b8/latency" in failing[0].find("failure").get("message")  # type: ignore[union-attr]
    assert root.find("testsuite").get("failures") == "1"  # type: ignore[union-attr]


def test_slowdown_within_noise_or_tolerance_passes() -> None:
    base = make_run(cov=0.15)  # 3 x hypot(0.15, 0.15) = 64 % noise bar
    assert compare(base, slow_down(base, "tensorrt", "int8", 8, 1.3)).passed
    quiet = make_run(cov=0.005)
    assert compare(quiet, slow_down(quiet, "tensorrt", "int8", 8, 1.08)).passed
    # the same 8 % fails once the tolerance is tighter than the change and the noise is small
    assert not compare(quiet, slow_down(quiet, "tensorrt", "int8", 8, 1.08), latency_tol=0.05).passed


def test_faster_is_improved_not_failed() -> None:
    base = make_run()
    report = compare(base, slow_down(base, "onnxruntime", "fp32", 1, 0.5))
    assert report.passed
    assert [r.name for r in report.rows if r.verdict == "improved"] == ["onnxruntime/fp32/b1/latency"]


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
