"""TensorRT in the harness, on CPU: plan selection, trtexec-like GPU timing loop with
plain stand-in events, trtexec lines, TensorRT columns. No TensorRT is faked: the logic runs on plain objects."""

from __future__ import annotations

import json

import polars as pl
import pytest

from simplehand_deploy.bench.results import RESULT_COLUMNS, conform
from simplehand_deploy.timing import measure, time_gpu, trtexec_command


class _Clock:
    """A stand-in GPU stream: launches queue up; an event completes when the host waits on it."""

    def __init__(self) -> None:
        self.launched = 0
        self.done = 0  # inferences the host has waited for
        self.max_in_flight = 0
        self.syncs = 0

    def launch(self) -> None:
        self.launched += 1
        self.max_in_flight = max(self.max_in_flight, self.launched - self.done)

    def event(self) -> _Event:
        return _Event(self)


class _Event:
    def __init__(self, clock: _Clock) -> None:
        self.clock, self.at = clock, None

    def record(self) -> None:
        self.at = self.clock.launched  # recorded after `at` launches

    def synchronize(self) -> None:
        self.clock.syncs += 1
        self.clock.done = max(self.clock.done, self.at)

    def elapsed_ms(self, end: _Event) -> float:
        return float(end.at - self.at)  # one "ms" per inference between the pair


def test_gpu_timing_keeps_one_inference_queued_and_syncs_once_per_wait():
    clock = _Clock()
    times, wall = time_gpu(clock.launch, clock.event, duration=0.0, iterations=50)
    assert len(times) == 50 and times == [1.0] * 50  # an event pair brackets exactly one inference
    # one inference queued ahead of the one waited for: never more than 2 in flight, and the GPU never drains
    assert clock.max_in_flight == 2
    assert clock.syncs == 50 - 1 + 1  # a wait per inference beyond the queue depth, plus the window's final sync
    assert clock.done == 50 and wall > 0


def test_gpu_timing_queue_depth_is_a_parameter():
    clock = _Clock()
    time_gpu(clock.launch, clock.event, duration=0.0, iterations=20, queued=3)
    assert clock.max_in_flight == 4


class _StandInGpuRunner:
    """A plain object with the runner protocol, run through the real `measure` on the GPU branch."""

    device = "cuda"
    torch_allocator = False  # like TensorRT: no torch CUDA calls may happen (a CPU-only torch would raise)
    precision = "fp16"

    def __init__(self) -> None:
        self.clock = _Clock()

    def prepare(self, batch: int) -> None:
        pass

    def launch(self, batch: int) -> None:
        self.clock.launch()

    def synchronize(self) -> None:
        pass

    def event(self) -> _Event:
        return self.clock.event()

    def trtexec_command(self, batch: int, *, duration: float, iterations: int, warmup: float) -> str:
        return trtexec_command("e.plan", batch, "10.3.0.30", duration=duration, iterations=iterations,
                               warmup=warmup)


def test_measure_uses_the_runners_own_events_and_window_throughput():
    runner = _StandInGpuRunner()
    out = measure(runner, 8, duration=0.0, iterations=30, warmup=0.0)
    assert out["iterations"] == 30 and out["latency_p50_ms"] == 1.0
    # throughput = images / wall time of the window (trtexec), not batch / mean latency
    assert out["throughput_img_s"] == pytest.approx(8 * out["throughput_exec_s"])
    assert out["throughput_exec_s"] == pytest.approx(30 / out["duration_s"])
    assert out["throughput_img_s"] != pytest.approx(8 * 1000.0 / out["latency_mean_ms"])
    assert "peak_memory_mb" not in out  # torch's allocator says nothing about TensorRT
    assert out["trtexec_command"].startswith("trtexec --loadEngine=e.plan --shapes=image:8x3x224x224 --warmUp=0 ")
    assert "--iterations=30" in out["trtexec_command"]


def _plan(tmp, name: str, onnx_sha: str, precision: str = "fp16", **machine) -> object:
    plan = tmp / f"{name}.plan"
    plan.write_bytes(b"plan")
    key = {"onnx_sha256": onnx_sha, "trt_version": "10.3.0.30", "gpu_name": "Orin", "gpu_sm": "8.7", **machine}
    plan.with_suffix(".json").write_text(json.dumps({"precision": precision, "precision_mix": "fp16+fp32",
                                                     "key_inputs": key}))
    return plan


def test_stale_and_foreign_plans_become_one_skipped_row(tmp_path):
    from simplehand_deploy.bench.sweep import build_specs, latency_sweep, select_plans
    from simplehand_deploy.fileio import sha256_file

    onnx = tmp_path / "simplehand-tiny-seed0-fp16.onnx"
    onnx.write_bytes(b"current graph")
    current = _plan(tmp_path, "a", sha256_file(onnx))
    stale = _plan(tmp_path, "b", "0" * 64, precision="int8")
    orphan = tmp_path / "c.plan"
    orphan.write_bytes(b"plan")
    chosen = select_plans([current, stale, orphan], [onnx])
    assert chosen[0] == (current, "fp16", None)
    assert chosen[1][1] == "int8" and chosen[1][2].startswith("stale")
    assert "sidecar" in chosen[2][2]
    assert select_plans([stale], None)[0][2] is None  # plans named by the user: not checked for staleness

    specs = build_specs(["tensorrt"], model=None, info=None, onnx=[onnx], plans=[stale, orphan],
                        engines_dir=tmp_path, quiet=True)
    df = latency_sweep(specs, [1, 8], duration=0.0, iterations=1, warmup=0.0, common={"device_name": "x"},
                       progress=False)
    assert df.height == 2  # one row per skipped plan, not one per batch size
    assert df["batch_size"].null_count() == 2
    assert df["status"][0].startswith("skipped: stale") and df["precision"][0] == "int8"
    assert df["status"][1].startswith("skipped: no readable sidecar")


def test_trtexec_lines_and_tensorrt_columns():
    from simplehand_deploy.bench.sweep import trtexec_lines

    for col in ("precision_mix", "engine_device_memory_mb", "device_memory_delta_mb", "trtexec_command",
                "precision_verified"):
        assert col in RESULT_COLUMNS
    df = conform([{"runner": "tensorrt", "precision": "int8", "batch_size": 8, "measurement": "latency",
                   "status": "ok", "precision_mix": "int8+fp32",
                   "trtexec_command": trtexec_command("e.plan", 8, "11.1.0.106")},
                  {"runner": "torch_eager", "precision": "fp32", "batch_size": 8, "measurement": "latency",
                   "status": "ok"}])
    assert df.schema["precision_mix"] == pl.Utf8 and df["precision"].to_list() == ["int8", "fp32"]
    lines = trtexec_lines(df)
    assert lines == [f"int8 b8: {trtexec_command('e.plan', 8, '11.1.0.106')}"]


def test_trt_runner_reads_sidecar_without_tensorrt(tmp_path):
    """The runner's columns come from the engine sidecar; its trtexec line from the recorded TensorRT version."""
    from simplehand_deploy.runners.tensorrt import TrtRunner

    plan = _plan(tmp_path, "k", "a" * 64)
    runner = TrtRunner(plan)
    desc = runner.describe()
    assert desc["precision_mix"] == "fp16+fp32" and runner.precision == "fp16"
    line = runner.trtexec_command(4, duration=2.0, iterations=20, warmup=0.5)
    assert f"--loadEngine={plan}" in line and "image:4x3x224x224" in line and "--duration=2 " in line
    assert "--noDataTransfers" in line  # TensorRT 10 from the sidecar: pre-11 defaults spelled out


def test_buffers_option_reaches_the_runner_and_the_builder(tmp_path, monkeypatch):
    """`--buffers` on the bench commands reaches each TensorRT runner; on `build`, the builder (device probe)."""
    import simplehand_deploy.trt.build as build
    from simplehand_deploy.bench.run import BenchConfig
    from simplehand_deploy.bench.sweep import build_specs
    from simplehand_deploy.cli import _run, bench, deploy

    plan = _plan(tmp_path, "k", "a" * 64)
    specs = build_specs(["tensorrt"], model=None, info=None, onnx=[], plans=[plan], engines_dir=tmp_path,
                        quiet=True, check_plans=False, buffers="pycuda")
    assert specs[0].make().buffers == "pycuda"
    assert BenchConfig.from_cli(("latency",), buffers=None).buffers == "auto"
    assert _run(bench, ["latency", "--buffers", "cupy", "--quiet"]) == 2  # refused before any work

    seen = {}

    def fake_build(onnx, **kw):
        seen.update(kw)
        return build.EngineArtifact(tmp_path / "k.plan", key="k", cached=True)

    monkeypatch.setattr(build, "build_engine", fake_build)
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    assert _run(deploy, ["build", "--onnx", str(onnx), "--buffers", "cuda-python"]) == 0
    assert seen["buffers"] == "cuda-python"
    assert _run(deploy, ["build", "--onnx", str(onnx)]) == 0 and seen["buffers"] == "auto"
    with pytest.raises(build.UsageError, match="--buffers 'cupy': choose one of auto, torch, cuda-python, pycuda"):
        build.check_buffers("cupy")


def test_default_buffers_never_stop_a_cpu_benchmark(tmp_path, monkeypatch):
    """`--buffers auto` (the default) on a machine with no CUDA buffer backend still times the CPU runners: only
    a TensorRT runner needs a backend, and it resolves `auto` itself."""
    import simplehand_deploy.trt.runtime as runtime
    from simplehand_deploy.cli import _run, bench

    monkeypatch.setattr(runtime, "available_buffers", lambda: dict.fromkeys(("torch", "cuda-python", "pycuda"), False))
    out = tmp_path / "run"
    assert _run(bench, ["latency", "--config", "tiny", "--runners", "torch", "--batch-sizes", "1", "--iterations", "1",
                        "--duration", "0", "--out", str(out), "--quiet"]) == 0
    df = pl.read_parquet(out / "results.parquet")
    assert df["status"].to_list() == ["ok"] and df["runner"].to_list() == ["torch_eager"]
