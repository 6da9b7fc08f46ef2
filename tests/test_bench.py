"""The harness: trtexec statistics, results schema round trip, the simplehand-bench CLI on CPU."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from simplehand_deploy._deps import tensorrt_or_none
from simplehand_deploy.bench.results import RESULT_COLUMNS, conform, read_results, validate, write_results
from simplehand_deploy.cli import _run, bench
from simplehand_deploy.errors import UsageError
from simplehand_deploy.timing import percentile, stats, trtexec_command

REQUIRED = ["runner", "precision", "batch_size", "latency_mean_ms", "latency_p50_ms", "latency_p90_ms",
            "latency_p95_ms", "latency_p99_ms", "latency_cov", "throughput_img_s", "device_name", "host",
            "torch_version", "onnxruntime_version", "tensorrt_version", "cuda_version"]


def test_trtexec_statistics():
    t = np.arange(1, 101, dtype=float)  # 1..100 ms
    s = stats(t[::-1])
    assert s["latency_p50_ms"] == 50.5  # even N: mean of the two middle values
    assert stats([3.0, 1.0, 2.0])["latency_p50_ms"] == 2.0
    # trtexec computes int((1 - p/100) * N) in float32: p90 of 100 -> sorted[89]; p99 -> 0.99999905 -> 0 -> max
    assert percentile(np.sort(t), 90) == 90.0 and percentile(np.sort(t), 99) == 100.0
    assert percentile(np.sort(np.arange(1, 1001.0)), 99) == 991.0
    assert s["latency_min_ms"] == 1 and s["latency_max_ms"] == 100 and s["latency_mean_ms"] == 50.5
    assert s["latency_cov"] == pytest.approx(np.std(t) / 50.5)
    assert stats([5.0] * 10)["latency_cov"] == 0.0


def test_trtexec_command_is_version_aware():
    assert "--useCudaGraph" in trtexec_command("e.plan", 8, "10.13.0.35")
    assert "--noDataTransfers" in trtexec_command("e.plan", 8, "10.13.0.35")
    v11 = trtexec_command("e.plan", 8, "11.1.0.106", cuda_graphs=False)
    assert "--noCudaGraph" in v11 and "--useCudaGraph" not in v11 and "image:8x3x224x224" in v11


def test_results_round_trip(tmp_path):
    df = conform([{"runner": "torch_eager", "precision": "fp32", "batch_size": 2, "measurement": "latency",
                   "status": "ok", "latency_p50_ms": 3.5, "device_name": "cpu x"}])
    assert df.columns[: len(RESULT_COLUMNS)] == list(RESULT_COLUMNS)
    assert df.schema["batch_size"] == pl.Int64 and df.schema["latency_p50_ms"] == pl.Float64
    out = write_results(df, tmp_path / "run")
    for name in ("results.parquet", "results.csv", "results.json", "results.md"):
        again = read_results(out / name) if name != "results.md" else read_results(out)
        assert again["latency_p50_ms"].to_list() == [3.5] and again["batch_size"].to_list() == [2]
    with pytest.raises(UsageError, match="device_name"):
        validate(pl.DataFrame({"runner": ["x"]}), "bad.csv")


def test_samples_kept_in_parquet_only_and_env_json_fills_older_rows(tmp_path):
    import json

    from simplehand_deploy.bench.baseline import load_frame

    df = conform([{"runner": "onnxruntime", "precision": "fp32", "batch_size": 1, "measurement": "latency",
                   "status": "ok", "latency_p50_ms": 2.0, "latency_samples_ms": [2.5, 1.5, 2.0],
                   "device_name": "cpu x"}])
    out = write_results(df, tmp_path / "run", env={"cpu_model": "AMD EPYC", "cpu_count": 2})
    assert pl.read_parquet(out / "results.parquet")["latency_samples_ms"].to_list() == [[2.5, 1.5, 2.0]]
    assert "latency_samples_ms" not in (out / "results.csv").read_text().splitlines()[0].split(",")
    assert "latency_samples_ms" not in json.loads((out / "results.json").read_text())[0]
    frame, _ = load_frame(out)
    assert frame["cpu_model"].to_list() == ["AMD EPYC"] and frame["cpu_count"].to_list() == [2]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    from simplehand_deploy.pipeline import run_engine_job

    root = tmp_path_factory.mktemp("bench")
    run_engine_job(config="tiny", calib_num=6, out=root / "engines", calib_dir=root / "calibration", quiet=True)
    return root


def test_latency_cli_on_cpu_writes_all_formats(artifacts, tmp_path, capsys):
    onnx = artifacts / "engines" / "simplehand-tiny-seed0-fp32.onnx"
    code = _run(bench, ["latency", "--config", "tiny", "--runners", "torch,onnxruntime", "--batch-sizes", "1,2",
                        "--duration", "0.2", "--iterations", "3", "--warmup", "0.05", "--onnx", str(onnx),
                        "--out", str(tmp_path / "res")])
    printed = capsys.readouterr().out
    assert code == 0 and "latency" in printed
    for name in ("results.parquet", "results.csv", "results.json", "results.md", "env.json"):
        assert (tmp_path / "res" / name).is_file(), name
    df = read_results(tmp_path / "res")
    assert set(REQUIRED) <= set(df.columns)
    assert len(df) == 4 and set(df["status"]) == {"ok"}
    assert set(df["runner"]) == {"torch_eager", "onnxruntime"} and sorted(set(df["batch_size"])) == [1, 2]
    assert (df["latency_p99_ms"] >= df["latency_p50_ms"]).all() and (df["throughput_img_s"] > 0).all()
    # each ONNX Runtime row's speed-up is fused eager's p50 over its own, at the same batch size
    p50 = {(r["runner"], r["batch_size"]): r["latency_p50_ms"] for r in df.iter_rows(named=True)}
    for r in df.filter(pl.col("runner") == "onnxruntime").iter_rows(named=True):
        assert r["speedup_vs_eager"] == pytest.approx(p50[("torch_eager", r["batch_size"])] / r["latency_p50_ms"])
    png = (tmp_path / "res" / "latency_vs_batch.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_accuracy_cli_reports_drift_per_precision(trained_engines, tmp_path, capsys):
    """On the trained tiny (8 held-out crops): drift per precision within the drift targets (docs/precision.md;
    FP16 x2), in the order the precisions predict, and the same task metric from eager and from the FP32 graph."""
    import torch
    from teeth import assert_discriminates

    from simplehand_deploy.checkpoint import load_checkpoint

    held_out, ckpt = trained_engines["held_out"], trained_engines["checkpoint"]
    args = ["accuracy", "--config", "tiny", "--checkpoint", str(ckpt), "--runners", "torch,onnxruntime",
            "--calib", str(held_out), "--out", str(tmp_path / "acc"), "--json"]
    for p in ("fp32", "fp16", "int8"):
        args += ["--onnx", str(trained_engines[p])]
    assert _run(bench, args) == 0
    rows = {(r["runner"], r["precision"]): r for r in json.loads(capsys.readouterr().out)}
    with torch.no_grad():
        _, eager = load_checkpoint(ckpt)[0](torch.from_numpy(np.load(held_out / "images.npy")))
    assert_discriminates(eager.numpy(), 1.0, "mean_dist_mm")  # the largest bound below
    ort = {p: rows[("onnxruntime", p)] for p in ("fp32", "fp16", "int8")}
    assert ort["fp32"]["vertex_drift_mean_mm"] < 1e-3
    assert 1e-3 < ort["fp16"]["vertex_drift_mean_mm"] < 0.1  # target 0.05 mm
    assert ort["fp16"]["vertex_drift_mean_mm"] < ort["int8"]["vertex_drift_mean_mm"] < 1.0  # target 1.0 mm
    assert 0 < ort["fp16"]["uv_drift_mean_px"] < ort["int8"]["uv_drift_mean_px"]
    # eager's row is the reference itself (its drift is 0 by construction on CPU); its task metric is not
    eager_pa = rows[("torch_eager", "fp32")]["pa_mpvpe_mm"]
    assert 5 < eager_pa < 35 and ort["fp32"]["pa_mpvpe_mm"] == pytest.approx(eager_pa, abs=0.01)
    assert ort["int8"]["pa_mpvpe_mm"] == pytest.approx(eager_pa, rel=0.15) and ort["int8"]["num_samples"] == 8
    png = (tmp_path / "acc" / "drift_per_precision.png").read_bytes()
    assert png[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--runners", "torch,tensorrtx"], "tensorrtx"), (["--batch-sizes", "1,0"], "positive"),
     (["--onnx", "/nonexistent/x.onnx"], "x.onnx")],
)
def test_bad_input_exits_2(args, needle, capsys, tmp_path):
    code = _run(bench, ["latency", "--config", "tiny", "--duration", "0.1", "--out", str(tmp_path / "o"), *args])
    assert code == 2 and needle in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_runner_failing_mid_sweep_is_a_status_row(artifacts, tmp_path, monkeypatch):
    from simplehand_deploy.runners.onnxruntime import OrtRunner

    calls = {"n": 0}
    real = OrtRunner.launch

    def flaky(self, batch):
        calls["n"] += 1
        if batch == 2:
            raise RuntimeError("device lost")
        return real(self, batch)

    monkeypatch.setattr(OrtRunner, "launch", flaky)
    onnx = artifacts / "engines" / "simplehand-tiny-seed0-fp32.onnx"
    code = _run(bench, ["latency", "--config", "tiny", "--runners", "onnxruntime,tensorrt", "--batch-sizes", "1,2",
                        "--duration", "0.05", "--iterations", "2", "--warmup", "0", "--onnx", str(onnx),
                        "--out", str(tmp_path / "r"), "--quiet"])
    assert code == 0
    df = read_results(tmp_path / "r")
    ort = {r["batch_size"]: r["status"] for r in df.filter(pl.col("runner") == "onnxruntime").iter_rows(named=True)}
    assert ort[1] == "ok" and "device lost" in ort[2]
    trt = df.filter(pl.col("runner") == "tensorrt")
    if tensorrt_or_none() is None:  # cannot run here: ONE skipped row, no batch size, not an error per batch
        assert trt["status"].to_list() == ["skipped: TensorRT is not installed"]
        assert trt["batch_size"].to_list() == [None]


def test_threads_fused_and_cpu_conditions_on_every_row(artifacts, tmp_path):
    """--threads 1 is in effect and recorded; eager is fused; the CPU is named."""
    import os

    import torch

    from simplehand_deploy.env import cpu_model

    before = torch.get_num_threads()
    onnx = artifacts / "engines" / "simplehand-tiny-seed0-fp32.onnx"
    try:
        code = _run(bench, ["latency", "--config", "tiny", "--runners", "torch,torch_unfused,onnxruntime",
                            "--batch-sizes", "1", "--threads", "1", "--duration", "0.05", "--iterations", "3",
                            "--warmup", "0", "--onnx", str(onnx), "--out", str(tmp_path / "r"), "--quiet"])
        assert torch.get_num_threads() == 1  # applied to torch, not only recorded
    finally:
        torch.set_num_threads(before)
    assert code == 0
    df = pl.read_parquet(tmp_path / "r" / "results.parquet")
    rows = {r["runner"]: r for r in df.iter_rows(named=True)}
    assert set(rows) == {"torch_eager", "torch_unfused", "onnxruntime"}
    assert df["cpu_threads"].to_list() == [1, 1, 1]
    assert df["cpu_count"].to_list() == [os.cpu_count()] * 3 and set(df["cpu_model"]) == {cpu_model()}
    assert rows["torch_eager"]["fused"] is True and rows["torch_unfused"]["fused"] is False
    assert rows["onnxruntime"]["fused"] is True
    # every row names the graph it ran; fused and unfused eager are different graphs
    shas = [r["artifact_sha256"] for r in rows.values()]
    assert all(len(h) == 64 for h in shas) and len(set(shas)) == 3
    # speed-ups are against fused eager: fused eager is 1.0 by definition, the others are not eager compared
    # with itself
    assert rows["torch_eager"]["speedup_vs_eager"] == 1.0
    assert rows["onnxruntime"]["speedup_vs_eager"] == pytest.approx(
        rows["torch_eager"]["latency_p50_ms"] / rows["onnxruntime"]["latency_p50_ms"])
    # the samples behind the statistics are kept, in run order
    for r in rows.values():
        assert len(r["latency_samples_ms"]) == r["iterations"] >= 3
        assert min(r["latency_samples_ms"]) == r["latency_min_ms"]
        assert r["cov_warning"] == (r["latency_cov"] > 0.025)
        assert r["cpu_other_pct"] is None or 0.0 <= r["cpu_other_pct"] <= 100.0


def test_threads_default_records_what_is_in_effect(artifacts):
    import torch

    from simplehand_deploy.env import physical_cores
    from simplehand_deploy.model import create_model
    from simplehand_deploy.runners import get_runner

    onnx = artifacts / "engines" / "simplehand-tiny-seed0-fp32.onnx"
    with get_runner("onnxruntime", onnx=onnx) as ort_runner:
        assert ort_runner.threads() == physical_cores()
    with get_runner("onnxruntime", onnx=onnx, threads=1) as ort_runner:
        assert ort_runner.threads() == 1
        assert ort_runner.session.get_session_options().intra_op_num_threads == 1
    with get_runner("torch", model=create_model("tiny")) as t:
        assert t.threads() == torch.get_num_threads()


def test_runner_lifecycle_frees_and_refuses_when_closed(artifacts):
    from simplehand_deploy.model import create_model
    from simplehand_deploy.runners import get_runner

    model = create_model("tiny")
    runner = get_runner("torch", model=model)
    assert not runner.is_open and runner.model is None  # construction is cheap; open() loads
    with pytest.raises(RuntimeError, match="not open"):
        runner.prepare(1)
    with runner:
        runner.prepare(1)
        assert runner.model.is_fused and not model.is_fused  # fuses its own copy, never the caller's model
        assert runner._staged
    assert not runner.is_open and runner.model is None and not runner._staged
    ort_runner = get_runner("onnxruntime", onnx=artifacts / "engines" / "simplehand-tiny-seed0-fp32.onnx")
    with ort_runner:
        out = ort_runner.infer(np.zeros((2, 3, 224, 224), np.float32))
        assert out["vertices"].shape == (2, 778, 3)
    assert ort_runner.session is None
    with pytest.raises(UsageError, match="already fused"):
        from simplehand_deploy.model import fuse

        get_runner("torch_unfused", model=fuse(create_model("tiny")))


def test_env_json(capsys):
    """`env` reports this machine as other sources see it (not as the helpers it is built from see it)."""
    import importlib.util
    import os
    import platform
    import shutil
    import subprocess

    import onnxruntime
    import torch

    assert _run(bench, ["env", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["device_name"] and info["device_slug"] and info["toolkit_version"]
    assert info["torch_version"] == torch.__version__.split("+")[0]
    assert info["onnxruntime_version"] == onnxruntime.__version__
    assert info["python_version"] == platform.python_version() and info["arch"] == platform.machine()
    assert info["cpu_count"] == os.cpu_count()
    if shutil.which("lscpu") and platform.system() == "Linux":
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"}).stdout
        names = [line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name:")]
        if names:
            assert info["cpu_model"] == names[0]
    if not torch.cuda.is_available():
        assert info["device_name"] == info["cpu_model"] and info["cuda_version"] == ""
    spec = importlib.util.find_spec("tensorrt")
    if spec is None or not spec.has_location:  # absent, or only tensorrt-stubs' empty namespace folder
        assert info["tensorrt_version"] == ""
    else:
        import tensorrt

        assert info["tensorrt_version"] == str(tensorrt.__version__)


def test_out_folder_content_is_never_deleted(tmp_path):
    keep = tmp_path / "precious.txt"
    keep.write_text("mine")
    df = conform([{"runner": "torch_eager", "precision": "fp32", "batch_size": 1, "measurement": "latency",
                   "status": "ok", "device_name": "cpu"}])
    write_results(df, tmp_path)
    write_results(df, tmp_path)
    assert keep.read_text() == "mine" and (tmp_path / "results.parquet").is_file()


def test_bad_timing_options_exit_2(capsys):
    assert _run(bench, ["latency", "--config", "tiny", "--iterations", "0", "--duration", "0"]) == 2
    assert "--iterations" in capsys.readouterr().err


def test_plots_read_at_a_glance():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from simplehand_deploy.bench.plots import batch_axis, is_cpu_simulation, title_of

    fig, ax = plt.subplots()
    ax.plot([1, 2, 4, 8], [1, 2, 3, 4])
    batch_axis(ax, [1, 2, 4, 8, 2])
    fig.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "4", "8"]  # not "2^0"/"2×10⁰"
    assert ax.get_xscale() == "log" and not ax.xaxis.get_minorticklocs().size
    plt.close(fig)
    df = conform([{"runner": "onnxruntime", "precision": "int8", "batch_size": 1, "measurement": "latency",
                   "status": "ok", "config": "tiny", "device_name": "AMD EPYC", "cpu_threads": 1,
                   "timing_scope": "host"}])
    assert title_of(df, "Latency vs batch") == "Latency vs batch: tiny on AMD EPYC, 1 CPU thread"
    row = df.row(0, named=True)
    assert is_cpu_simulation(row)
    assert not is_cpu_simulation({**row, "precision": "fp32"})
    assert not is_cpu_simulation({**row, "timing_scope": "end_to_end"})  # ORT CUDA: a real measurement


def _stat(path, busy_ticks, idle_ticks):
    path.write_text(f"cpu  {busy_ticks} 0 0 {idle_ticks} 0 0 0 0 0 0\ncpu0 1 2 3 4\n")


def test_other_load_is_the_machine_busy_time_minus_ours(tmp_path, monkeypatch):
    """cpu_other_pct: the machine's busy CPU time (/proc/stat) minus this process's, over wall x CPUs."""
    import os
    import time

    from simplehand_deploy import env

    stat = tmp_path / "stat"
    clock = {"wall": 100.0, "own": 5.0}
    monkeypatch.setattr(time, "monotonic", lambda: clock["wall"])
    monkeypatch.setattr(time, "process_time", lambda: clock["own"])
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "sysconf", lambda name: 100)  # 100 ticks per second
    _stat(stat, 1000, 5000)
    probe = env.OtherLoad(str(stat))
    # 4 s of wall on 2 CPUs = 8 CPU-seconds; the machine was busy 6 s of them, 2 s of which were ours
    clock["wall"], clock["own"] = 104.0, 7.0
    _stat(stat, 1000 + 600, 5000 + 200)
    assert probe.percent() == 50.0
    clock["own"] = 11.0  # our own work alone explains the busy time: nobody else ran
    assert probe.percent() == 0.0
    stat.write_text("garbage\n")
    assert probe.percent() is None  # unreadable: not recorded, never a guess
    assert env.OtherLoad(str(tmp_path / "absent")).percent() is None


def test_other_load_sees_a_busy_loop():
    """A real busy process on this machine shows up; our own busy work does not."""
    import subprocess
    import sys
    import time

    from simplehand_deploy.env import OtherLoad

    if OtherLoad().percent() is None:
        pytest.skip("no /proc/stat on this OS")
    probe = OtherLoad()
    end = time.monotonic() + 0.6
    while time.monotonic() < end:  # our own load
        pass
    own_only = probe.percent()
    loop = "import time\nend = time.time() + 1.5\nwhile time.time() < end: pass"
    busy = subprocess.Popen([sys.executable, "-c", loop])
    try:
        time.sleep(0.2)
        probe = OtherLoad()
        time.sleep(1.0)
        crowded = probe.percent()
    finally:
        busy.wait()
    import os

    assert crowded is not None and own_only is not None
    # one busy process is one CPU's worth: 100 / cpu_count percent (allow for whatever else runs here)
    assert crowded >= 0.6 * 100 / (os.cpu_count() or 1)
    assert own_only < crowded
