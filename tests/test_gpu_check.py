"""benchmarks/gpu_check.py on a CPU-only machine: one clear line, exit 2; its results writer."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cpu_only_box_exits_2_with_one_line(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert _load().main(["--batches", "1"]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device" in err and "Traceback" not in err


def test_bad_arguments_exit_2(capsys):
    mod = _load()
    assert mod.main(["--batches", "0,x"]) == 2
    assert mod.main(["--sections", "eager,warp"]) == 2
    assert "warp" in capsys.readouterr().err


def test_writer_emits_csv_json_markdown(tmp_path):
    mod = _load()
    rows = [{"section": "trt", "backend": "tensorrt", "precision": "fp16", "batch": None, "status": "skipped",
             "latency_p50_ms": None, "note": "TensorRT is not installed | apt"},
            {"section": "eager", "backend": "torch-eager", "precision": "fp32", "batch": 8, "status": "ok",
             "latency_p50_ms": 3.25, "note": ""}]
    folder = mod.write(rows, {"run_id": "r1", "device_name": "NVIDIA X"}, tmp_path)
    assert json.loads((folder / "gpu_check.json").read_text())["rows"][1]["latency_p50_ms"] == 3.25
    assert (folder / "gpu_check.csv").read_text().count("\n") == 3
    md = (folder / "gpu_check.md").read_text()
    assert "| trt | tensorrt | fp16 |" in md and "3.250" in md and "installed / apt" in md


def test_sections_degrade_to_rows_not_crashes():
    from types import SimpleNamespace

    mod = _load()
    check = object.__new__(mod.Check)  # no model: only the row bookkeeping is under test
    check.args = SimpleNamespace(sections=["ort", "trt"], quiet=True, verbose=False)
    check.rows = []

    def missing():
        raise mod.SkipSection("onnxruntime has no CUDAExecutionProvider")

    def broken():
        raise RuntimeError("boom")

    check.section("ort", missing)
    check.section("trt", broken)
    check.section("compile", broken)  # not selected: no row
    assert [(r["section"], r["status"]) for r in check.rows] == [("ort", "skipped"), ("trt", "failed")]
    assert "CUDAExecutionProvider" in check.rows[0]["note"] and "boom" in check.rows[1]["note"]


def test_runs_without_polars_or_tensorrt():
    """A bare GPU image has torch, onnx and numpy only: everything gpu_check imports must load without polars."""
    import subprocess
    import sys

    code = (
        "import sys, importlib.util\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('polars', 'tensorrt'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"spec = importlib.util.spec_from_file_location('gpu_check', r'{ROOT / 'benchmarks' / 'gpu_check.py'}')\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "import simplehand_deploy.env, simplehand_deploy.drift, simplehand_deploy.checkpoint\n"
        "import simplehand_deploy.export, simplehand_deploy.trt.build, simplehand_deploy.trt.runtime\n"
        "import time\n"
        "p50 = m.time_host(lambda: time.sleep(0.005), duration=0.0, iterations=3, warmup=0.0)['latency_p50_ms']\n"
        "assert 5.0 <= p50 < 1000, p50  # a 5 ms sleep, timed in milliseconds\n"
        "assert 'polars' not in sys.modules\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]


def test_gpu_timing_goes_through_the_shared_loop():
    """gpu_check times with timing.time_gpu: one inference queued ahead, window throughput."""
    mod = _load()

    class Stream:
        def synchronize(self):
            pass

    class Event:
        n = 0

        def __init__(self):
            self.at = 0

        def record(self):
            self.at = Event.n

        def synchronize(self):
            pass

        def elapsed_ms(self, end):
            return 2.0

    def launch():
        Event.n += 1

    out = mod.time_gpu(launch, Stream(), duration=0.0, iterations=25, warmup=0.0, new_event=Event)
    assert out["latency_p50_ms"] == 2.0 and out["throughput_exec_s"] > 0
