"""`simplehand-bench compare`: the A/B statistic (ABBA blocks, median per-block ratio, seeded bootstrap), its
verdicts on synthetic samples, the refusals (exit 2, one line, nothing written) and one end-to-end run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from simplehand_deploy.bench.compare import (
    SideSamples,
    abba_schedule,
    block_ratios,
    bootstrap_median,
    judge,
    timed_rows,
)
from simplehand_deploy.cli import _run, bench


def sides(ratio: float, *, rounds: int = 8, noise: float = 0.05, drift: float = 1.0, seed: int = 0,
          iterations: int = 40) -> tuple[SideSamples, SideSamples]:
    """Samples of an A/B job: base latency 3 ms, B `ratio` times A, per-sample lognormal noise, and a machine
    whose speed drifts by the factor `drift` over the job (both sides alike, in ABBA order)."""
    rng = np.random.default_rng(seed)
    sched = abba_schedule(rounds)
    got: dict[str, list] = {"A": [], "B": []}
    for i, (k, side) in enumerate(sched):
        machine = drift ** (i / (len(sched) - 1))
        level = 3.0 * machine * (ratio if side == "B" else 1.0) * float(np.exp(rng.normal(0, noise)))
        lat = tuple(float(v) for v in level * np.exp(rng.normal(0, 0.02, iterations)))
        got[side].append((k, lat))

    def pack(items: list) -> SideSamples:
        return SideSamples(block=tuple(k for k, _ in items), p50_ms=tuple(float(np.median(v)) for _, v in items),
                           throughput_img_s=tuple(1000.0 / float(np.mean(v)) for _, v in items),
                           cpu_other_pct=tuple(0.0 for _ in items), iterations=tuple(len(v) for _, v in items),
                           latencies_ms=tuple(v for _, v in items))

    return pack(got["A"]), pack(got["B"])


def verdicts(ratio: float, **kw: object) -> dict[str, str]:
    a, b = sides(ratio, **kw)  # type: ignore[arg-type]
    return {r.metric: r.verdict for r in timed_rows(a, b, 1, 0.10)}


def test_abba_schedule() -> None:
    assert abba_schedule(2) == ((0, "A"), (0, "B"), (0, "B"), (0, "A"), (1, "A"), (1, "B"), (1, "B"), (1, "A"))
    assert sum(s == "A" for _, s in abba_schedule(8)) == 16  # the default: 16 samples per side


def test_synthetic_30_percent_slowdown_fails_and_equal_samples_pass() -> None:
    for seed in range(5):
        assert verdicts(1.3, seed=seed) == {"latency_p50_ms": "regression", "throughput_img_s": "regression"}
        assert verdicts(1.0, seed=seed) == {"latency_p50_ms": "ok", "throughput_img_s": "ok"}
    assert verdicts(1 / 1.3) == {"latency_p50_ms": "improved", "throughput_img_s": "improved"}


def test_machine_drift_hits_both_sides() -> None:
    """The machine slows down 2x over the job: identical artifacts still pass, a 30% slower one still fails,
    because each block compares the sides under the same conditions."""
    assert verdicts(1.0, drift=2.0) == {"latency_p50_ms": "ok", "throughput_img_s": "ok"}
    assert verdicts(1.3, drift=2.0)["latency_p50_ms"] == "regression"
    # what the job would see comparing whole sides instead: A's first half vs B's second half differs by far more
    a, b = sides(1.0, drift=2.0)
    assert b.p50_ms[-1] / a.p50_ms[0] > 1.5


def test_the_interval_must_lie_entirely_beyond_the_tolerance() -> None:
    assert judge(1.11, 1.3, 0.10, higher_is_better=False) == "regression"
    assert judge(1.09, 1.3, 0.10, higher_is_better=False) == "ok"  # reaches into the band: not proven
    assert judge(0.7, 0.89, 0.10, higher_is_better=True) == "regression"
    assert judge(0.7, 0.91, 0.10, higher_is_better=True) == "ok"
    assert judge(0.7, 0.89, 0.10, higher_is_better=False) == "improved"


def test_bootstrap_is_deterministic_and_brackets_the_median() -> None:
    r = np.random.default_rng(3).normal(1.05, 0.05, 8)
    first, again = bootstrap_median(r), bootstrap_median(list(r))
    assert first == again
    med, low, high = first
    assert low <= med <= high and med == pytest.approx(float(np.median(r)))
    assert bootstrap_median(r, seed=1) != first  # the seed is what makes it repeatable
    # the unit is the block: one wild block moves the median little and cannot fail an identical pair alone
    wild = np.ones(8)
    wild[3] = 3.0
    assert bootstrap_median(wild)[0] == 1.0 and judge(*bootstrap_median(wild)[1:], 0.10,
                                                      higher_is_better=False) == "ok"


def test_block_ratios_need_one_value_per_block() -> None:
    assert block_ratios([2.0, 4.0], [3.0, 4.0]).tolist() == [1.5, 1.0]
    with pytest.raises(ValueError):
        block_ratios([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        block_ratios([0.0], [1.0])


# ---------------------------------------------------------------------------------------------
# refusals: exit 2, one line, nothing written
# ---------------------------------------------------------------------------------------------


def _graph(path: Path, *, name: str = "image", dtype: int | None = None, size: int = 8) -> Path:
    import onnx
    from onnx import TensorProto, helper

    dt = TensorProto.FLOAT if dtype is None else dtype
    x = helper.make_tensor_value_info(name, dt, ["batch", 3, size, size])
    y = helper.make_tensor_value_info("uv", dt, ["batch", 3, size, size])
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", [name], ["uv"])], "g", [x], [y]))
    onnx.save(model, str(path))
    return path


def _plan(path: Path, **key: str) -> Path:
    path.write_bytes(b"plan")
    ki = {"onnx_sha256": "a" * 64, "trt_version": "10.13.0.35", "gpu_name": "NVIDIA L4", "gpu_sm": "8.9", **key}
    path.with_suffix(".json").write_text(json.dumps({"precision": "fp16", "key_inputs": ki}))
    return path


def _refused(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str) -> str:
    out = tmp_path / "out"
    code = _run(bench, ["compare", *args, "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert not out.exists()
    return err


def test_refuses_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _graph(tmp_path / "a.onnx")
    err = _refused(capsys, tmp_path, "--baseline", str(a), "--current", str(tmp_path / "nope.onnx"))
    assert "--current" in err and "no such file" in err


@pytest.mark.parametrize(("change", "words"), [
    ({"name": "input"}, "I/O names differ"),
    ({"dtype": 10}, "dtype differs"),  # float16
    ({"size": 16}, "non-batch shape differs"),
])
def test_refuses_different_contracts(tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict,
                                     words: str) -> None:
    a, b = _graph(tmp_path / "a.onnx"), _graph(tmp_path / "b.onnx", **change)
    assert words in _refused(capsys, tmp_path, "--baseline", str(a), "--current", str(b))


def test_a_different_batch_dimension_name_is_the_same_contract() -> None:
    from simplehand_deploy.bench.compare import contract_difference

    assert contract_difference({"image": ("input", "float", ("3",))}, {"image": ("input", "float", ("3",))}) is None


def test_refuses_mixed_kinds_and_the_wrong_runner(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, p = _graph(tmp_path / "a.onnx"), _plan(tmp_path / "k.plan")
    assert "same kind" in _refused(capsys, tmp_path, "--baseline", str(a), "--current", str(p))
    b = _graph(tmp_path / "b.onnx")
    assert "--runner onnxruntime" in _refused(capsys, tmp_path, "--baseline", str(a), "--current", str(b),
                                              "--runner", "tensorrt")


def test_refuses_plans_from_another_tensorrt_or_gpu_or_without_sidecar(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    a = _plan(tmp_path / "a.plan")
    other_trt = _plan(tmp_path / "b.plan", trt_version="10.3.0.30")
    err = _refused(capsys, tmp_path, "--baseline", str(a), "--current", str(other_trt))
    assert "TensorRT 10.3.0.30" in err and "10.13.0.35" in err
    other_gpu = _plan(tmp_path / "c.plan", gpu_name="NVIDIA A10")
    assert "GPU NVIDIA A10" in _refused(capsys, tmp_path, "--baseline", str(a), "--current", str(other_gpu))
    bare = tmp_path / "d.plan"
    bare.write_bytes(b"plan")
    assert "sidecar" in _refused(capsys, tmp_path, "--baseline", str(bare), "--current", str(a))


def test_same_machine_plans_reach_the_runner(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Matching sidecars pass the checks; without TensorRT the runner itself refuses (still exit 2)."""
    from simplehand_deploy._deps import tensorrt_or_none

    if tensorrt_or_none() is not None:
        pytest.skip("TensorRT is installed: these stand-in plans would be deserialised")
    a, b = _plan(tmp_path / "a.plan"), _plan(tmp_path / "b.plan")
    assert "TensorRT is not installed" in _refused(capsys, tmp_path, "--baseline", str(a), "--current", str(b))


def test_bad_options_are_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = _graph(tmp_path / "a.onnx"), _graph(tmp_path / "b.onnx")
    assert "--rounds" in _refused(capsys, tmp_path, "--baseline", str(a), "--current", str(b), "--rounds", "0")
    assert "--latency-tol" in _refused(capsys, tmp_path, "--baseline", str(a), "--current", str(b),
                                       "--latency-tol", "lots")
    assert "--calib" in _refused(capsys, tmp_path, "--baseline", str(a), "--current", str(b),
                                 "--checkpoint", str(a))


# ---------------------------------------------------------------------------------------------
# end to end on the trained tiny
# ---------------------------------------------------------------------------------------------


def test_compare_end_to_end(trained_engines: dict[str, Path], tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    """A byte-identical copy is measured like any pair and passes; drift of both sides against the same eager
    model is compared; an INT8 graph drifts more than FP32 by far more than 0.05 mm and fails; every output
    the command promises is written."""
    from mdtable import table_rows

    fp32 = trained_engines["fp32"]
    copy = tmp_path / "copy.onnx"
    shutil.copy(fp32, copy)
    out, md, junit = tmp_path / "same", tmp_path / "same.md", tmp_path / "same.xml"
    common = ["--batch-sizes", "1", "--rounds", "2", "--duration", "0.1", "--threads", "1", "--calib",
              str(trained_engines["held_out"]), "--checkpoint", str(trained_engines["checkpoint"]), "--config", "tiny"]
    code = _run(bench, ["compare", "--baseline", str(fp32), "--current", str(copy), *common, "--out", str(out),
                        "--markdown", str(md), "--junit", str(junit), "--json"])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    rows = json.loads(cap.out)
    assert {r["metric"] for r in rows} >= {"latency_p50_ms", "throughput_img_s", "vertex_drift_mean_mm"}
    timed = [r for r in rows if r["ratio"] is not None]
    assert all(len(r["block_ratios"]) == 2 and len(r["baseline_sample_p50_ms"]) == 4 for r in timed)
    assert all(r["cpu_threads"] == 1 for r in rows)
    drift = next(r for r in rows if r["metric"] == "vertex_drift_mean_mm")
    assert drift["change_mm"] == pytest.approx(0.0, abs=1e-9)  # the same bytes drift the same
    assert {p.name for p in out.iterdir()} == {"compare.parquet", "compare.json", "compare.md", "env.json"}
    text = md.read_text()
    assert "ABBA" in text and any(r["row"] == "drift/vertex_drift_mean_mm" for r in table_rows(text))
    assert 'failures="0"' in junit.read_text()

    code = _run(bench, ["compare", "--baseline", str(fp32), "--current", str(trained_engines["int8"]), *common,
                        "--out", str(tmp_path / "int8"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "FAIL" in err and "vertex_drift_mean_mm" in err


def test_none_means_the_default_and_help_states_it(tmp_path: Path) -> None:
    import typer

    from simplehand_deploy.bench.compare import DEFAULT_BATCHES, DEFAULT_DURATION, DEFAULT_ROUNDS, CompareConfig

    a, b = _graph(tmp_path / "a.onnx"), _graph(tmp_path / "b.onnx")
    cfg = CompareConfig.from_cli(baseline=a, current=b, rounds=None, duration=None, latency_tol=None, runner=None,
                                 batch_sizes=None, drift_tol_mm=None)
    assert cfg == CompareConfig(a, b) and cfg.resolved_runner() == "onnxruntime"
    assert CompareConfig.from_cli(baseline=a, current=b, latency_tol="15%").latency_tol == pytest.approx(0.15)
    command = typer.main.get_command(bench).commands["compare"]  # type: ignore[attr-defined]
    helps = {p.name: p.help or "" for p in command.params}
    assert f"default {DEFAULT_ROUNDS}" in helps["rounds"] and f"default {DEFAULT_DURATION:.1f}" in helps["duration"]
    assert f"default {DEFAULT_BATCHES}" in helps["batch_sizes"]
    assert "10% (default)" in helps["latency_tol"] and "default 0.05" in helps["drift_tol_mm"]
    assert CompareConfig.latency_tol == 0.10 and CompareConfig.drift_tol_mm == 0.05  # type: ignore[comparison-overlap]
